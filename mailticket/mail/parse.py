"""Raw bytes to :class:`InboundMail`: decoded headers, best text body, attachments, defects.

Real mail is messy (KOI8-R without a charset, Outlook quirks, broken headers),
so this module never rejects for a minor defect: it records it in
``defects`` and carries on. :class:`UnparseableMessage` is raised only for
bytes that are no mail at all and for mail beyond the safety limits of
SECURITY.md R5.2/R5.3, which are checked on the raw bytes before the stdlib
parser runs and on the parsed tree before any content is decoded.

Headers are decoded from the raw values (``raw_items``) rather than through
the stdlib header registry: that lets raw 8-bit bytes go through charset
detection and sidesteps the registry's crashes on hostile values (CPython
#105802, the IndexError on Exchange Message-IDs). For the same reason the
feed parser runs with ``compat32``: with ``policy.default`` it parses every
Content-Type through the registry while it splits parts, which made parsing
three times slower on the RT corpus, and we use none of its header objects.
Addresses are parsed from the raw value, before encoded words are decoded,
so an encoded comma or ``<`` in a display name cannot smuggle in an extra
address.
"""

from __future__ import annotations

import contextlib
import email.errors
import email.policy
import email.utils
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesParser
from typing import Any

from flufl.bounce import all_failures

from mailticket.errors import UnparseableMessage
from mailticket.mail.charsets import (
    decode_8bit,
    decode_bytes,
    decode_encoded_words,
    decode_header_value,
)
from mailticket.mail.htmltext import html_to_text, sanitise_html

MAX_HEADER_BLOCK = 256 * 1024
MAX_HEADERS = 1000
MAX_HEADER_SIZE = 64 * 1024
MAX_DEPTH = 20
MAX_PARTS = 200
MAX_DECODED = 50 * 1024 * 1024
MAX_ADDRESSES = 100
MAX_REFERENCES = 100
BOUNCE_SCAN_BYTES = 64 * 1024

# What the stdlib email package raises on hostile input (SECURITY.md R5.2).
EMAIL_ERRORS: tuple[type[Exception], ...] = (
    RecursionError,
    IndexError,
    email.errors.MessageError,
    LookupError,
    ValueError,
    UnicodeError,
    TypeError,
    AttributeError,
)


@dataclass(frozen=True)
class Attachment:
    """One attached file, with a display name that is safe to show and store."""

    filename: str
    content_type: str
    data: bytes
    # Content-ID without brackets, for cid: images referenced by the HTML body.
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True)
class DsnRecipient:
    """One failed or delayed recipient of a delivery status notification (RFC 3464)."""

    address: str
    action: str
    status: str
    diagnostic: str


@dataclass(frozen=True)
class InboundMail:
    """Everything later stages need from one inbound mail, already decoded."""

    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    from_addr: str
    from_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    date: datetime | None
    text: str
    html: str | None
    attachments: tuple[Attachment, ...]
    # Lower-cased header name -> all decoded values, in wire order.
    headers: dict[str, tuple[str, ...]]
    content_type: str
    defects: tuple[str, ...] = ()
    raw_size: int = 0
    # Parsed parts of a multipart/report (RFC 3464) for bounce handling.
    is_report: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    # Failed/delayed recipients from a delivery-status report, or found by
    # flufl.bounce in a non-standard bounce.
    dsn: tuple[DsnRecipient, ...] = ()
    # The report-type parameter of a multipart/report ("delivery-status", ...).
    report_type: str = ""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None


