"""Attachment file names: the sender's name decoded, then made safe to show and store."""

from __future__ import annotations

import contextlib
import re
import unicodedata
from email.message import Message

from mailticket.mail.charsets import decode_8bit, decode_encoded_words
from mailticket.mail.inbound import EMAIL_ERRORS
from mailticket.mail.mime import FOLD

_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_RESERVED_NAME = re.compile(
    r"(?i)^(con|prn|aux|nul|com[0-9\u00b9\u00b2\u00b3]|lpt[0-9\u00b9\u00b2\u00b3])$"
)
MAX_FILENAME_BYTES = 255
EXTENSIONS = {
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


def raw_filename(part: Message, hint: str | None) -> str:
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
    return decode_encoded_words(FOLD.sub("", text))


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
