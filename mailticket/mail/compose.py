"""Build outgoing mail as ``EmailMessage`` objects and their exact SMTP bytes.

Two writers share one set of checks: :func:`compose` + :func:`to_bytes` (the
stdlib, for any shape, and for callers that edit the message), and
:func:`compose_bytes`, which writes notify's text/HTML mail directly
(``mime_writer``) at a twentieth of the cost; tests hold the two to the same output.

Every header value that may come from outside (subjects, names, message ids of
inbound mail) goes through :func:`clean_header` or a strict pattern before it
reaches the stdlib, and no header is ever formatted from such input with an
f-string. :func:`to_bytes` then re-reads what the generator wrote and refuses
output whose header lines differ from the message's headers. On Python 3.11 this
matters: a parsed ``Subject: =?UTF-8?Q?=0ABcc:_evil@x.y?=`` copied into a new
message comes out as a second header line (CVE-2024-6923, gh-121650), and 3.11
has no ``policy.verify_generated_headers`` (SECURITY.md §5, R5.5).

Message ids (``Message-ID``, ``In-Reply-To``, ``References``) use our own header
class, because the 3.11 stdlib folds a long id in ``References`` into an RFC 2047
encoded word, which breaks threading in every client.

Known stdlib limit: a display name too long for one encoded word is split into
several; RFC 2047 readers (Thunderbird, Outlook, ``email.header.decode_header``)
join them exactly, but ``policy.default``'s address parser (3.11–3.13) keeps the
space between them. Names up to about twenty Cyrillic letters fit in one word.
"""

from __future__ import annotations

import email
import email.errors
import email.utils
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from typing import Any

from mailticket.mail import mime_writer

# Control characters (C0, DEL, C1 — U+0085 is a line break for str.splitlines,
# which the email package uses) and the Unicode line and paragraph separators.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LITERAL_ENCODED_WORD = re.compile(r"=\?(?=[^?\s]+\?[bBqQ]\?)")

# A message id without its angle brackets: printable ASCII except "<", ">" and
# space, with a bound so a hostile References header cannot blow up our mail.
_MESSAGE_ID = re.compile(r"[!-;=?-~]{1,250}")
_OWN_MESSAGE_ID = re.compile(r"[A-Za-z0-9._+-]{1,128}@[A-Za-z0-9.-]{1,253}")
_DOMAIN = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_TOKEN = re.compile(r"[A-Za-z0-9._:+-]{1,128}")
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,75}")
# A bare address the fast path writes as it is: dot-atom local part, LDH domain.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*")
_CONTENT_TYPE = re.compile(r"([a-z0-9][a-z0-9!#$&^_.+-]{0,63})/([a-z0-9][a-z0-9!#$&^_.+-]{0,126})")

# Reply and forward prefixes in the languages our customers' clients speak,
# with counters such as "Re[2]:" or "Re(2):" and full-width colons.
_PREFIX = re.compile(
    r"^\s*(?:re|fwd?|fw|aw|wg|sv|vs|tr|ответ|отв|пересл|переслано)"
    r"\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:：]\s*",
    re.IGNORECASE,
)

AUTO_SUBMITTED_VALUES = frozenset({"no", "auto-generated", "auto-replied", "auto-notified"})

# How many References we keep: the first (thread root or reply token) and the newest.
MAX_REFERENCES = 20

# Headers that compose() sets itself; extra_headers may not override them.
_RESERVED = frozenset({
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "in-reply-to", "references",
    "reply-to", "sender", "return-path", "received", "mime-version", "auto-submitted",
    "x-auto-response-suppress", "precedence", "x-mailticket-loop",
})


class _MessageIdsHeader(BaseHeader):
    """Header class for one or more ``<id>`` values, folded only between ids.

    compose() validates every id first, so the value is taken as it is: nothing
    is decoded (an id that looks like ``=?UTF-8?Q?=0A…?=`` stays literal) and
    nothing is encoded on output. It is for writing only; inbound mail is parsed
    with ``policy.default`` in mail/parse.py, never with :data:`SMTP_POLICY`.
    """

    max_count = 1

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        kwds["decoded"] = " ".join(str.__str__(value).split())
        kwds["parse_tree"] = None

    def fold(self, *, policy: policy.Policy) -> str:
        """``Name: <a> <b>``, wrapped at whitespace, never encoded."""
        width = policy.max_line_length or 998
        head = self.name + ":"
        lines: list[str] = []
        line = head
        for word in str.__str__(self).split():
            if line != head and len(line) + 1 + len(word) > width:
                lines.append(line)
                line = ""
            line += " " + word
        lines.append(line)
        return policy.linesep.join(lines) + policy.linesep


