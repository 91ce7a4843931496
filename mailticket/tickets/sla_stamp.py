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
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.model import ArticleKind, Calendar, PauseRule, Priority, SlaPlan, Status
from mailticket.sla.clock import (
    Pause,
    SlaStatus,
    TicketClock,
    Timer,
    evaluate,
)
from mailticket.sla.explain import explain, show_time
from mailticket.sla.record_row import RecordedRow
from mailticket.store.schema import Article, AuditEvent, OutboxItem, SlaEvent, Ticket
from mailticket.tickets import service as tickets
from mailticket.tickets import sla_facts, sla_record
from mailticket.tickets.sla_facts import StatusChange

# The sla_events "timer" of the marker that an incident report went out; it is not
# an SLA timer, but the same unique key makes the report go out once per resolution.
INCIDENT_REPORT = "incident_report"

EventKey = tuple[str, str, datetime]

# The reads of a restamp, built once (one per message that touches a ticket).
_CLOCK_CHANGES = (
    select(AuditEvent.at, AuditEvent.action, AuditEvent.detail)
    .where(AuditEvent.ticket_id == bindparam("ticket_id"),
           AuditEvent.action.in_(["status", "priority"]))
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
    """A ticket's plan, the calendar its priority counts in, its clock and counted pauses.

    ``waiting`` are the periods in status ``waiting`` that the plan's ``pause_on``
    rule counts; ``clock.pauses`` holds them and the periods spent resolved.
    """

    plan: SlaPlan
    calendar: Calendar | None
    clock: TicketClock
    waiting: tuple[Pause, ...] = ()
    # The next-response cycle the latest reply closed, if any: (unanswered since, answered).
    answered: tuple[datetime, datetime] | None = None


@dataclass(frozen=True)
class ClockFacts:
    """What the status history says about a ticket's clock (``sla`` rules 3 and 4)."""

    waiting: tuple[Pause, ...] = ()
    resolved: tuple[Pause, ...] = ()
    resolution_since: datetime | None = None
    period: int = 0


_DONE = (Status.RESOLVED, Status.CLOSED)


def clock_facts(changes: Iterable[StatusChange], pause_on: PauseRule) -> ClockFacts:
    """Counted waiting periods, resolved periods and the current resolution period.

    A waiting period counts under ``pause_on = "question"`` only if the change to
    ``waiting`` came with a reply the customer received: an internal status
    change cannot stop the clock. A reopening (resolved or closed → any other
    status) ends a resolved period and starts a new resolution period.
    """
    waiting: list[Pause] = []
    resolved: list[Pause] = []
    started: datetime | None = None
    done_since: datetime | None = None
    resolution_since: datetime | None = None
    period = 0
    for change in changes:
        if change.new == Status.WAITING and started is None:
            if pause_on is PauseRule.STATUS or change.visible is not False:
                started = change.at
        elif change.old == Status.WAITING and started is not None:
            waiting.append((started, change.at))
            started = None
        if change.new in _DONE and change.old not in _DONE:
            done_since = change.at
        elif change.old in _DONE and change.new not in _DONE:
            if done_since is not None:
                resolved.append((done_since, change.at))
            done_since = None
            resolution_since = change.at
            period += 1
    if started is not None:
        waiting.append((started, None))
    return ClockFacts(tuple(waiting), tuple(resolved), resolution_since, period)


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


def answered_cycle(articles: Sequence[tuple[str, datetime]]) -> tuple[datetime, datetime] | None:
    """``(unanswered since, answered at)`` of the next-response cycle the latest reply closed.

    The cycle is the first customer message after the reply before the latest one, up to
    the latest reply; None when the latest reply answered no such message (or is the first).
    """
    replies = [i for i, (kind, _) in enumerate(articles) if kind == ArticleKind.REPLY]
    if len(replies) < 2:
        return None
    previous, latest = replies[-2], replies[-1]
    for kind, at in articles[previous + 1 : latest]:
        if kind == ArticleKind.CUSTOMER:
            return at, articles[latest][1]
    return None


def clock_of(
    session: Session, ticket: Ticket, pause_on: PauseRule = PauseRule.QUESTION
) -> tuple[TicketClock, tuple[Pause, ...], tuple[datetime, datetime] | None]:
    """The ticket's SLA facts as stored, the waiting periods counted as pauses, and the
    next-response cycle the latest reply closed (see :func:`answered_cycle`).

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
        ), (), None
    history = facts_of(session, ticket)
    facts = clock_facts(sla_facts.ordered_changes(history), pause_on)
    return TicketClock(
        created_at=ticket.created_at,
        priority=Priority(ticket.priority),
        first_response_at=ticket.first_response_at,
        resolved_at=ticket.resolved_at,
        pauses=facts.waiting + facts.resolved,
        unanswered_since=history.unanswered_since,
        priority_since=history.priority_since,
        resolution_since=facts.resolution_since,
        period=facts.period,
    ), facts.waiting, history.answered


def facts_of(session: Session, ticket: Ticket) -> sla_facts.SlaFacts:
    """The ticket's SLA facts: from the ticket when known (no read), else read in full.

    What the full read finds is stored on the ticket, so its next change reads nothing.
    """
    known = sla_facts.load(ticket)
    if known is not None:
        return known
    found = read_facts(session, ticket.id)
    sla_facts.store(ticket, found)
    return found


def read_facts(session: Session, ticket_id: int) -> sla_facts.SlaFacts:
    """The SLA facts of a stored ticket, from its audit log, articles and SLA record."""
    session.flush()
    changes: list[StatusChange] = []
    priority_since: datetime | None = None
    for at, action, d in session.execute(_CLOCK_CHANGES, {"ticket_id": ticket_id}):
        if action == "priority":
            priority_since = at
        else:
            visible = d.get("visible")
            changes.append(StatusChange(at, str(d.get("from", "")), str(d.get("to", "")),
                                        visible if isinstance(visible, bool) else None))
    articles = [(k, at) for k, at in session.execute(_CLOCK_ARTICLES, {"ticket_id": ticket_id})]
    return sla_facts.from_history(changes, priority_since, articles,
                                  sent_keys(session, ticket_id),
                                  unanswered_since=unanswered_since(articles),
                                  answered=answered_cycle(articles))


def ticket_sla(session: Session, config: Config, ticket: Ticket) -> TicketSla | None:
    """Plan, calendar and clock of a ticket; None when no SLA applies to it."""
    plan = plan_of(config, ticket)
    if plan is None:
        return None
    targets = plan.targets.get(Priority(ticket.priority))
    calendar = config.calendars.get(targets.calendar) if targets is not None else None
    clock, waiting, answered = clock_of(session, ticket, plan.pause_on)
    return TicketSla(plan, calendar, clock, waiting, answered)


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
    out and each customer message arrives. The plan's ``priority_change`` rule says how a
    new priority's targets apply (``sla`` rule 5). Timers that ended (met, or stopped by a
    resolution) and counted pauses are appended to the SLA record here, in the
    transaction of the change, so the record is complete without a scan.

    A ticket opened in this session and untouched since has nothing ended and no SLA
    events yet: it is evaluated from memory, without a flush or a read.
    """
    found = evaluate_ticket(session, config, ticket, now)
    if found is None:
        stamp(ticket, None, set())
        return None
    sla, status = found
    sent: set[EventKey] = set()
    if not tickets.untouched_since_open(session, ticket):
        # clock_of above made the ticket's facts known: the record's keys are there.
        sent = set(facts_of(session, ticket).sent)
        sla_record.record_outcomes(session, ticket, sla.clock, sla.plan, status,
                                   config.calendars, sla.waiting, sent, now)
        if sla.answered is not None:
            _record_answered_cycle(session, config, ticket, sla, sent, now)
    stamp(ticket, status, sent)
    return status


def _record_answered_cycle(
    session: Session, config: Config, ticket: Ticket, sla: TicketSla, sent: set[EventKey],
    now: datetime,
) -> None:
    """Append the next-response cycle the latest reply closed, met at that reply (once)."""
    assert sla.answered is not None
    since, answered_at = sla.answered
    if (str(Timer.NEXT_RESPONSE), sla_record.MET, answered_at) in sent:
        return
    cycle = replace(sla.clock, unanswered_since=since, answered_at=answered_at)
    status = evaluate(cycle, sla.plan, config.calendars, answered_at)
    if Timer.NEXT_RESPONSE not in status.timers:
        return
    only = replace(status, timers={Timer.NEXT_RESPONSE: status.timers[Timer.NEXT_RESPONSE]})
    sla_record.record_outcomes(session, ticket, cycle, sla.plan, only, config.calendars, (),
                               sent, now)


def explain_ticket(session: Session, config: Config, ticket: Ticket, now: datetime) -> list[str]:
    """``mailticket sla show``: rules, calendar, pauses and timers, then the SLA record.

    Record rows written since migration 0008 name their recipients; for older rows the
    mails are matched from the outbox (kind ``sla_<kind>_<role>`` queued at the same
    instant), each address once.
    """
    found = ticket_sla(session, config, ticket)
    rows = session.scalars(
        select(SlaEvent).where(SlaEvent.ticket_id == ticket.id)
        .order_by(SlaEvent.deadline, SlaEvent.id)
    ).all()
    mails = session.execute(
        select(OutboxItem.kind, OutboxItem.rcpt_tos, OutboxItem.created_at)
        .where(OutboxItem.ticket_id == ticket.id, OutboxItem.kind.like("sla_%"))
        .order_by(OutboxItem.id)
    ).all()
    record = [_recorded(row, mails) for row in rows]
    if found is None:
        zone = ZoneInfo("UTC")
        lines = [f"No SLA: ticket has no contract with a known plan ({ticket.contract_id or '-'})"]
        lines += [f"  {show_time(r.deadline, zone)}  {r.timer} {r.kind}" for r in record]
        return lines
    return explain(found.clock, found.plan, config.calendars, now, record)


def _recorded(row: SlaEvent, mails: Sequence[Any]) -> RecordedRow:
    """A record row for ``sla show``, with its recipients once each."""
    recipients = tuple(row.recipients or ())
    if not recipients and row.kind in ("warning", "breach") and row.notified:
        prefix = f"sla_{row.kind}_"
        found = [f"{rcpt} ({kind.removeprefix(prefix)})" for kind, rcpts, at in mails
                 if kind.startswith(prefix) and at == row.created_at for rcpt in rcpts]
        recipients = tuple(dict.fromkeys(found))
    return sla_record.recorded_row(row, recipients)
