"""The SLA record: every warning, breach, met, stop, pause and resume, written once.

A provider proves its service with this record, so it is append-only (the
database refuses UPDATE and DELETE on ``sla_events``) and complete: the scan
writes warnings and breaches as their instants pass, and :func:`record_outcomes`
writes how each timer ended (met, or stopped by a resolution) and each pause,
right after the change that caused it, in the same transaction. Every row
freezes what was true then — priority, period, target, due time, minutes used,
minutes overdue, calendar and the plan's priority-change rule — so the
monthly report and the incident notice read the past instead of recomputing
it from today's ticket (a priority lowered later cannot erase a breach).

Each insert runs in a savepoint: the unique key ``(ticket, timer, kind,
deadline)`` turns a second writer (another instance, a re-run after a crash)
into an ``IntegrityError`` that is simply skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailticket.model import Calendar, SlaPlan
from mailticket.sla.business_hours import business_minutes_between
from mailticket.sla.clock import Deadline, Pause, SlaEventDue, SlaStatus, TicketClock, Timer
from mailticket.sla.record_row import EventKey, RecordedRow, RecordFacts
from mailticket.store.schema import SlaEvent, Ticket
from mailticket.tickets import sla_facts

MET, STOPPED, PAUSE, RESUME = "met", "stopped", "pause", "resume"
# The pseudo-timer of pause and resume entries: a pause stops every timer.
CLOCK = "clock"


def append(session: Session, ticket_id: int, entry: RecordFacts, now: datetime) -> bool:
    """Insert one entry unless it is already recorded; True if this call wrote it."""
    try:
        with session.begin_nested():
            session.add(SlaEvent(
                ticket_id=ticket_id, timer=entry.timer, kind=entry.kind,
                deadline=entry.deadline, created_at=now, priority=entry.priority,
                period=entry.period, due_at=entry.due_at,
                target_minutes=entry.target_minutes, used_minutes=entry.used_minutes,
                overdue_minutes=entry.overdue_minutes, calendar=entry.calendar,
                rule=entry.rule, reason=entry.reason, notified=entry.notified,
                recipients=list(entry.recipients) or None,
            ))
    except IntegrityError:
        return False
    ticket = session.get(Ticket, ticket_id)
    if ticket is not None:
        sla_facts.note_sent(ticket, (entry.timer, entry.kind, entry.deadline))
    return True


def recorded_row(event: SlaEvent, recipients: tuple[str, ...] | None = None) -> RecordedRow:
    """A stored ``sla_events`` row as the value the report and ``sla show`` read.

    ``recipients`` replaces the stored list (``sla show`` fills it for rows
    written before the record kept recipients).
    """
    return RecordedRow(
        id=event.id, ticket_id=event.ticket_id, timer=event.timer, kind=event.kind,
        deadline=event.deadline, created_at=event.created_at, priority=event.priority,
        period=event.period, due_at=event.due_at, target_minutes=event.target_minutes,
        used_minutes=event.used_minutes, overdue_minutes=event.overdue_minutes,
        calendar=event.calendar, rule=event.rule, reason=event.reason or "",
        notified=event.notified,
        recipients=tuple(event.recipients or ()) if recipients is None else recipients,
    )


def threshold_entry(
    clock: TicketClock, plan: SlaPlan, event: SlaEventDue, deadline: Deadline | None,
    *, reason: str = "", notified: bool = True, recipients: tuple[str, ...] = (),
) -> RecordFacts:
    """The record entry of a warning or breach the scan found due."""
    return RecordFacts(
        timer=str(event.timer), kind=str(event.kind), deadline=event.deadline,
        priority=str(clock.priority), period=_period(clock, event.timer),
        due_at=event.due_at, target_minutes=deadline.target_minutes if deadline else None,
        calendar=deadline.calendar if deadline else None, rule=str(plan.priority_change),
        reason=reason, notified=notified, recipients=recipients,
    )


def outcome_entries(
    clock: TicketClock, plan: SlaPlan, status: SlaStatus, calendars: Mapping[str, Calendar]
) -> list[RecordFacts]:
    """A met or stopped entry for every timer of ``status`` that has ended."""
    entries: list[RecordFacts] = []
    for timer, timer_status in status.timers.items():
        d = timer_status.deadline
        if d.met_at is not None:
            kind, instant = MET, d.met_at
        elif d.stopped_at is not None:
            kind, instant = STOPPED, d.stopped_at
        else:
            continue
        overdue = None
        if kind == MET and d.due_at is not None and d.met_at is not None and d.met_at > d.due_at:
            calendar = calendars.get(d.calendar)
            overdue = (business_minutes_between(calendar, d.due_at, d.met_at)
                       if calendar is not None else None)
        entries.append(RecordFacts(
            timer=str(timer), kind=kind, deadline=instant, priority=str(clock.priority),
            period=_period(clock, timer), due_at=d.due_at, target_minutes=d.target_minutes,
            used_minutes=d.used_minutes, overdue_minutes=overdue if kind == MET else None,
            calendar=d.calendar, rule=str(plan.priority_change),
        ))
    return entries


def pause_entries(clock: TicketClock, waiting: Sequence[Pause]) -> list[RecordFacts]:
    """A pause entry for every start of a counted ``waiting`` period, a resume for every end.

    Only the pauses the plan counts are passed in (its ``pause_on`` rule); the
    periods a ticket spent resolved are pauses too, but the record has their
    resolution entries and they need no second row.
    """
    entries: list[RecordFacts] = []
    for start, end in waiting:
        entries.append(RecordFacts(timer=CLOCK, kind=PAUSE, deadline=start,
                             priority=str(clock.priority)))
        if end is not None:
            entries.append(RecordFacts(timer=CLOCK, kind=RESUME, deadline=end,
                                 priority=str(clock.priority)))
    return entries


def record_outcomes(
    session: Session, ticket: Ticket, clock: TicketClock, plan: SlaPlan, status: SlaStatus,
    calendars: Mapping[str, Calendar], waiting: Sequence[Pause], known: set[EventKey],
    now: datetime,
) -> int:
    """Append the ended timers and pauses not yet in ``known``; returns how many were new.

    ``known`` is updated with what this call wrote, so a caller may keep using it.
    """
    written = 0
    for entry in [*outcome_entries(clock, plan, status, calendars), *pause_entries(clock, waiting)]:
        if entry.key in known:
            continue
        if append(session, ticket.id, entry, now):
            written += 1
        known.add(entry.key)
    return written


def _period(clock: TicketClock, timer: Timer | str) -> int:
    """Resolution counts in periods (a reopening starts a new one); other timers in one."""
    return clock.period if timer == Timer.RESOLUTION else 0
