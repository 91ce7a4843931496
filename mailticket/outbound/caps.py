"""Caps on automatic mail: log every one we queue, refuse the one too many.

Every automatic mail is counted per recipient (RFC 3834, Znuny's
``PostmasterMaxEmails``) and per ticket, so a loop with another robot burns out
against these caps instead of flooding both sides. The log is only ever counted
in SQL, so it is written and read with prebuilt Core statements: rows buffered
on the unit of work (one executemany at its next flush point), one query per
check, and no flush of the caller's session.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    bindparam,
    case,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from mailticket.config import MailConfig
from mailticket.outbound import stopped, suppression
from mailticket.store import after_flush
from mailticket.store.schema import AddressSuppression, AutoReplyLog

# Automatic mail about one ticket, to anyone, in any hour: a circuit breaker
# for loops that the per-recipient cap would stop only after forty rounds.
AUTO_MAILS_PER_TICKET_PER_HOUR = 10

_LOG = cast(Table, AutoReplyLog.__table__)
_INSERT = insert(_LOG)


def _auto_mail_counts(with_ticket: bool) -> Select[tuple[int, int, int]]:
    """Every cap of :func:`auto_mail_allowed` in one query, built once.

    Counts the recipient's automatic mail since ``:since`` (on the recipient
    index), of those the ones of ``:kind`` (and ``:ticket_id``), and the
    ticket's automatic mail to anyone since ``:hour``.
    """
    log_ = _LOG.c
    today = (log_.recipient == bindparam("recipient")) & (log_.sent_at >= bindparam("since"))
    same_kind = today & (log_.kind == bindparam("kind"))
    this_hour: ColumnElement[bool] = false()
    where: ColumnElement[bool] = today
    if with_ticket:
        same_kind = same_kind & (log_.ticket_id == bindparam("ticket_id"))
        this_hour = (log_.ticket_id == bindparam("ticket_id")) & (log_.sent_at >= bindparam("hour"))
        where = or_(today, this_hour)
    return select(
        *(func.coalesce(func.sum(case((cond, 1), else_=0)), 0)
          for cond in (today, same_kind, this_hour))
    ).select_from(_LOG).where(where)


_AUTO_MAIL_COUNTS = _auto_mail_counts(with_ticket=False)
_AUTO_MAIL_COUNTS_TICKET = _auto_mail_counts(with_ticket=True)


def _suppressed_and_counts() -> Any:
    """The active suppressions among ``:keys`` and the caps of one recipient, in one query.

    The first row (tag ``c``) holds :func:`_auto_mail_counts`' three counts for a
    ticket; every other row (tag ``s``) names one suppressed address. A
    message's gate thus costs one round trip however many people it reaches.
    """
    counts = _AUTO_MAIL_COUNTS_TICKET.subquery()
    row = counts.c
    first = select(literal("c", String).label("tag"), literal("", String).label("address"),
                   *(col.label(f"n{i}") for i, col in enumerate(row)))
    zero = literal(0, Integer)
    suppressed = select(literal("s", String), AddressSuppression.address, zero, zero, zero).where(
        suppression.ACTIVE_AMONG_KEYS)
    return union_all(first, suppressed)


_SUPPRESSED_AND_COUNTS = _suppressed_and_counts()
# The tables these lookups read: only their buffered rows are written before them.
_READS = (AutoReplyLog.__tablename__, AddressSuppression.__tablename__)


@dataclass(frozen=True)
class Gate:
    """What one query found for a message: the suppressed addresses (as given) and one
    recipient's cap counts (``to_recipient``, ``of_kind``, ``for_ticket``)."""

    suppressed: set[str]
    counts: tuple[int, int, int]