_MSGID_RE = re.compile(r"<([^<>]+)>")
_WHITESPACE = re.compile(r"\s+")
# A header line as the stdlib feed parser sees it (email.feedparser.headerRE).
_HEADER_LINE = re.compile(rb"^(From |[\041-\071\073-\176]*:|[\t ])")
# Declared containers; a cheap bound on parts and depth before parsing.
_CONTAINER = re.compile(rb"(?im)^content-type[ \t]*:\s*(?:multipart|message)/")
_CHARSET_PARAM = re.compile(r"charset\s*=\s*\"?([^\";\s]+)", re.IGNORECASE)
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,64}\?[bBqQ]\?[^?\s]{0,2000}\?=")
_ANGLE_ADDR = re.compile(r"([^<>]*)<([^<>]*)>\s*", re.DOTALL)
_MIME_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_RESERVED_NAME = re.compile(
    r"(?i)^(con|prn|aux|nul|com[0-9\u00b9\u00b2\u00b3]|lpt[0-9\u00b9\u00b2\u00b3])$"
)
MAX_FILENAME_BYTES = 255
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf'{_ATEXT}(?:\.{_ATEXT})*|"(?:[^"\\\r\n]|\\.)*"')
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_DOMAIN_LITERAL = re.compile(r"\[[A-Za-z0-9.:]+\]")
_DAEMON_LOCAL = re.compile(
    r"(?i)^(mailer[-_]?daemon|postmaster|mail[-_]?delivery[-_]?(?:sub)?system)$"
)
# getaddresses grew strict parsing against CVE-2023-27043 in 3.13 (and late
# 3.11/3.12 patch releases); _split_address_list guards older ones.
_STRICT: dict[str, bool] = (
    {"strict": True} if getattr(email.utils, "supports_strict_parsing", False) else {}
)


class _AsReceived(email.policy.Compat32):
    """Serialises an attached mail with every header exactly as received.

    Refolding would re-parse values (slow, and where CPython's header bugs
    live); the raw value keeps its own folding and 8-bit bytes.
    """

    def fold_binary(self, name: str, value: Any) -> bytes:
        text = _LINE_BREAK.sub(self.linesep, str(value))
        return f"{name}: {text}{self.linesep}".encode("ascii", "surrogateescape")


_LINE_BREAK = re.compile(r"\r?\n")
_SERIALISE = _AsReceived(linesep="\r\n")
_EXTENSIONS = {
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "text/rfc822-headers": ".txt",
    "message/rfc822": ".eml",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "application/pdf": ".pdf",
    "application/pgp-signature": ".asc",
    "application/pgp-encrypted": ".pgp",
    "application/pkcs7-signature": ".p7s",
    "application/x-pkcs7-signature": ".p7s",
    "application/pkcs7-mime": ".p7m",
    "application/x-pkcs7-mime": ".p7m",
}
# Subjects of delivery failure reports: Postfix, Exim, Sendmail, qmail, Gmail,
# Exchange, Yandex, Mail.ru and the Russian-language Outlook/Exchange ones.
BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliver(?:ed|able)|delivery status notification \((?:failure|delay)\)"
    r"|delivery (?:failure|has failed|notification)|mail delivery (?:failed|failure)"
    r"|returned mail|failure notice|non[- ]?deliver|could not send message"
    r"|message not delivered|mail failure"
    r"|недоставленное сообщение|не удалось доставить|не удается доставить"
    r"|сообщение не доставлено|письмо не доставлено|не доставлено|ошибка доставки"
    r"|возвращенное письмо|возвращённое письмо)",
    re.IGNORECASE,
)


def normalise_message_ids(value: str | None) -> tuple[str, ...]:
    """All ``<id>`` tokens in a header value, without brackets or whitespace, in order.

    A value without brackets counts as one id if it is a single token (some
    mailers omit the brackets); duplicates are dropped.
    """
    if not value:
        return ()
    tokens = _MSGID_RE.findall(value)
    if not tokens:
        bare = value.strip()
        tokens = [bare] if bare and not _WHITESPACE.search(bare) else []
    seen: dict[str, None] = {}
    for token in tokens:
        cleaned = _WHITESPACE.sub("", token)
        if cleaned:
            seen.setdefault(cleaned, None)
    return tuple(seen)


