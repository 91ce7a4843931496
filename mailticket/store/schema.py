"""SQLAlchemy 2 typed tables: tickets and their articles, the spool, the outbox, audit.

Timestamps are stored as UTC and always come back timezone-aware (SQLite
would otherwise hand back naive datetimes and comparisons would silently lie).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base for every mailticket table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON
    }


class QueueState:
    """States shared by the two work queues (spool and outbox)."""

    QUEUED = "queued"
    CLAIMED = "claimed"
    DONE = "done"
    QUARANTINED = "quarantined"
    REJECTED = "rejected"
    FAILED = "failed"
    DROPPED = "dropped"
    # Outbox only: the relay took the mail, then a delivery report (DSN) came back.
    BOUNCED = "bounced"


class QueueRow:
    """Columns every work-queue table has; ``store.workqueue`` works on these only."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    state: Mapped[str] = mapped_column(String(16), default=QueueState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    claim_token: Mapped[str | None] = mapped_column(String(64), default=None)
    # The daemon process that took the last claim (``instances.holder``); None from the CLI.
    claimed_by: Mapped[str | None] = mapped_column(String(160), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class SpoolItem(QueueRow, Base):
    """A raw inbound mail with its envelope, committed before we say 250."""

    __tablename__ = "spool"
    # The claim's two seeks (due, expired lease) read this index in claim order (0013).
    __table_args__ = (Index("ix_spool_due", "state", "next_attempt_at", "id"),)

    source: Mapped[str] = mapped_column(String(64))
    # IMAP: account/UIDVALIDITY/UID; SMTP: None (every DATA is a new item).
    idempotency_key: Mapped[str | None] = mapped_column(String(512), unique=True, default=None)
    mail_from: Mapped[str] = mapped_column(String(512))
    rcpt_tos: Mapped[list[str]]
    peer: Mapped[str] = mapped_column(String(128), default="")
    auth_user: Mapped[str | None] = mapped_column(String(320), default=None)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(String(64), default=None)
    ticket_id: Mapped[int | None] = mapped_column(Integer, default=None)


class OutboxItem(QueueRow, Base):
    """A composed outgoing mail; written in the same transaction as the ticket change."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at", "id"),)

    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), default=None)
    kind: Mapped[str] = mapped_column(String(32))
    envelope_from: Mapped[str] = mapped_column(String(512))
    rcpt_tos: Mapped[list[str]]
    message_id: Mapped[str] = mapped_column(String(512), index=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # What the delivery report that came back said (``5.1.1``, its Diagnostic-Code).
    dsn_status: Mapped[str | None] = mapped_column(String(32), default=None)
    dsn_diagnostic: Mapped[str | None] = mapped_column(Text, default=None)


class Ticket(Base):
    """A support case; ``id`` is also its public number (``MT-<id>``)."""

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[str] = mapped_column(String(16))
    line: Mapped[str] = mapped_column(String(4), default="L1")
    contract_id: Mapped[str | None] = mapped_column(String(128), index=True)
    requester: Mapped[str] = mapped_column(String(320))
    assignee: Mapped[str | None] = mapped_column(String(320), default=None)
    locale: Mapped[str] = mapped_column(String(8), default="ru")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    first_response_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    time_spent_minutes: Mapped[int] = mapped_column(Integer, default=0)
    # SLA bookkeeping: the scheduler scans ``next_sla_check_at`` (indexed), never recomputes all.
    first_response_due: Mapped[datetime | None] = mapped_column(default=None)
    resolution_due: Mapped[datetime | None] = mapped_column(default=None)
    next_sla_check_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    # When the ticket entered ``waiting`` (set by every change to it, whether or not the
    # plan pauses its clock, cleared on leaving it): the digest's "waiting since".
    sla_paused_since: Mapped[datetime | None] = mapped_column(default=None)
    merged_into: Mapped[int | None] = mapped_column(Integer, default=None)
    # What the contract sold when the ticket opened, for the monthly report.
    contract_type: Mapped[str | None] = mapped_column(String(32), default=None)
    # Monitoring alerts: one ticket per contract+host+trigger (a hash), its last
    # state, how many alert mails it got and how often it flapped back to a problem.
    alert_key: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    alert_state: Mapped[str | None] = mapped_column(String(8), default=None)
    alert_count: Mapped[int] = mapped_column(Integer, default=0)
    alert_flaps: Mapped[int] = mapped_column(Integer, default=0)
    # Customer feedback: the 1-5 rating, its comment, when we asked and when they answered.
    rating: Mapped[int | None] = mapped_column(Integer, default=None)
    rating_comment: Mapped[str | None] = mapped_column(Text, default=None)
    rating_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    rated_at: Mapped[datetime | None] = mapped_column(default=None)
    # What the SLA restamp needs from the ticket's history (status changes, the
    # last reply, unanswered mail, the SLA record's keys), kept up to date by the
    # writers of that history (``tickets.sla_facts``); None: unknown, read in full.
    sla_facts: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

    articles: Mapped[list[Article]] = relationship(
        back_populates="ticket", order_by="Article.id", cascade="all, delete-orphan"
    )
    contacts: Mapped[list[TicketContact]] = relationship(
        back_populates="ticket", cascade="all, delete-orphan"
    )


class TicketContact(Base):
    """A customer address on a ticket (requester or colleague in Cc) who gets our replies."""

    __tablename__ = "ticket_contacts"
    __table_args__ = (UniqueConstraint("ticket_id", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    address: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16), default="requester")
    ticket: Mapped[Ticket] = relationship(back_populates="contacts")


class Article(Base):
    """One message on a ticket: inbound mail, our reply, a note or an automatic mail."""

    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    direction: Mapped[str] = mapped_column(String(4))
    kind: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str | None] = mapped_column(String(512), default=None)
    from_addr: Mapped[str] = mapped_column(String(320))
    to_addrs: Mapped[list[str]]
    subject: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str | None] = mapped_column(Text, default=None)
    spool_id: Mapped[int | None] = mapped_column(Integer, default=None)
    author: Mapped[str | None] = mapped_column(String(320), default=None)
    evidence: Mapped[str | None] = mapped_column(String(32), default=None)
    defects: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime]
    ticket: Mapped[Ticket] = relationship(back_populates="articles")
    attachments: Mapped[list[AttachmentRow]] = relationship(
        back_populates="article", cascade="all, delete-orphan"
    )


class MessageIdIndex(Base):
    """Every Message-ID we know on a ticket (theirs and ours), for threading and dedupe."""

    __tablename__ = "message_ids"

    message_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    article_id: Mapped[int | None] = mapped_column(Integer, default=None)
    direction: Mapped[str] = mapped_column(String(4))


class Blob(Base):
    """Attachment content stored by its SHA-256, never under the sender's filename."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class AttachmentRow(Base):
    """An attachment of an article: safe display name plus a pointer to its blob."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    article: Mapped[Article] = relationship(back_populates="attachments")


class AuditEvent(Base):
    """Who changed what on a ticket, when, and on what evidence."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int | None] = mapped_column(Integer, index=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    evidence: Mapped[str | None] = mapped_column(String(32), default=None)


class AutoReplyLog(Base):
    """Automatic mail we sent, for per-recipient rate limits (loop protection)."""

    __tablename__ = "auto_reply_log"
    __table_args__ = (
        Index("ix_auto_reply_recipient", "recipient", "sent_at"),
        Index("ix_auto_reply_ticket", "ticket_id", "sent_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recipient: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(32))
    ticket_id: Mapped[int | None] = mapped_column(Integer, default=None)
    sent_at: Mapped[datetime]


class SlaEvent(Base):
    """One entry of the SLA record: a warning, breach, met, stop, pause or resume.

    The record is how a provider proves its service, so it is append-only: rows
    are inserted once and never updated or deleted (database triggers refuse
    both, migration 0008). The unique key ``(ticket, timer, kind, deadline)``
    makes every writer idempotent: a second scan, another instance or a re-run
    after a crash inserts nothing. ``deadline`` is the entry's own instant (the
    threshold for a warning or breach, the answer for ``met``, the start of a
    pause); ``created_at`` is when it was written. The other columns freeze
    what was true then (priority, target, due time, minutes used), so a report
    never has to recompute the past from today's ticket.
    """

    __tablename__ = "sla_events"
    __table_args__ = (UniqueConstraint("ticket_id", "timer", "kind", "deadline"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    timer: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    deadline: Mapped[datetime]
    created_at: Mapped[datetime]
    # What was true when the entry was written (None on rows written before 0008).
    priority: Mapped[str | None] = mapped_column(String(16), default=None)
    period: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    target_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    used_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    overdue_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    calendar: Mapped[str | None] = mapped_column(String(64), default=None)
    rule: Mapped[str | None] = mapped_column(String(16), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    notified: Mapped[bool] = mapped_column(default=True)
    # Whom the event was mailed to, as "address (role)", once each; None if nobody.
    recipients: Mapped[list[str] | None] = mapped_column(JSON, default=None)


class SlaMonthClose(Base):
    """A contract's month as it stood when it was first reported: the report's frozen inputs.

    Written once, when the month's report is first built after the month ended
    (by the scheduled run or by hand). Every later build of that month reads the
    record up to ``last_event_id`` and this snapshot of what was still running,
    so the scheduled report and any rebuild print the same figures.
    Append-only like the record.
    """

    __tablename__ = "sla_month_close"
    __table_args__ = (UniqueConstraint("contract_id", "month"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contract_id: Mapped[str] = mapped_column(String(64))
    month: Mapped[str] = mapped_column(String(7))
    closed_at: Mapped[datetime]
    last_event_id: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)


class DeliveryFailure(Base):
    """One failed delivery to one address: a matched bounce or a relay 5xx/4xx refusal.

    Each failure is kept (the engineer sees them, the suppression list counts
    them); one outbox row counts once per address and source, so a repeated DSN
    for the same mail is not a second failure.
    """

    __tablename__ = "delivery_failures"
    __table_args__ = (Index("ix_delivery_failures_address", "address", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    address: Mapped[str] = mapped_column(String(320))
    source: Mapped[str] = mapped_column(String(16))
    permanent: Mapped[bool] = mapped_column(default=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    outbox_id: Mapped[int | None] = mapped_column(Integer, default=None)
    ticket_id: Mapped[int | None] = mapped_column(Integer, default=None)
    at: Mapped[datetime]


class AddressSuppression(Base):
    """An address we stopped mailing after repeated permanent failures, until an admin clears it."""

    __tablename__ = "address_suppressions"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    permanent_failures: Mapped[int] = mapped_column(Integer, default=0)
    suppressed_at: Mapped[datetime | None] = mapped_column(default=None)
    cleared_at: Mapped[datetime | None] = mapped_column(default=None)


class Instance(Base):
    """A running daemon process and its heartbeat, so a dead one's claims are taken back early."""

    __tablename__ = "instances"

    # ``<instance_id>/<random>``: one per process, so a restart is a new holder.
    holder: Mapped[str] = mapped_column(String(160), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(128))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]


class ImapPollState(Base):
    """The last poll of one IMAP account (one row per account), for ``mailticket status``."""

    __tablename__ = "imap_poll_state"

    account: Mapped[str] = mapped_column(String(128), primary_key=True)
    polled_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(32))  # "ok", or the fault kind
    error: Mapped[str | None] = mapped_column(Text, default=None)
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    spooled: Mapped[int] = mapped_column(Integer, default=0)
    last_ok_at: Mapped[datetime | None] = mapped_column(default=None)


class DigestSetting(Base):
    """What an engineer set by mail for their morning digest (``#digest off``, ``#digest 09:00``).

    It overrides ``[digest]`` in the config; no row means the config decides.
    """

    __tablename__ = "digest_settings"

    engineer: Mapped[str] = mapped_column(String(320), primary_key=True)
    enabled: Mapped[bool]
    # Local time "HH:MM", or None for the start of the working day.
    at: Mapped[str | None] = mapped_column(String(5), default=None)
    updated_at: Mapped[datetime]


class DigestSent(Base):
    """One digest of one kind to one recipient on one local day: the key that sends it once."""

    __tablename__ = "digest_sent"
    __table_args__ = (UniqueConstraint("recipient", "kind", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recipient: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(32))
    day: Mapped[date]
    created_at: Mapped[datetime]
