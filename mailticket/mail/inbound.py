"""The decoded inbound mail that every later stage reads, and the parser's safety limits.

Kept apart from the parser so that the stages (auth, threader, pipeline) depend
on a small vocabulary module, not on MIME machinery.
"""

from __future__ import annotations

import email.errors
import re
from dataclasses import dataclass, field
from datetime import datetime

MAX_HEADER_BLOCK = 256 * 1024
MAX_HEADERS = 1000
MAX_HEADER_SIZE = 64 * 1024
MAX_DEPTH = 20
MAX_PARTS = 200
MAX_DECODED = 50 * 1024 * 1024
MAX_ADDRESSES = 100
MAX_REFERENCES = 100

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
    # Every address of every From field: more than one, without a Sender, names nobody.
    from_addresses: tuple[str, ...] = ()
    # Where from_addr came from: "from", or "sender", "reply-to", "return-path"
    # when From held no readable address (issue 14), "" when nothing did.
    from_source: str = "from"

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None


_MSGID_RE = re.compile(r"<([^<>]+)>")
WHITESPACE = re.compile(r"\s+")


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
        tokens = [bare] if bare and not WHITESPACE.search(bare) else []
    seen: dict[str, None] = {}
    for token in tokens:
        cleaned = WHITESPACE.sub("", token)
        if cleaned:
            seen.setdefault(cleaned, None)
    return tuple(seen)