def _check_header_block(raw: bytes) -> None:
    """Enforce the header block, header count and header size limits on raw bytes."""
    window = raw[: MAX_HEADER_BLOCK + 1]
    lines = window.split(b"\n")
    count = 0
    current = 0
    size = 0
    for index, line in enumerate(lines):
        if line in (b"", b"\r"):
            return
        if index == len(lines) - 1 and len(raw) > len(window):
            break
        if not _HEADER_LINE.match(line):
            # The stdlib parser starts the body here (a missing separator).
            return
        size += len(line) + 1
        if line[:1] in (b" ", b"\t"):
            current += len(line) + 1
        else:
            count += 1
            current = len(line) + 1
            if count > MAX_HEADERS:
                raise UnparseableMessage(f"more than {MAX_HEADERS} header fields")
        if current > MAX_HEADER_SIZE:
            raise UnparseableMessage(f"a header field is longer than {MAX_HEADER_SIZE // 1024} KiB")
        if size > MAX_HEADER_BLOCK:
            break
    if len(raw) > MAX_HEADER_BLOCK:
        raise UnparseableMessage(f"header block larger than {MAX_HEADER_BLOCK // 1024} KiB")


def _check_structure(msg: Message) -> list[str]:
    """Enforce MIME depth, part count and per-part header count; return all parser defects."""
    defects: list[str] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    parts = 0
    while stack:
        part, depth = stack.pop()
        parts += 1
        if parts > MAX_PARTS:
            raise UnparseableMessage(f"more than {MAX_PARTS} MIME parts")
        if depth > MAX_DEPTH:
            raise UnparseableMessage(f"MIME nesting deeper than {MAX_DEPTH} levels")
        if len(part) > MAX_HEADERS:
            raise UnparseableMessage(f"a MIME part has more than {MAX_HEADERS} header fields")
        defects.extend(type(defect).__name__ for defect in part.defects)
        # Delivery-status blocks are header groups, not parts a sender can nest.
        if _content_type(part) != "message/delivery-status":
            stack.extend((child, depth + 1) for child in reversed(_children(part)))
    return defects


def _parse_bytes(raw: bytes) -> Message:
    """Run the stdlib parser after the cheap raw-byte limits; translate its failures."""
    if not raw.strip():
        raise UnparseableMessage("empty message")
    first = raw[:1024]
    if b"\x00" in first and not _HEADER_LINE.match(first):
        raise UnparseableMessage("binary data without mail headers")
    _check_header_block(raw)
    if len(_CONTAINER.findall(raw)) > MAX_PARTS:
        raise UnparseableMessage(f"more than {MAX_PARTS} MIME parts")
    try:
        return BytesParser(policy=email.policy.compat32).parsebytes(raw)
    except RecursionError as exc:
        raise UnparseableMessage(f"MIME nesting deeper than {MAX_DEPTH} levels") from exc
    except Exception as exc:  # the feed parser rarely raises; when it does, it is fatal
        raise UnparseableMessage(f"mail parser failed: {type(exc).__name__}") from exc


# --------------------------------------------------------------- MIME headers


def _first_raw(part: Message, name: str) -> str | None:
    """The first raw value of header ``name`` (lower-case) in ``part``, unfolded."""
    for key, value in part.raw_items():
        if key.lower() == name:
            return _FOLD.sub("", str(value))
    return None


def _content_type(part: Message) -> str:
    """The part's type/subtype from the raw header; the part's default if missing or invalid."""
    raw = _first_raw(part, "content-type")
    if raw:
        value = _WHITESPACE.sub("", raw.split(";", 1)[0]).lower()
        if _MIME_TYPE.match(value):
            return value
    return part.get_default_type()


def _param(part: Message, name: str, header: str = "content-type") -> str | None:
    """A Content-Type (or other) parameter, RFC 2231 collapsed, or None if unreadable."""
    try:
        value = part.get_param(name, header=header)
    except EMAIL_ERRORS:
        return None
    if isinstance(value, tuple):
        value = email.utils.collapse_rfc2231_value(value)
    return str(value) if value is not None else None