def _policy() -> policy.EmailPolicy[EmailMessage]:
    """policy.SMTP (CRLF) with 7-bit bodies and our message-id header class."""
    registry = HeaderRegistry()
    for name in ("message-id", "in-reply-to", "references"):
        registry.map_to_type(name, _MessageIdsHeader)
    # 7bit: relays without 8BITMIME exist; the stdlib picks quoted-printable or base64.
    return policy.SMTP.clone(cte_type="7bit", header_factory=registry)


SMTP_POLICY = _policy()


def clean_header(value: str, max_len: int = 998) -> str:
    """One safe header line: controls and U+2028/U+2029 become spaces, runs collapse.

    Also turns a stdlib header object (a ``str`` subclass that the generator would
    re-fold from its parse tree) into a plain ``str``.
    """
    text = _CONTROLS.sub(" ", str.__str__(value))
    return " ".join(text.split())[:max_len].strip()


def new_message_id(domain: str) -> str:
    """A fresh, unique Message-ID (without angle brackets) in our ``domain``."""
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"bad message-id domain {domain!r}")
    stamp = format(time.time_ns() // 1_000_000, "x")
    return f"{stamp}.{uuid.uuid4().hex}@{domain.lower()}"


def strip_reply_prefixes(subject: str) -> str:
    """``Re: FW: Ответ: Re[2]: x`` → ``x`` (any number, any case)."""
    text = clean_header(subject)
    while True:
        match = _PREFIX.match(text)
        if match is None:
            return text
        text = text[match.end():]


def subject_with_tag(subject: str, tag: str) -> str:
    """Put ``tag`` into ``subject`` once, after any reply prefixes the customer kept.

    ``Re: Printer broken`` → ``Re: [#MT-12] Printer broken``; a subject that
    already carries the tag (in any case) is only cleaned.
    """
    text = clean_header(subject)
    tag = clean_header(tag)
    if not tag or tag.lower() in text.lower():
        return text
    rest = strip_reply_prefixes(text)
    prefixes = text[: len(text) - len(rest)]
    return clean_header(" ".join(part for part in (prefixes.strip(), tag, rest) if part))


def _address(addr_spec: str, display_name: str = "") -> Address:
    """A strict single address; a non-ASCII domain is IDNA-encoded."""
    spec = addr_spec.strip()
    local, at, domain = spec.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an address: {addr_spec!r}")
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    if not local.isascii():
        raise ValueError(f"non-ASCII local part needs SMTPUTF8: {addr_spec!r}")
    # Address() parses addr_spec fully and rejects anything left over or CR/LF.
    return Address(display_name=clean_header(display_name), addr_spec=f"{local}@{domain}")


def _message_id(value: str) -> str | None:
    """The bare id of ``<id>`` or ``id``; None when it is not a safe msg-id."""
    bare = value.strip().removeprefix("<").removesuffix(">")
    return bare if _MESSAGE_ID.fullmatch(bare) else None


def _references(ids: Sequence[str]) -> list[str]:
    """Valid ids, de-duplicated, capped to the first and the newest ones."""
    seen: dict[str, None] = {}
    for value in ids:
        bare = _message_id(value)
        if bare is not None:
            seen.setdefault(bare, None)
    kept = list(seen)
    if len(kept) > MAX_REFERENCES:
        kept = [kept[0], *kept[-(MAX_REFERENCES - 1):]]
    return kept


def _safe_filename(name: str) -> str:
    """A display-only attachment name: basename, no controls, no leading dots."""
    base = re.split(r"[/\\]", clean_header(name, max_len=1000))[-1]
    return base.lstrip(". ")[:200].strip() or "attachment"


def _check_args(
    to: Sequence[str], date: datetime, message_id: str, auto_submitted: str, loop_id: str
) -> None:
    """The checks every outgoing mail passes before any header is written."""
    if not to:
        raise ValueError("a mail needs at least one To address")
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("date must be timezone-aware")
    if not _OWN_MESSAGE_ID.fullmatch(message_id):
        raise ValueError(f"bad message id {message_id!r}")
    if auto_submitted not in AUTO_SUBMITTED_VALUES:
        raise ValueError(f"bad Auto-Submitted value {auto_submitted!r}")
    if not _TOKEN.fullmatch(loop_id):
        raise ValueError(f"bad loop id {loop_id!r}")


def compose(
    *,
    from_addr: str,
    from_name: str,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    message_id: str,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    auto_submitted: str = "auto-generated",
    reply_to: str | None = None,
    cc: Sequence[str] = (),
    loop_id: str,
    extra_headers: Mapping[str, str] | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    date: datetime,
) -> EmailMessage:
    """Build one outgoing mail.

    :param to: bare addresses (``a@b.c``), no display names.
    :param message_id: our id without angle brackets (:func:`new_message_id`).
    :param in_reply_to: an id with or without ``<>``; dropped if not a valid msg-id.
    :param references: ids, oldest first; invalid ones are dropped, the list is
        capped to the first and the newest (:data:`MAX_REFERENCES` in all).
    :param auto_submitted: ``no`` for an engineer's reply relayed to a customer;
        any other value also adds ``Precedence: bulk`` and
        ``X-Auto-Response-Suppress: All`` (RFC 3834, SECURITY.md R3.2).
    :param attachments: ``(filename, content_type, data)``; the name is for display only.
    :param date: an aware datetime.
    :raises ValueError: a bad address, id, header name, value or naive date.
    """
    _check_args(to, date, message_id, auto_submitted, loop_id)
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = _address(from_addr, from_name)
    msg["To"] = tuple(_address(a) for a in to)
    if cc:
        msg["Cc"] = tuple(_address(a) for a in cc)
    if reply_to:
        msg["Reply-To"] = _address(reply_to)
    # The stdlib's header registry decodes a literal encoded word in the text
    # again, into bytes it then cannot fold (a crash the fuzz test found); a
    # word joiner keeps it text. compose_bytes writes such words literally anyway.
    msg["Subject"] = _LITERAL_ENCODED_WORD.sub("=\u2060?", clean_header(subject))
    msg["Date"] = date
    msg["Message-ID"] = "<" + message_id + ">"
    parent = _message_id(in_reply_to) if in_reply_to else None
    if parent is not None:
        msg["In-Reply-To"] = "<" + parent + ">"
    refs = _references(references)
    if refs:
        msg["References"] = " ".join("<" + ref + ">" for ref in refs)
    msg["Auto-Submitted"] = auto_submitted
    if auto_submitted != "no":
        msg["X-Auto-Response-Suppress"] = "All"
        msg["Precedence"] = "bulk"
    msg["X-Mailticket-Loop"] = loop_id
    for name, value in (extra_headers or {}).items():
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _RESERVED:
            raise ValueError(f"extra header {name!r} is not allowed")
        msg[name] = clean_header(value)
    msg["MIME-Version"] = "1.0"

    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, content_type, data in attachments:
        match = _CONTENT_TYPE.fullmatch(content_type.strip().lower())
        maintype, subtype = match.groups() if match else ("application", "octet-stream")
        if maintype in ("message", "multipart"):
            # An attached mail (.eml) as bytes: the stdlib base64-encodes it with bare
            # LFs, and RFC 2046 allows message/* only as 7bit/8bit; send it as a file.
            maintype, subtype = "application", "octet-stream"
        # The stdlib writes a non-ASCII name as RFC 2231 filename*=utf-8''….
        msg.add_attachment(
            data, maintype=maintype, subtype=subtype, filename=_safe_filename(filename)
        )
    # The stdlib builds each added part as an EmailMessage, whose set_content adds
    # MIME-Version to it; RFC 2045 wants it only at the top (issue 15.8).
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]
    return msg


