"""The SLA clock of a stored ticket: build it from the database, evaluate it, stamp the ticket.

``sla`` is pure and knows nothing of rows; this module is the glue. It reads a
ticket's facts (status changes from the audit log, articles for unanswered
customer mail), turns them into a :class:`~mailticket.sla.clock.TicketClock`, and
writes back the three columns the rest of the system reads without computing:
``first_response_due``, ``resolution_due`` and the indexed ``next_sla_check_at``
that the scheduler's scan selects on. Everything runs in the caller's
transaction, so a stamp commits with the change that caused it.

:func:`restamp` runs after every mail that touched a ticket (opened, replied,
status or priority changed); the scan calls it again after sending.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.model import ArticleKind, Calendar, Priority, SlaPlan, Status
from mailticket.sla.clock import (
    Pause,
    SlaStatus,
    TicketClock,
    Timer,
    evaluate,
)
from mailticket.sla.explain import explain, show_time
from mailticket.store.schema import Article, AuditEvent, OutboxItem, SlaEvent, Ticket
from mailticket.tickets import service as tickets

# The sla_events "timer" of the marker that an incident report went out; it is not
# an SLA timer, but the same unique key makes the report go out once per resolution.
INCIDENT_REPORT = "incident_report"

EventKey = tuple[str, str, datetime]

# The reads of a restamp, built once (one per message that touches a ticket).
_STATUS_CHANGES = (
    select(AuditEvent.at, AuditEvent.detail)
    .where(AuditEvent.ticket_id == bindparam("ticket_id"), AuditEvent.action == "status")
    .order_by(AuditEvent.at, AuditEvent.id)
)
_CLOCK_ARTICLES = (
    select(Article.kind, Article.created_at)
    .where(Article.ticket_id == bindparam("ticket_id"),
           Article.kind.in_([ArticleKind.REPLY.value, ArticleKind.CUSTOMER.value]))
    .order_by(Article.id)
)
_SENT_KEYS = select(SlaEvent.timer, SlaEvent.kind, SlaEvent.deadline).where(
    SlaEvent.ticket_id == bindparam("ticket_id")
)


@dataclass(frozen=True)
class TicketSla:
    """A ticket's plan, the calendar its priority counts in, and its clock."""

    plan: SlaPlan
    calendar: Calendar | None
    clock: TicketClock


def plan_of(config: Config, ticket: Ticket) -> SlaPlan | None:
    """The SLA plan of the ticket's contract; None for tickets without a contract."""
    contract = config.contracts.get(ticket.contract_id or "")
    if contract is None:
        return None
    return config.sla_plans.get(contract.sla_plan)


def pauses_from(status_events: Iterable[tuple[datetime, str, str]]) -> tuple[Pause, ...]:
    """Periods in status ``waiting`` from ``(at, from, to)`` status changes in order.

    A pause starts when the ticket enters ``waiting`` and ends when it leaves it (the
    customer's next message reopens it, or an engineer changes the status).
    """
    pauses: list[Pause] = []
    started: datetime | None = None
    for at, old, new in status_events:
        if new == Status.WAITING and started is None:
            started = at
        elif old == Status.WAITING and started is not None:
            pauses.append((started, at))
            started = None
    if started is not None:
        pauses.append((started, None))
    return tuple(pauses)


def unanswered_since(articles: Sequence[tuple[str, datetime]]) -> datetime | None:
    """The earliest customer message after the latest visible engineer reply, or None.

    ``articles`` are ``(kind, created_at)`` in order. Before the first reply there is no
    "next response" to wait for, so the answer is None until one exists.
    """
    last_reply = max((i for i, (kind, _) in enumerate(articles) if kind == ArticleKind.REPLY),
                     default=None)
    if last_reply is None:
        return None
    for kind, at in articles[last_reply + 1 :]:
        if kind == ArticleKind.CUSTOMER:
            return at
    return None


def clock_of(session: Session, ticket: Ticket) -> TicketClock:
    """The ticket's SLA facts as stored: timestamps, pauses and unanswered customer mail.

    A ticket opened in this session and untouched since (no status change, no
    reply) has no pauses and nothing unanswered after a reply, so nothing is read.
    """
    if tickets.untouched_since_open(session, ticket):
        return TicketClock(
            created_at=ticket.created_at,
            priority=Priority(ticket.priority),
            first_response_at=ticket.first_response_at,
            resolved_at=ticket.resolved_at,
            pauses=(),
            unanswered_since=None,
        )
    session.flush()
    status_rows = session.execute(_STATUS_CHANGES, {"ticket_id": ticket.id}).all()
    changes = [(at, str(d.get("from", "")), str(d.get("to", ""))) for at, d in status_rows]
    article_rows = session.execute(_CLOCK_ARTICLES, {"ticket_id": ticket.id}).all()
    return TicketClock(
        created_at=ticket.created_at,
        priority=Priority(ticket.priority),
        first_response_at=ticket.first_response_at,
        resolved_at=ticket.resolved_at,
        pauses=pauses_from(changes),
        unanswered_since=unanswered_since([(k, at) for k, at in article_rows]),
    )