def _disposition(part: Message) -> str:
    """``attachment``, ``inline`` or ``""`` from the raw Content-Disposition."""
    raw = _first_raw(part, "content-disposition") or ""
    return raw.split(";", 1)[0].strip().lower()


def _raw_filename(part: Message, hint: str | None) -> str:
    """The sender's file name (RFC 2231, 8-bit and encoded-words decoded), not yet made safe."""
    source = part
    raw_8bit = any(
        not str(value).isascii()
        for key, value in part.raw_items()
        if key.lower() in ("content-disposition", "content-type")
    )
    if raw_8bit:
        # compat32 turns raw 8-bit parameter bytes into U+FFFD. Latin-1 maps
        # bytes to characters one to one, so the bytes survive the stdlib's
        # parameter parsing and can be decoded properly afterwards.
        source = Message()
        for key, value in part.raw_items():
            if key.lower() in ("content-disposition", "content-type"):
                source[key] = str(value).encode("ascii", "surrogateescape").decode("latin-1")
    try:
        name = source.get_filename()
    except EMAIL_ERRORS:
        name = None
    if not name:
        return ""
    text = str(name)
    if raw_8bit and not text.isascii():
        # An RFC 2231 charset may already have decoded it; then it stays.
        with contextlib.suppress(UnicodeEncodeError):
            text = decode_8bit(text.encode("latin-1"), hint)
    return decode_encoded_words(_FOLD.sub("", text))


def safe_filename(name: str) -> str:
    """A display name for an attachment that is safe to show and store (SECURITY.md R5.6).

    Basename after ``/`` and ``\\``, no control or bidi characters, NFC, at most
    255 UTF-8 bytes (the extension kept), no leading dot, Windows device names
    defused; an empty result becomes ``attachment``.
    """
    cleaned = unicodedata.normalize("NFC", _UNSAFE_CHARS.sub("", name))
    base = cleaned.replace("\\", "/").rsplit("/", 1)[-1]
    base = base.strip().lstrip(".").strip().rstrip(". ")
    if _RESERVED_NAME.match(base.split(".", 1)[0].strip()):
        base = "_" + base
    if len(base.encode("utf-8")) > MAX_FILENAME_BYTES:
        stem, dot, ext = base.rpartition(".")
        suffix = f".{ext}" if dot and stem and 0 < len(ext.encode("utf-8")) <= 16 else ""
        stem = stem if suffix else base
        budget = MAX_FILENAME_BYTES - len(suffix.encode("utf-8"))
        stem = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore").rstrip(". ")
        base = stem + suffix
    return base or "attachment"


# ---------------------------------------------------------------- addresses


def _split_address_list(value: str) -> list[str] | None:
    """Top-level comma-separated segments of an address header; None if unbalanced.

    Group syntax (``name: a, b;``) is flattened. Refusing unbalanced quotes,
    comments and brackets outright is what keeps a parser confusion such as
    CVE-2023-27043 (``alice@x)<bob@y>``) from producing a smuggled address.
    """
    segments: list[str] = []
    buf: list[str] = []
    parens = 0
    quoted = angle = escaped = False
    skip_to = 0
    for index, ch in enumerate(value):
        if index < skip_to:
            continue
        word = _ENCODED_WORD.match(value, index) if ch == "=" and not (quoted or parens) else None
        if word is not None:
            # An encoded word is one atom: a ":" or "," inside it (which RFC 2047
            # forbids in a phrase, and attackers use) must not end a name or address.
            buf.append(word.group())
            skip_to = word.end()
            continue
        if escaped:
            escaped = False
        elif ch == "\\" and (quoted or parens):
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif parens:
            parens += {"(": 1, ")": -1}.get(ch, 0)
        elif ch == '"':
            quoted = True
        elif ch == "(":
            parens = 1
        elif ch in ")>" and not (ch == ">" and angle):
            return None
        elif ch == "<":
            if angle:
                return None
            angle = True
        elif ch == ">":
            angle = False
        elif ch in ",:;" and not angle:
            # A group's display name ends at ":" and is not an address.
            if ch != ":":
                segments.append("".join(buf))
            buf = []
            if len(segments) > MAX_ADDRESSES:
                return [s.strip() for s in segments if s.strip()]
            continue
        buf.append(ch)
    if quoted or parens or angle:
        return None
    segments.append("".join(buf))
    return [s.strip() for s in segments if s.strip()]