def _header_names(message: Message) -> list[list[str]]:
    """Header names of every MIME part, in walk order, lower-cased."""
    return [[name.lower() for name in part] for part in message.walk()]


def to_bytes(msg: EmailMessage) -> bytes:
    """The mail as SMTP bytes (CRLF), after checking nothing was injected.

    The check does what ``verify_generated_headers`` does on 3.13, for 3.11 too:
    no bare CR or LF anywhere, no line over 998 octets, and re-reading the output
    gives exactly the header names the message had, part by part.

    :raises ValueError: the generated mail would not be what ``msg`` says.
    """
    try:
        raw = msg.as_bytes(policy=SMTP_POLICY)
    except email.errors.MessageError as exc:
        # 3.13's HeaderWriteError: the stdlib caught an injection itself.
        raise ValueError(f"unsafe header: {exc}") from exc
    if re.search(rb"\r(?!\n)|(?<!\r)\n", raw):
        raise ValueError("generated mail contains a bare CR or LF")
    if any(len(line) > 998 for line in raw.split(b"\r\n")):
        raise ValueError("generated mail has a line over 998 octets")
    reread = email.message_from_bytes(raw, policy=policy.compat32)
    if _header_names(reread) != _header_names(msg):
        raise ValueError("generated headers differ from the message's headers")
    return raw