def gate(
    session: Session, addresses: Iterable[str], *, recipient: str, kind: str, ticket_id: int,
    now: datetime,
) -> Gate:
    """Suppression of every address a message may reach and the caps of its automatic
    reply to ``recipient``, in one query (see :func:`auto_mail_allowed`'s ``counts``)."""
    given = {a: suppression.key_of(a) for a in addresses}
    after_flush.write_buffered(session, _READS)
    rows = session.connection().execute(_SUPPRESSED_AND_COUNTS, {
        "keys": sorted(set(given.values())), "recipient": recipient, "kind": kind,
        "since": now - timedelta(days=1), "ticket_id": ticket_id,
        "hour": now - timedelta(hours=1),
    }).all()
    counts = next((int(r[2] or 0), int(r[3] or 0), int(r[4] or 0)) for r in rows if r[0] == "c")
    active = {r[1] for r in rows if r[0] == "s"}
    return Gate({a for a, key in given.items() if key in active}, counts)


def auto_mail_allowed(
    session: Session, mail_cfg: MailConfig, recipient: str, kind: str, now: datetime,
    *, per_day: int | None = None, ticket_id: int | None = None, about: int | None = None,
    counts: tuple[int, int, int] | None = None,
) -> bool:
    """Whether one more automatic mail to ``recipient`` stays under every cap.

    Three caps, all counted from ``auto_reply_log`` (RFC 3834, Znuny's
    ``PostmasterMaxEmails``): ``per_day`` of this ``kind`` (and ticket, if
    given) to this recipient; all automatic mail to this recipient per day
    (``mail.auto_replies_per_recipient_per_day``, or the recipient's entry in
    ``mail.auto_reply_overrides``); and, for a ticket, at most
    :data:`AUTO_MAILS_PER_TICKET_PER_HOUR` to anyone. A loop with another robot
    burns out against these instead of flooding both sides.

    A refusal is recorded once (``stopped``: a log line, and an audit event on
    ``about`` or ``ticket_id``); ``about`` names the ticket a mail concerns
    without counting the caps per ticket. ``counts``: the caller's :func:`gate`
    for this recipient, kind and ticket, so nothing is read here.
    """
    since = now - timedelta(days=1)
    overrides: Mapping[str, int] = getattr(mail_cfg, "auto_reply_overrides", None) or {}
    daily = overrides.get(recipient.lower(), mail_cfg.auto_replies_per_recipient_per_day)
    params = {"recipient": recipient, "since": since, "kind": kind}
    if counts is None:
        row: Any
        # Core, no autoflush: only queue_mail writes this log, into the unit of
        # work's buffer, which must reach the table before it is counted.
        after_flush.write_buffered(session, _READS)
        if ticket_id is None:
            row = session.connection().execute(_AUTO_MAIL_COUNTS, params).one()
        else:
            params.update(ticket_id=ticket_id, hour=now - timedelta(hours=1))
            row = session.connection().execute(_AUTO_MAIL_COUNTS_TICKET, params).one()
        counts = (int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))
    to_recipient, of_kind, for_ticket = counts
    if to_recipient >= daily:
        reason, limit = stopped.CAP_RECIPIENT_DAY, daily
    elif per_day is not None and of_kind >= per_day:
        reason, limit = stopped.CAP_KIND_DAY, per_day
    elif for_ticket >= AUTO_MAILS_PER_TICKET_PER_HOUR:  # always 0 without a ticket
        reason, limit = stopped.CAP_TICKET_HOUR, AUTO_MAILS_PER_TICKET_PER_HOUR
    else:
        return True
    stopped.record(session, kind=kind, recipients=[recipient], reason=reason, now=now,
                   ticket_id=about if about is not None else ticket_id, detail=f"limit {limit}")
    return False


def log_auto_mail(
    session: Session, recipients: Sequence[str], kind: str, ticket_id: int | None, now: datetime
) -> None:
    """Count one automatic mail of ``kind`` to each of ``recipients`` (buffered to the next flush point)."""
    for recipient in recipients:
        after_flush.buffer(session, _INSERT, {
            "recipient": recipient, "kind": kind, "ticket_id": ticket_id, "sent_at": now})