def _addr_spec(addr: str) -> str | None:
    """``addr`` lower-cased with an IDNA domain if it is a strict addr-spec, else None."""
    local, at, domain = addr.strip().rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local):
        return None
    domain = domain.rstrip(".")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if not (_DOMAIN.fullmatch(domain) or _DOMAIN_LITERAL.fullmatch(domain)):
        return None
    result = f"{local}@{domain}".lower()
    return result if len(result) <= 254 else None


def _addresses(
    values: list[str], label: str, hint: str | None, defects: list[str]
) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs from raw header values, at most MAX_ADDRESSES."""
    result: list[tuple[str, str]] = []
    for value in values:
        segments = _split_address_list(_FOLD.sub("", value))
        if segments is None:
            defects.append(f"unbalanced quotes, comments or brackets in {label}; ignored")
            continue
        for segment in segments:
            if len(result) >= MAX_ADDRESSES:
                defects.append(f"{label} cut to the first {MAX_ADDRESSES} addresses")
                return result
            pairs = email.utils.getaddresses([segment], **_STRICT)
            name, addr = pairs[0] if len(pairs) == 1 else ("", "")
            clean = _addr_spec(addr) if addr else None
            angle = _ANGLE_ADDR.fullmatch(segment) if clean is None else None
            if angle is not None and _ENCODED_WORD.search(angle.group(1)):
                # The stdlib cannot read a display name whose encoded words hold
                # specials; the splitter has checked the brackets, so take <addr>.
                name, clean = angle.group(1).strip().strip('"'), _addr_spec(angle.group(2))
            if clean is None:
                defects.append(f"invalid address in {label}: {segment[:80]!r}")
                continue
            result.append((decode_header_value(name, hint), clean))
    return result


# --------------------------------------------------------------------- body


@dataclass(frozen=True)
class _Piece:
    """One readable body part: its text, its HTML, or both (a chosen alternative)."""

    text: str | None
    html: str | None


@dataclass
class _Body:
    """What the body walk found."""

    text: str
    html: str | None
    attachments: list[Attachment]
    dsn: list[DsnRecipient]


class _BodyWalker:
    """Walks the MIME tree once, collecting readable pieces, attachments and DSN records.

    Recursion here is bounded: ``_check_structure`` has already refused trees
    deeper than MAX_DEPTH.
    """

    def __init__(self, hint: str | None, defects: list[str]) -> None:
        self.hint = hint
        self.defects = defects
        self.decoded = 0
        self.attachments: list[Attachment] = []
        self.dsn: list[DsnRecipient] = []

    def _count(self, size: int) -> None:
        self.decoded += size
        if self.decoded > MAX_DECODED:
            raise UnparseableMessage(f"decoded content larger than {MAX_DECODED >> 20} MiB")

    def payload(self, part: Message) -> bytes:
        """The transfer-decoded bytes of a leaf part (counted toward the decoded limit)."""
        try:
            data = part.get_payload(decode=True)
        except EMAIL_ERRORS as exc:
            self.defects.append(f"undecodable part payload: {type(exc).__name__}")
            data = b""
        if not isinstance(data, bytes):
            data = b""
        self._count(len(data))
        return data

    def text_of(self, part: Message) -> str:
        """A text part decoded with its declared charset, or a detected one if that is wrong."""
        decoded = decode_bytes(self.payload(part), _param(part, "charset"))
        if decoded.note:
            self.defects.append(decoded.note)
        # NUL is no text anyone wrote, and PostgreSQL refuses it in a text column.
        return decoded.text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")

    def walk(self, part: Message) -> list[_Piece]:
        """Readable pieces of ``part`` in reading order; everything else becomes attachments."""
        ctype = _content_type(part)
        children = _children(part)
        if ctype.startswith("multipart/") and children:
            return self.multipart(ctype, children)
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            self.read_dsn(part)
            return []
        if ctype in ("text/plain", "text/html") or ctype.startswith("multipart/"):
            is_file = _disposition(part) == "attachment" or _raw_filename(part, self.hint)
            if not is_file:
                text = self.text_of(part)
                return [_Piece(None, text)] if ctype == "text/html" else [_Piece(text, None)]
        self.attach(part, ctype)
        return []

    def multipart(self, ctype: str, children: list[Message]) -> list[_Piece]:
        """Readable pieces of a multipart, by the rules of its subtype."""
        subtype = ctype.partition("/")[2]
        if subtype == "alternative":
            return self.alternative(children)
        if subtype == "encrypted":
            self.defects.append("encrypted content; body not readable")
            for child in children:
                self.attach(child, _content_type(child))
            return []
        if subtype in ("related", "signed", "report"):
            # The first part is the body (the root, the signed content, the
            # human-readable report); the rest are files, signatures or DSN data.
            pieces = self.walk(children[0])
            for child in children[1:]:
                child_type = _content_type(child)
                if child_type.endswith("delivery-status"):
                    self.read_dsn(child)
                else:
                    self.attach(child, child_type)
            return pieces
        collected: list[_Piece] = []
        for child in children:
            collected.extend(self.walk(child))
        return collected

    def alternative(self, children: list[Message]) -> list[_Piece]:
        """Prefer text/plain unless it is empty; keep the richest HTML alongside."""
        options = [self.walk(child) for child in children]
        plain = next(
            (o for o in options if o and all(p.text is not None for p in o) and _text(o).strip()),
            None,
        )
        rich = next((o for o in reversed(options) if any(p.html is not None for p in o)), None)
        if plain is not None:
            return [_Piece(_text(plain), _html(rich) if rich else None)]
        if rich is not None:
            return rich
        return next((o for o in options if o), [])

    def attach(self, part: Message, ctype: str) -> None:
        """Record ``part`` as an attachment with a safe display name."""
        name = _raw_filename(part, self.hint)
        inner = _children(part)
        if ctype in ("message/rfc822", "message/global") and inner:
            data = self.message_bytes(inner[0])
            if not name:
                subject = decode_header_value(_first_raw(inner[0], "subject") or "", self.hint)
                # The subject is not a path; keep its slashes out of basename logic.
                name = (subject.replace("/", "_").replace("\\", "_") or "message") + ".eml"
        else:
            data = self.payload(part)
        if not name:
            name = "attachment" + _EXTENSIONS.get(ctype, "")
        content_ids = normalise_message_ids(_first_raw(part, "content-id"))
        self.attachments.append(
            Attachment(
                filename=safe_filename(name),
                content_type=ctype,
                data=data,
                content_id=content_ids[0] if content_ids else None,
                inline=_disposition(part) == "inline",
            )
        )

    def message_bytes(self, inner: Message) -> bytes:
        """An attached mail serialised as it came (headers are not refolded or re-parsed)."""
        try:
            data = inner.as_bytes(policy=_SERIALISE)
        except EMAIL_ERRORS as exc:
            self.defects.append(f"attached message not serialisable: {type(exc).__name__}")
            data = b""
        self._count(len(data))
        return data

    def read_dsn(self, part: Message) -> None:
        """Per-recipient fields of a message/delivery-status part (RFC 3464 §2.3)."""
        if part.is_multipart():
            blocks = [{k.lower(): str(v) for k, v in b.raw_items()} for b in _children(part)]
        else:
            blocks = _field_blocks(self.text_of(part))
        for fields in blocks:
            recipient = fields.get("final-recipient") or fields.get("original-recipient")
            if not recipient:
                continue
            address = recipient.rpartition(";")[2].strip().strip("<>").strip().lower()

            def field_value(name: str, source: dict[str, str] = fields) -> str:
                return decode_header_value(source.get(name, ""), self.hint)

            self.dsn.append(
                DsnRecipient(
                    address=decode_header_value(address),
                    action=field_value("action").lower(),
                    status=field_value("status"),
                    diagnostic=field_value("diagnostic-code")[:1000],
                )
            )


def _children(part: Message) -> list[Message]:
    """The sub-parts of a multipart or the mail inside a message/rfc822 part."""
    # is_multipart() looks at the payload without decoding it: get_payload() on
    # a leaf decodes 8-bit text with the part's charset and raises ValueError
    # for a charset name holding a NUL (found by fuzzing).
    if not part.is_multipart():
        return []
    payload = part.get_payload()
    if not isinstance(payload, list):
        return []
    return [child for child in payload if isinstance(child, Message)]


def _text(pieces: list[_Piece]) -> str:
    return "\n\n".join(p.text.strip("\n") for p in pieces if p.text and p.text.strip())


def _html(pieces: list[_Piece]) -> str:
    return "\n<hr>\n".join(p.html for p in pieces if p.html)


def _field_blocks(text: str) -> list[dict[str, str]]:
    """``Name: value`` blocks separated by blank lines (a delivery-status body as text)."""
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        last = ""
        for line in chunk.split("\n"):
            if line[:1] in (" ", "\t") and last:
                fields[last] += " " + line.strip()
            elif ":" in line:
                name, _, value = line.partition(":")
                last = name.strip().lower()
                fields.setdefault(last, value.strip())
        if fields:
            blocks.append(fields)
    return blocks


def extract_body(msg: Message, hint: str | None, defects: list[str]) -> _Body:
    """Text (HTML converted only when no plain text exists), sanitised HTML, files, DSN."""
    walker = _BodyWalker(hint, defects)
    pieces = walker.walk(msg)
    text = _text(pieces)
    html_source = _html(pieces)
    if not text.strip() and html_source:
        text = "\n\n".join(html_to_text(p.html) for p in pieces if p.html)
    if _content_type(msg) == "application/pkcs7-mime":
        defects.append("encrypted content; body not readable")
    return _Body(
        text=text.strip(),
        html=sanitise_html(html_source) if html_source else None,
        attachments=walker.attachments,
        dsn=walker.dsn,
    )


# ------------------------------------------------------------------ bounces


def is_daemon_address(address: str) -> bool:
    """Whether ``address`` is a mail system's own (mailer-daemon, postmaster, ...)."""
    return bool(_DAEMON_LOCAL.match(address.partition("@")[0]))