def _addr_spec(addr_spec: str) -> str:
    """A validated bare address: a plain dot-atom as it is, anything else through :func:`_address`."""
    spec = addr_spec.strip()
    if _PLAIN_ADDRESS.fullmatch(spec):
        return spec
    return _address(spec).addr_spec


def compose_bytes(
    *,
    from_addr: str,
    from_name: str,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    message_id: str,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    auto_submitted: str = "auto-generated",
    reply_to: str | None = None,
    cc: Sequence[str] = (),
    loop_id: str,
    extra_headers: Mapping[str, str] | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    date: datetime,
) -> bytes:
    """``to_bytes(compose(...))`` without building an ``EmailMessage``: the same checks,
    the same headers in the same order, the same body encodings (see ``mime_writer``).

    Mail with attachments takes the stdlib path, which writes RFC 2231 file names.

    :raises ValueError: as :func:`compose`.
    """
    if attachments:
        return to_bytes(compose(
            from_addr=from_addr, from_name=from_name, to=to, subject=subject, text=text,
            html=html, message_id=message_id, in_reply_to=in_reply_to, references=references,
            auto_submitted=auto_submitted, reply_to=reply_to, cc=cc, loop_id=loop_id,
            extra_headers=extra_headers, attachments=attachments, date=date,
        ))
    _check_args(to, date, message_id, auto_submitted, loop_id)
    w = mime_writer
    fields = [("From", w.address_field("From", [(clean_header(from_name), _addr_spec(from_addr))])),
              ("To", w.address_field("To", [("", _addr_spec(a)) for a in to]))]
    if cc:
        fields.append(("Cc", w.address_field("Cc", [("", _addr_spec(a)) for a in cc])))
    if reply_to:
        fields.append(("Reply-To", w.address_field("Reply-To", [("", _addr_spec(reply_to))])))
    fields += [("Subject", w.unstructured("Subject", clean_header(subject))),
               ("Date", w.simple("Date", email.utils.format_datetime(date))),
               ("Message-ID", w.message_ids("Message-ID", [message_id]))]
    parent = _message_id(in_reply_to) if in_reply_to else None
    if parent is not None:
        fields.append(("In-Reply-To", w.message_ids("In-Reply-To", [parent])))
    refs = _references(references)
    if refs:
        fields.append(("References", w.message_ids("References", refs)))
    fields.append(("Auto-Submitted", w.simple("Auto-Submitted", auto_submitted)))
    if auto_submitted != "no":
        fields += [("X-Auto-Response-Suppress", w.simple("X-Auto-Response-Suppress", "All")),
                   ("Precedence", w.simple("Precedence", "bulk"))]
    fields.append(("X-Mailticket-Loop", w.simple("X-Mailticket-Loop", loop_id)))
    for name, value in (extra_headers or {}).items():
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _RESERVED:
            raise ValueError(f"extra header {name!r} is not allowed")
        fields.append((name, w.unstructured(name, clean_header(value))))
    return w.write(fields, text, html)
