"""The MIME walk: the best text body, sanitised HTML, attachments and DSN records.

Recursion is bounded because the parser has already refused trees deeper
than MAX_DEPTH; decoded bytes are counted against MAX_DECODED as they appear.
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass
from email.message import Message
from typing import Any

from mailticket.errors import UnparseableMessage
from mailticket.mail.charsets import decode_8bit, decode_bytes, decode_header_value
from mailticket.mail.filenames import EXTENSIONS, raw_filename, safe_filename
from mailticket.mail.htmltext import html_to_text, sanitise_html
from mailticket.mail.inbound import (
    EMAIL_ERRORS,
    MAX_DECODED,
    Attachment,
    DsnRecipient,
    normalise_message_ids,
)
from mailticket.mail.lean import Runs
from mailticket.mail.mime import first_raw, mime_disposition, mime_param, mime_type, subparts
from mailticket.mail.transfer import lenient_base64, lenient_uudecode, split_uu_files

_UUENCODE = frozenset({"x-uuencode", "uuencode", "uue", "x-uue"})


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

    def __init__(self, hint: str | None, defects: list[str], runs: Runs) -> None:
        self.hint = hint
        self.defects = defects
        self.runs = runs
        self.decoded = 0
        self.attachments: list[Attachment] = []
        self.dsn: list[DsnRecipient] = []

    def _count(self, size: int) -> None:
        self.decoded += size
        if self.decoded > MAX_DECODED:
            raise UnparseableMessage(f"decoded content larger than {MAX_DECODED >> 20} MiB")

    def payload(self, part: Message) -> bytes:
        """The transfer-decoded bytes of a leaf part (counted toward the decoded limit)."""
        known = len(part.defects)
        try:
            data = self.runs.decoded_payload(part)
        except EMAIL_ERRORS as exc:
            self.defects.append(f"undecodable part payload: {type(exc).__name__}")
            data = b""
        if not isinstance(data, bytes):
            data = b""
        # The stdlib reports base64 trouble as defects and returns a uuencoded
        # body it cannot read as it was ("begin 644 ..."); only then look closer.
        if len(part.defects) > known or b"begin " in data[:1024]:
            data = self.repaired(part, data, [type(d).__name__ for d in part.defects[known:]])
        self._count(len(data))
        return data

    def repaired(self, part: Message, data: bytes, found: list[str]) -> bytes:
        """Base64 and uuencode the stdlib left (partly) undecoded, decoded leniently."""
        cte = str(part.get("content-transfer-encoding", "")).strip().lower()
        # The payload as stored: get_payload() would decode 8-bit bytes to U+FFFD.
        raw = vars(part).get("_payload")
        if not isinstance(raw, str):
            return data
        encoded = raw.encode("ascii", "surrogateescape")
        if cte == "base64" and any("Base64" in name for name in found):
            self.defects.append(f"base64 decoded leniently ({', '.join(dict.fromkeys(found))})")
            return lenient_base64(encoded)
        if cte in _UUENCODE and data == encoded:
            # The stdlib returns the encoded bytes when its strict decoder fails.
            decoded = lenient_uudecode(encoded)
            if decoded is not None:
                self.defects.append("uuencoded body decoded leniently")
                return decoded
        return data

    def text_of(self, part: Message, data: bytes | None = None) -> str:
        """A text part decoded with its declared charset, or a detected one if that is wrong."""
        if data is None:
            data = self.payload(part)
        decoded = decode_bytes(data, mime_param(part, "charset"))
        if decoded.note:
            self.defects.append(decoded.note)
        # NUL is no text anyone wrote, and PostgreSQL refuses it in a text column.
        return decoded.text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")

    def walk(self, part: Message) -> list[_Piece]:
        """Readable pieces of ``part`` in reading order; everything else becomes attachments."""
        ctype = mime_type(part)
        children = subparts(part)
        if ctype.startswith("multipart/") and children:
            return self.multipart(ctype, children)
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            self.read_dsn(part)
            return []
        if ctype in ("text/plain", "text/html") or ctype.startswith("multipart/"):
            is_file = mime_disposition(part) == "attachment" or raw_filename(part, self.hint)
            if not is_file and ctype == "text/html":
                return [_Piece(None, self.text_of(part))]
            if not is_file:
                return [_Piece(self.plain_text(part), None)]
        self.attach(part, ctype)
        return []

    def plain_text(self, part: Message) -> str:
        """A text/plain part; uuencoded files inside it become attachments (old clients)."""
        data = self.payload(part)
        found = split_uu_files(data)
        if found is None:
            return self.text_of(part, data)
        data, files = found
        for uu in files:
            name = safe_filename(decode_8bit(uu.name, self.hint))
            self._count(len(uu.data))
            self.attachments.append(
                Attachment(filename=name, content_type="application/octet-stream", data=uu.data)
            )
        self.defects.append(f"{len(files)} uuencoded file(s) taken out of the text")
        return self.text_of(part, data)

    def multipart(self, ctype: str, children: list[Message]) -> list[_Piece]:
        """Readable pieces of a multipart, by the rules of its subtype."""
        subtype = ctype.partition("/")[2]
        if subtype == "alternative":
            return self.alternative(children)
        if subtype == "encrypted":
            self.defects.append("encrypted content; body not readable")
            for child in children:
                self.attach(child, mime_type(child))
            return []
        if subtype in ("related", "signed", "report"):
            # The first part is the body (the root, the signed content, the
            # human-readable report); the rest are files, signatures or DSN data.
            pieces = self.walk(children[0])
            for child in children[1:]:
                child_type = mime_type(child)
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
        name = raw_filename(part, self.hint)
        inner = subparts(part)
        if ctype in ("message/rfc822", "message/global") and inner:
            data = self.message_bytes(inner[0])
            if not name:
                subject = decode_header_value(first_raw(inner[0], "subject") or "", self.hint)
                # The subject is not a path; keep its slashes out of basename logic.
                name = (subject.replace("/", "_").replace("\\", "_") or "message") + ".eml"
        else:
            data = self.payload(part)
        if not name:
            name = "attachment" + EXTENSIONS.get(ctype, "")
        content_ids = normalise_message_ids(first_raw(part, "content-id"))
        self.attachments.append(
            Attachment(
                filename=safe_filename(name),
                content_type=ctype,
                data=data,
                content_id=content_ids[0] if content_ids else None,
                inline=mime_disposition(part) == "inline",
            )
        )

    def message_bytes(self, inner: Message) -> bytes:
        """An attached mail serialised as it came (headers are not refolded or re-parsed)."""
        try:
            self.runs.splice(inner)
            data = inner.as_bytes(policy=_SERIALISE)
        except EMAIL_ERRORS as exc:
            self.defects.append(f"attached message not serialisable: {type(exc).__name__}")
            data = b""
        self._count(len(data))
        return data

    def read_dsn(self, part: Message) -> None:
        """Per-recipient fields of a message/delivery-status part (RFC 3464 §2.3)."""
        if part.is_multipart():
            blocks = [{k.lower(): str(v) for k, v in b.raw_items()} for b in subparts(part)]
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


def extract_body(msg: Message, hint: str | None, defects: list[str], runs: Runs) -> _Body:
    """Text (HTML converted only when no plain text exists), sanitised HTML, files, DSN.

    ``msg`` may still hold the placeholders of ``runs`` (see :mod:`mailticket.mail.lean`).
    """
    walker = _BodyWalker(hint, defects, runs)
    pieces = walker.walk(msg)
    text = _text(pieces)
    html_source = _html(pieces)
    if not text.strip() and html_source:
        text = "\n\n".join(html_to_text(p.html) for p in pieces if p.html)
    if mime_type(msg) == "application/pkcs7-mime":
        defects.append("encrypted content; body not readable")
    return _Body(
        text=text.strip(),
        html=sanitise_html(html_source) if html_source else None,
        attachments=walker.attachments,
        dsn=walker.dsn,
    )