def _looks_like_bounce(msg: Message, subject: str, from_addr: str, report_type: str) -> bool:
    """Cheap header signs that a mail may be a bounce worth running flufl.bounce on.

    flufl.bounce's heuristics read whole bodies; running them on every mail
    would cost time and would flag a customer who forwards a bounce to us.
    """
    if report_type == "delivery-status" or is_daemon_address(from_addr):
        return True
    if BOUNCE_SUBJECT.search(subject):
        return True
    if (_first_raw(msg, "return-path") or "").strip() == "<>":
        return True
    return "failure" in (_first_raw(msg, "auto-submitted") or "").lower()


def _scan_bounce(raw: bytes, msg: Message, defects: list[str]) -> list[DsnRecipient]:
    """Failed recipients of a non-standard bounce, found by flufl.bounce's detectors.

    The detectors are line-by-line Python over the whole mail (seconds for a
    few MiB), and a bounce states its failures before the returned message,
    so they only see the first BOUNCE_SCAN_BYTES.
    """
    try:
        if len(raw) > BOUNCE_SCAN_BYTES:
            msg = BytesParser(policy=email.policy.compat32).parsebytes(raw[:BOUNCE_SCAN_BYTES])
        temporary, permanent = all_failures(msg)
    except Exception as exc:
        # Seventeen third-party heuristics over hostile bodies: a failure of
        # one of them must cost us the bounce data, never the mail.
        defects.append(f"bounce scan failed: {type(exc).__name__}")
        return []
    found: list[DsnRecipient] = []
    for action, addresses in (("failed", permanent), ("delayed", temporary)):
        for raw_address in sorted(addresses):
            address = _addr_spec(raw_address.decode("ascii", errors="replace"))
            if address:
                found.append(DsnRecipient(address, action, "", "found by flufl.bounce"))
    return found


