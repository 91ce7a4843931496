"""Which of a contract's tickets were open at an instant, and which of their timers ran then.

The record has no row for a timer that is still running, so the month's close
asks the tickets' history instead: the status changes say which tickets were
open at the month's end, and each one's SLA clock is rebuilt from what had
happened by then (status and priority changes, messages, the first answer) to
find the timers that had started and were not yet met, breached or stopped.
The backlog at an instant is the number of tickets open then.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.model import ArticleKind, Priority, SlaPlan, Status
from mailticket.reports import sla_month
from mailticket.reports.record import outcome_rows
from mailticket.reports.sla_month import RunningFact
from mailticket.sla.clock import TicketClock, deadlines
from mailticket.sla.record_row import RecordedRow
from mailticket.store.schema import Article, AuditEvent, SlaEvent, Ticket
from mailticket.tickets import sla_facts, sla_stamp
from mailticket.tickets.sla_record import recorded_row

_DONE = (Status.RESOLVED.value, Status.CLOSED.value)
_CHUNK = 500


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    return (ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK))


def open_at(session: Session, contract_id: str, instant: datetime) -> list[Ticket]:
    """The contract's tickets open at ``instant``, from their status history.

    A ticket that was resolved before the instant and is resolved or closed now
    cannot have been open then (a reopening clears ``resolved_at``), so only the
    others are read with their history. A ticket without any status history (a
    row from before the audit log, or imported) is open until ``resolved_at``.
    """
    done_before = (Ticket.resolved_at < instant) & Ticket.status.in_(_DONE)
    tickets = list(session.scalars(
        select(Ticket).where(Ticket.contract_id == contract_id, Ticket.created_at < instant,
                             ~done_before)
        .order_by(Ticket.id)))
    last: dict[int, str] = {}
    has_history: set[int] = set()
    for chunk in _chunks([t.id for t in tickets]):
        for ticket_id, at, detail in session.execute(
            select(AuditEvent.ticket_id, AuditEvent.at, AuditEvent.detail)
            .where(AuditEvent.ticket_id.in_(chunk), AuditEvent.action == "status")
            .order_by(AuditEvent.at, AuditEvent.id)
        ):
            has_history.add(ticket_id)
            if at < instant:
                last[ticket_id] = str(detail.get("to"))
    found = []
    for ticket in tickets:
        if ticket.id in has_history:
            is_open = last.get(ticket.id, Status.NEW.value) not in _DONE
        else:
            is_open = ticket.resolved_at is None or ticket.resolved_at >= instant
        if is_open:
            found.append(ticket)
    return found


def _clock_at(
    ticket: Ticket, plan: SlaPlan, instant: datetime, changes: Sequence[tuple[datetime, str, dict[str, Any]]],
    articles: Sequence[tuple[str, datetime]],
) -> TicketClock:
    """The ticket's SLA clock as it stood at ``instant``: only what had happened by then."""
    priority, since = ticket.priority, None
    status: list[sla_facts.StatusChange] = []
    later_priority: str | None = None
    for at, action, detail in changes:
        if action == "priority":
            if at < instant:
                priority, since = str(detail.get("to")), at
            elif later_priority is None:
                later_priority = str(detail.get("from"))
        elif at < instant:
            visible = detail.get("visible")
            status.append(sla_facts.StatusChange(at, str(detail.get("from", "")),
                                                 str(detail.get("to", "")),
                                                 visible if isinstance(visible, bool) else None))
    if since is None and later_priority is not None:
        priority = later_priority
    facts = sla_stamp.clock_facts(status, plan.pause_on)
    first = ticket.first_response_at
    return TicketClock(
        created_at=ticket.created_at,
        priority=Priority(priority),
        first_response_at=first if first is not None and first < instant else None,
        pauses=facts.waiting + facts.resolved,
        unanswered_since=sla_stamp.unanswered_since([a for a in articles if a[1] < instant]),
        priority_since=since,
        resolution_since=facts.resolution_since,
        period=facts.period,
    )


def running_at(
    session: Session, config: Config, plan: SlaPlan, tickets: Sequence[Ticket],
    instant: datetime, cutoff: int | None,
) -> list[RunningFact]:
    """Timer instances of open ``tickets`` that had started by ``instant`` and were undecided."""
    ids = [t.id for t in tickets]
    changes: dict[int, list[tuple[datetime, str, dict[str, Any]]]] = defaultdict(list)
    articles: dict[int, list[tuple[str, datetime]]] = defaultdict(list)
    outcomes: dict[sla_month.InstanceKey, list[RecordedRow]] = defaultdict(list)
    for chunk in _chunks(ids):
        for ticket_id, at, action, detail in session.execute(
            select(AuditEvent.ticket_id, AuditEvent.at, AuditEvent.action, AuditEvent.detail)
            .where(AuditEvent.ticket_id.in_(chunk), AuditEvent.action.in_(["status", "priority"]))
            .order_by(AuditEvent.at, AuditEvent.id)
        ):
            changes[ticket_id].append((at, action, detail))
        for ticket_id, kind, at in session.execute(
            select(Article.ticket_id, Article.kind, Article.created_at)
            .where(Article.ticket_id.in_(chunk),
                   Article.kind.in_([ArticleKind.REPLY.value, ArticleKind.CUSTOMER.value]))
            .order_by(Article.id)
        ):
            articles[ticket_id].append((kind, at))
        query = outcome_rows().where(SlaEvent.ticket_id.in_(chunk))
        if cutoff is not None:
            query = query.where(SlaEvent.id <= cutoff)
        for event in session.scalars(query):
            row = recorded_row(event)
            outcomes[sla_month.instance_key(row)].append(row)
    # Decided before the instant: breached (due passed and recorded), met or stopped by then.
    decided = {key for key, rows in outcomes.items()
               if (first := sla_month.decisive(rows)) is not None and first.instant < instant}
    found: list[RunningFact] = []
    for ticket in tickets:
        clock = _clock_at(ticket, plan, instant, changes[ticket.id], articles[ticket.id])
        for timer, d in deadlines(clock, plan, config.calendars).items():
            if d.ended_at is not None or d.started_at >= instant:
                continue
            period = clock.period if timer == sla_month.RESOLUTION else 0
            due = d.due_at if timer == sla_month.NEXT_RESPONSE else None
            if (ticket.id, str(timer), period, due) in decided:
                continue
            found.append(RunningFact(ticket.id, str(timer), period, str(clock.priority),
                                     d.due_at, d.target_minutes, d.calendar))
    return found
