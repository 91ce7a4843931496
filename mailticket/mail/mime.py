"""Small readers of one MIME part's raw headers: type, parameters, disposition, sub-parts.

They read the raw header values (``raw_items``), never the stdlib header
registry, for the reasons given in :mod:`mailticket.mail.parse`.
"""

from __future__ import annotations

import email.utils
import re
from email.message import Message

from mailticket.mail.inbound import EMAIL_ERRORS, WHITESPACE

FOLD = re.compile(r"\r?\n(?=[ \t])")
_MIME_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")


def first_raw(part: Message, name: str) -> str | None:
    """The first raw value of header ``name`` (lower-case) in ``part``, unfolded."""
    for key, value in part.raw_items():
        if key.lower() == name:
            return FOLD.sub("", str(value))
    return None


def mime_type(part: Message) -> str:
    """The part's type/subtype from the raw header; the part's default if missing or invalid."""
    raw = first_raw(part, "content-type")
    if raw:
        value = WHITESPACE.sub("", raw.split(";", 1)[0]).lower()
        if _MIME_TYPE.match(value):
            return value
    return part.get_default_type()


def mime_param(part: Message, name: str, header: str = "content-type") -> str | None:
    """A Content-Type (or other) parameter, RFC 2231 collapsed, or None if unreadable."""
    try:
        value = part.get_param(name, header=header)
    except EMAIL_ERRORS:
        return None
    if isinstance(value, tuple):
        value = email.utils.collapse_rfc2231_value(value)
    return str(value) if value is not None else None


def mime_disposition(part: Message) -> str:
    """``attachment``, ``inline`` or ``""`` from the raw Content-Disposition."""
    raw = first_raw(part, "content-disposition") or ""
    return raw.split(";", 1)[0].strip().lower()


def subparts(part: Message) -> list[Message]:
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