def _parse_date(value: str | None, defects: list[str]) -> datetime | None:
    """The Date header as aware UTC, or None (with a defect) when it cannot be read."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append(f"unreadable Date header {value[:60]!r}")
        return None
    if parsed.tzinfo is None:
        # RFC 5322 "-0000" means the zone is unknown; UTC is the honest reading.
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        defects.append(f"Date out of range {value[:60]!r}")
        return None


def _raw_headers(msg: Message) -> list[tuple[str, str]]:
    """Header names (lower-cased) and raw values exactly as received."""
    return [(name.strip().lower(), str(value)) for name, value in msg.raw_items()]


def parse(raw: bytes) -> InboundMail:
    """Decode ``raw`` into an :class:`InboundMail`.

    :raises UnparseableMessage: the bytes are no mail at all, or a safety limit
        (header block, header count or size, MIME depth, parts, decoded size)
        is exceeded; the reason says which.
    """
    msg = _parse_bytes(raw)
    defects = _check_structure(msg)
    raw_headers = _raw_headers(msg)
    ctype_raw = next((value for name, value in raw_headers if name == "content-type"), "")
    charset_match = _CHARSET_PARAM.search(ctype_raw)
    hint = charset_match.group(1) if charset_match else None

    headers: dict[str, list[str]] = {}
    for name, value in raw_headers:
        headers.setdefault(name, []).append(decode_header_value(value, hint))
    for once in ("from", "subject", "date", "message-id"):
        if len(headers.get(once, ())) > 1:
            defects.append(f"more than one {once.title()} header")

    from_list = _addresses([v for n, v in raw_headers if n == "from"], "From", hint, defects)
    from_name, from_addr = from_list[0] if from_list else ("", "")

    def address_field(name: str, label: str) -> tuple[str, ...]:
        values = [v for n, v in raw_headers if n == name]
        return tuple(addr for _, addr in _addresses(values, label, hint, defects))

    def first_decoded(name: str) -> str | None:
        values = headers.get(name)
        return values[0] if values else None

    message_ids = normalise_message_ids(first_decoded("message-id"))
    references = normalise_message_ids(first_decoded("references"))
    if len(references) > MAX_REFERENCES:
        defects.append(f"References cut to the last {MAX_REFERENCES} ids")
        references = references[-MAX_REFERENCES:]

    body = extract_body(msg, hint, defects)
    ctype = _content_type(msg)
    report_type = ""
    if ctype == "multipart/report":
        report_type = (_param(msg, "report-type") or "").lower()
    subject = first_decoded("subject") or ""
    dsn = body.dsn
    if not dsn and _looks_like_bounce(msg, subject, from_addr, report_type):
        dsn = _scan_bounce(raw, msg, defects)

    return InboundMail(
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=normalise_message_ids(first_decoded("in-reply-to")),
        references=references,
        subject=subject,
        from_addr=from_addr,
        from_name=from_name,
        to=address_field("to", "To"),
        cc=address_field("cc", "Cc"),
        reply_to=address_field("reply-to", "Reply-To"),
        date=_parse_date(first_decoded("date"), defects),
        text=body.text,
        html=body.html,
        attachments=tuple(body.attachments),
        headers={name: tuple(values) for name, values in headers.items()},
        content_type=ctype,
        defects=tuple(dict.fromkeys(defects)),
        raw_size=len(raw),
        is_report=ctype == "multipart/report",
        dsn=tuple(dsn),
        report_type=report_type,
    )