def ticket_sla(session: Session, config: Config, ticket: Ticket) -> TicketSla | None:
    """Plan, calendar and clock of a ticket; None when no SLA applies to it."""
    plan = plan_of(config, ticket)
    if plan is None:
        return None
    targets = plan.targets.get(Priority(ticket.priority))
    calendar = config.calendars.get(targets.calendar) if targets is not None else None
    return TicketSla(plan, calendar, clock_of(session, ticket))


def sent_keys(session: Session, ticket_id: int) -> set[EventKey]:
    """The ``(timer, kind, deadline)`` of every SLA event already recorded for a ticket."""
    rows = session.execute(_SENT_KEYS, {"ticket_id": ticket_id}).all()
    return {(timer, kind, deadline) for timer, kind, deadline in rows}


def next_check(status: SlaStatus, sent: set[EventKey]) -> datetime | None:
    """When the scan must look at the ticket again: now for unsent events, else the next one."""
    pending = [event.deadline for event in status.events_due if event.key not in sent]
    candidates = [*pending, *([status.next_check_at] if status.next_check_at else [])]
    return min(candidates, default=None)


def stamp(ticket: Ticket, status: SlaStatus | None, sent: set[EventKey]) -> None:
    """Write the due instants and the next check of one evaluation onto the ticket."""
    if status is None:
        ticket.first_response_due = ticket.resolution_due = ticket.next_sla_check_at = None
        return
    first = status.timers.get(Timer.FIRST_RESPONSE)
    resolution = status.timers.get(Timer.RESOLUTION)
    ticket.first_response_due = first.deadline.due_at if first else None
    ticket.resolution_due = resolution.deadline.due_at if resolution else None
    ticket.next_sla_check_at = next_check(status, sent)


def evaluate_ticket(
    session: Session, config: Config, ticket: Ticket, now: datetime
) -> tuple[TicketSla, SlaStatus] | None:
    """The ticket's SLA and its evaluation at ``now``; None when no SLA applies."""
    found = ticket_sla(session, config, ticket)
    if found is None:
        return None
    return found, evaluate(found.clock, found.plan, config.calendars, now)


def restamp(session: Session, config: Config, ticket: Ticket, now: datetime) -> SlaStatus | None:
    """Recompute the ticket's deadlines and next check after a change; returns the evaluation.

    Called after a ticket opens, its status or priority changes, an engineer's reply goes
    out and each customer message arrives. A priority change recomputes from the ticket's
    start with the new targets (``sla`` rule 5).

    A ticket opened in this session and untouched since has no SLA events yet:
    it is evaluated from memory, without a flush or a read.
    """
    result = evaluate_ticket(session, config, ticket, now)
    status = result[1] if result is not None else None
    sent: set[EventKey] = set()
    if status is not None and not tickets.untouched_since_open(session, ticket):
        sent = sent_keys(session, ticket.id)
    stamp(ticket, status, sent)
    return status


def explain_ticket(session: Session, config: Config, ticket: Ticket, now: datetime) -> list[str]:
    """``mailticket sla show``: the plan, calendar, pauses and timers, then each event sent.

    Each recorded event is listed with the mails it queued (matched by the scan's instant
    and the outbox kind ``sla_<kind>_<role>``), so "who was told, and why" has an answer.
    """
    found = ticket_sla(session, config, ticket)
    events = session.scalars(
        select(SlaEvent).where(SlaEvent.ticket_id == ticket.id).order_by(SlaEvent.id)
    ).all()
    if found is None:
        lines = [f"No SLA: ticket has no contract with a known plan ({ticket.contract_id or '-'})"]
    else:
        sent = {(e.timer, e.kind, e.deadline): e.created_at for e in events}
        lines = explain(found.clock, found.plan, config.calendars, now, sent)
    zone = ZoneInfo(found.calendar.timezone if found and found.calendar else "UTC")
    mails = session.execute(
        select(OutboxItem.kind, OutboxItem.rcpt_tos, OutboxItem.created_at)
        .where(OutboxItem.ticket_id == ticket.id).order_by(OutboxItem.id)
    ).all()
    if not events:
        lines.append("Sent: nothing yet")
    for event in events:
        if event.timer == INCIDENT_REPORT:
            what, prefix = "incident report", INCIDENT_REPORT
        else:
            what, prefix = f"{event.timer} {event.kind}", f"sla_{event.kind}_"
        to = [f"{', '.join(rcpt)} ({kind.removeprefix(prefix) or 'customer and admins'})"
              for kind, rcpt, at in mails if kind.startswith(prefix) and at == event.created_at]
        lines.append(
            f"Sent: {what} (threshold {show_time(event.deadline, zone)}) at "
            f"{show_time(event.created_at, zone)} to {'; '.join(to) or 'nobody'}"
        )
    return lines
