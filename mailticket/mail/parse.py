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
address. The feed parser gets the bytes through :mod:`mailticket.mail.lean`,
which builds the same tree without the whole-mail copies of ``parsebytes``
(a 34 MB mail cost some 300 MB before). A broken header block (a bare CR,
an unindented continuation, junk before the first header) is repaired on the
raw bytes first (:mod:`mailticket.mail.header_block`), so the Message-ID
after it is not lost. When From holds no readable address, the sender comes
from Sender, Reply-To or Return-Path, and ``from_source`` says which.
"""

from __future__ import annotations

import contextlib
import email.policy
import email.utils
import re
from datetime import UTC, datetime
from email.message import Message

from mailticket.errors import UnparseableMessage
from mailticket.mail.address_lists import is_daemon_address, parse_addresses, salvage_address
from mailticket.mail.body import extract_body
from mailticket.mail.bounce_scan import BOUNCE_SUBJECT, looks_like_bounce, scan_bounce
from mailticket.mail.charsets import decode_header_value, detect_charset, mostly_runs
from mailticket.mail.filenames import safe_filename
from mailticket.mail.header_block import repair_header_block
from mailticket.mail.inbound import (
    MAX_DEPTH,
    MAX_HEADER_BLOCK,
    MAX_HEADER_SIZE,
    MAX_HEADERS,
    MAX_PARTS,
    MAX_REFERENCES,
    Attachment,
    DsnRecipient,
    InboundMail,
    normalise_message_ids,
)
from mailticket.mail.lean import Runs, parse_tree
from mailticket.mail.mime import mime_param, mime_type, subparts

# The public names of the mail-reading package, kept importable from here.
__all__ = [
    "BOUNCE_SUBJECT",
    "Attachment",
    "DsnRecipient",
    "InboundMail",
    "is_daemon_address",
    "normalise_message_ids",
    "parse",
    "safe_filename",
]

# A header line as the stdlib feed parser sees it (email.feedparser.headerRE).
_HEADER_LINE = re.compile(rb"^(From |[\041-\071\073-\176]*:|[\t ])")
# Declared containers; a cheap bound on parts and depth before parsing.
_CONTAINER = re.compile(rb"(?im)^content-type[ \t]*:\s*(?:multipart|message)/")
# How much of the mail helps to guess the charset of undeclared 8-bit headers.
_HINT_SAMPLE = 8 * 1024
# Readings of a short header value that need no second opinion (Cyrillic is preferred).
_SETTLED = frozenset({"utf_8", "cp1251", "koi8_r", "cp866"})
_CHARSET_PARAM = re.compile(r"charset\s*=\s*\"?([^\";\s]+)", re.IGNORECASE)


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
        if mime_type(part) != "message/delivery-status":
            stack.extend((child, depth + 1) for child in reversed(subparts(part)))
    return defects


def _parse_bytes(raw: bytes) -> tuple[Message, Runs]:
    """Run the stdlib parser after the cheap raw-byte limits; translate its failures.

    The tree comes with the long base64 runs that were cut out of it (see
    :mod:`mailticket.mail.lean`); only the body walk reads payloads before
    they are put back.
    """
    if not raw.strip():
        raise UnparseableMessage("empty message")
    first = raw[:1024]
    if b"\x00" in first and not _HEADER_LINE.match(first):
        raise UnparseableMessage("binary data without mail headers")
    _check_header_block(raw)
    if len(_CONTAINER.findall(raw)) > MAX_PARTS:
        raise UnparseableMessage(f"more than {MAX_PARTS} MIME parts")
    try:
        return parse_tree(raw)
    except RecursionError as exc:
        raise UnparseableMessage(f"MIME nesting deeper than {MAX_DEPTH} levels") from exc
    except Exception as exc:  # the feed parser rarely raises; when it does, it is fatal
        raise UnparseableMessage(f"mail parser failed: {type(exc).__name__}") from exc


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


def _undeclared_hint(raw_headers: list[tuple[str, str]], raw: bytes) -> str | None:
    """A charset for raw 8-bit headers of a mail that declares none, or None.

    A subject or file name alone is too short to tell Latin from Chinese,
    Japanese or Korean, so when one reads as neither UTF-8 nor Cyrillic, the
    guess is made again on the start of the mail (headers and body), and a
    wide answer (a script other than Cyrillic or Latin) becomes the hint.
    Mail with ASCII, UTF-8 or Russian headers (nearly all) skips it.
    """
    for _, value in raw_headers:
        if value.isascii():
            continue
        with contextlib.suppress(UnicodeEncodeError):
            data = value.encode("ascii", "surrogateescape")
            # The same value is decoded (and detected, from the cache) right after.
            if mostly_runs(data, 2) and detect_charset(data)[0] not in _SETTLED:
                lines = raw[:_HINT_SAMPLE].splitlines()
                sample = b"\n".join(line for line in lines if not line.isascii())
                codec, why = detect_charset(sample)
                return codec if why is not None else None
    return None


def _recover_sender(
    raw_headers: list[tuple[str, str]], hint: str | None, defects: list[str]
) -> tuple[str, str, str]:
    """(display name, addr-spec, source header) when From holds no readable address.

    The best address of From, then Sender, then Reply-To, then the envelope
    as the MTA recorded it (Return-Path); the source is recorded so that
    authentication knows what it rests on. A display name never supplies one.
    """
    froms = [v for n, v in raw_headers if n == "from"]
    name = decode_header_value(froms[0], hint) if froms else ""
    for header in ("from", "sender", "reply-to", "return-path"):
        values = [v for n, v in raw_headers if n == header]
        found = parse_addresses(values, header.title(), hint, []) if header != "from" else []
        addr = found[0][1] if found else salvage_address(values)
        if addr:
            defects.append(
                "address recovered from a malformed From" if header == "from"
                else f"no readable address in From; sender taken from {header.title()}"
            )
            shown = "" if "@" in name else name
            return (shown if header != "from" else ""), addr, header
    return name if "@" not in name else "", "", ""


def parse(raw: bytes) -> InboundMail:
    """Decode ``raw`` into an :class:`InboundMail`.

    :raises UnparseableMessage: the bytes are no mail at all, or a safety limit
        (header block, header count or size, MIME depth, parts, decoded size)
        is exceeded; the reason says which.
    """
    fixed, defects = repair_header_block(raw)
    msg, runs = _parse_bytes(fixed)
    defects += _check_structure(msg)
    raw_headers = _raw_headers(msg)
    ctype_raw = next((value for name, value in raw_headers if name == "content-type"), "")
    charset_match = _CHARSET_PARAM.search(ctype_raw)
    hint = charset_match.group(1) if charset_match else _undeclared_hint(raw_headers, fixed)

    headers: dict[str, list[str]] = {}
    for name, value in raw_headers:
        headers.setdefault(name, []).append(decode_header_value(value, hint))
    for once in ("from", "subject", "date", "message-id"):
        if len(headers.get(once, ())) > 1:
            defects.append(f"more than one {once.title()} header")

    from_list = parse_addresses([v for n, v in raw_headers if n == "from"], "From", hint, defects)
    from_name, from_addr = from_list[0] if from_list else ("", "")
    from_source = "from"
    if not from_addr:
        from_name, from_addr, from_source = _recover_sender(raw_headers, hint, defects)

    def address_field(name: str, label: str) -> tuple[str, ...]:
        values = [v for n, v in raw_headers if n == name]
        return tuple(addr for _, addr in parse_addresses(values, label, hint, defects))

    def first_decoded(name: str) -> str | None:
        values = headers.get(name)
        return values[0] if values else None

    message_ids = normalise_message_ids(first_decoded("message-id"))
    references = normalise_message_ids(first_decoded("references"))
    if len(references) > MAX_REFERENCES:
        defects.append(f"References cut to the last {MAX_REFERENCES} ids")
        references = references[-MAX_REFERENCES:]

    body = extract_body(msg, hint, defects, runs)
    ctype = mime_type(msg)
    report_type = ""
    if ctype == "multipart/report":
        report_type = (mime_param(msg, "report-type") or "").lower()
    subject = first_decoded("subject") or ""
    dsn = body.dsn
    if not dsn and looks_like_bounce(msg, subject, from_addr, report_type):
        runs.splice(msg)  # flufl.bounce reads bodies: give it every byte
        dsn = scan_bounce(fixed, msg, defects)

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
        from_addresses=tuple(addr for _, addr in from_list),
        from_source=from_source,
    )
