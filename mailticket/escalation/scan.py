"""The SLA scan: find tickets whose next checkpoint has come, record their events once, mail.

One pass (ARCHITECTURE §2.4), run every minute by the scheduler and once at
start-up, so a daemon that was down catches up:

1. read the ids of tickets with ``next_sla_check_at <= now`` (one range scan
   of the index), then take them in batches, each batch re-checked and locked
   with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so that several instances
   share the work instead of queueing behind each other;
2. evaluate each one (:mod:`mailticket.tickets.sla_stamp`);
3. append every due event to the SLA record (:mod:`mailticket.tickets.sla_record`)
   inside a savepoint; the unique key ``(ticket, timer, kind, deadline)`` turns
   a second insert (another instance, a re-run after a crash) into an
   ``IntegrityError`` and the event is skipped: one mail per event, never two,
   never none;
4. queue the mails of each new event (:mod:`mailticket.escalation.ladder`);
5. stamp the next checkpoint.

Nobody is woken outside working time for tickets on a business-hours calendar:
an event the scan finds outside the calendar's hours (after downtime, say) that
is older than :data:`GRACE` waits for the next working instant. A threshold
that falls exactly at closing time is still sent by an on-time scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailticket.escalation import ladder as escalation
from mailticket.log import get as get_logger
from mailticket.model import Calendar, Priority
from mailticket.outbound.notify import Notifier
from mailticket.sla.business_hours import is_working_time, next_working_time
from mailticket.sla.clock import SlaEventDue
from mailticket.sla.record_row import RecordFacts
from mailticket.store.db import transaction
from mailticket.store.schema import Ticket
from mailticket.tickets import sla_record
from mailticket.tickets import sla_stamp as sla_service

log = get_logger("sla")

# How late an on-time scan may find a business-hours event and still send it outside
# the calendar's hours (a deadline at 20:00 found at 20:00:30).
GRACE = timedelta(minutes=15)


@dataclass
class ScanResult:
    """What one scan did, for logs, tests and the benchmark."""

    tickets: int = 0
    events: int = 0
    mails: int = 0
    duplicates: int = 0
    deferred: int = 0
    failed: int = 0


def may_send(ticket: Ticket, calendar: Calendar | None, event: SlaEventDue, now: datetime) -> bool:
    """Whether an event may be mailed at ``now`` (the "nobody is woken" rule)."""
    if calendar is None or calendar.always_open or ticket.priority == Priority.CRITICAL:
        return True
    return now - event.deadline <= GRACE or is_working_time(calendar, now)


def record(
    session: Session, ticket_id: int, event: SlaEventDue, now: datetime,
    entry: RecordFacts | None = None,
) -> bool:
    """Append the event to the SLA record; False if someone recorded it first."""
    entry = entry or RecordFacts(timer=str(event.timer), kind=str(event.kind),
                                      deadline=event.deadline, due_at=event.due_at)
    return sla_record.append(session, ticket_id, entry, now)


def retroactive_reason(ticket: Ticket, event: SlaEventDue, since: datetime | None) -> str:
    """Why a breach is reported late: the priority change that put its deadline in the past."""
    when = since.isoformat(timespec="minutes") if since else "?"
    return (f"priority changed to {ticket.priority} at {when}; under its targets the "
            f"{event.timer} deadline passed at {event.deadline.isoformat(timespec='minutes')}")


def check_ticket(
    session: Session, notifier: Notifier, ticket: Ticket, now: datetime, result: ScanResult
) -> None:
    """Evaluate one due ticket, record and send its new events, stamp its next checkpoint.

    Breaches that a retroactive priority change put in the past are all recorded,
    but only the first is mailed, saying why: one notice, not a burst.
    """
    config = notifier.config
    found = sla_service.evaluate_ticket(session, config, ticket, now)
    if found is None:
        sla_service.stamp(ticket, None, set())
        return
    sla, status = found
    sent = sla_service.sent_keys(session, ticket.id)
    waiting: list[SlaEventDue] = []
    retro_mailed = False
    for event in status.events_due:
        if event.key in sent:
            continue
        if not may_send(ticket, sla.calendar, event, now):
            waiting.append(event)
            continue
        reason = retroactive_reason(ticket, event, sla.clock.priority_since) \
            if event.retroactive else ""
        notify_now = not (event.retroactive and retro_mailed)
        timer = status.timers.get(event.timer)
        people = escalation.recipients(notifier, ticket, event.kind, now) if notify_now else []
        entry = sla_record.threshold_entry(
            sla.clock, sla.plan, event, timer.deadline if timer else None,
            reason=reason, notified=notify_now,
            recipients=tuple(f"{p.address} ({p.role})" for p in people))
        if not record(session, ticket.id, event, now, entry):
            result.duplicates += 1
            continue
        sent.add(event.key)
        result.events += 1
        if notify_now:
            retro_mailed = retro_mailed or event.retroactive
            result.mails += len(escalation.send(session, notifier, ticket, event, now,
                                                changed_at=sla.clock.priority_since,
                                                people=people))
        log.info("sla event", extra={"ticket": ticket.id, "timer": str(event.timer),
                                     "kind": str(event.kind), "deadline": event.deadline,
                                     "retroactive": event.retroactive, "mailed": notify_now})
    sla_service.stamp(ticket, status, sent)
    if waiting and sla.calendar is not None:
        result.deferred += len(waiting)
        resume = next_working_time(sla.calendar, now)
        ticket.next_sla_check_at = min(resume, status.next_check_at or resume)


def _due_ids(session: Session, now: datetime) -> list[int]:
    """Ids of every ticket due at ``now``: one range scan of the ``next_sla_check_at`` index."""
    query = select(Ticket.id).where(Ticket.next_sla_check_at <= now)
    return list(session.scalars(query.order_by(Ticket.next_sla_check_at)))


def _lock_batch(session: Session, ids: list[int], now: datetime) -> list[Ticket]:
    """The batch's tickets that are still due, locked; on PostgreSQL skipping any in use."""
    query = select(Ticket).where(Ticket.id.in_(ids), Ticket.next_sla_check_at <= now)
    if session.get_bind().dialect.name != "sqlite":
        # Rows another instance is working on are left to it; the unique key covers races.
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query.order_by(Ticket.id)))


def scan(
    factory: sessionmaker[Session], notifier: Notifier, now: datetime, *, batch_size: int = 50
) -> ScanResult:
    """One pass over every ticket due at ``now``; each batch commits on its own.

    Batches are small because queueing one mail costs about 10 ms: on SQLite a batch
    holds the write lock, and 50 tickets keep the workers waiting a second or two at most.
    """
    result = ScanResult()
    with factory() as session:
        due = _due_ids(session, now)
    for start in range(0, len(due), batch_size):
        with transaction(factory) as session:
            for ticket in _lock_batch(session, due[start : start + batch_size], now):
                result.tickets += 1
                try:
                    with session.begin_nested():
                        check_ticket(session, notifier, ticket, now, result)
                except Exception:
                    # One broken ticket (a bad template, say) must not stop every other
                    # reminder; it stays due and is tried again on the next scan.
                    result.failed += 1
                    log.exception("sla check failed", extra={"ticket": ticket.id})
    if result.events or result.failed or result.deferred:
        log.info("sla scan", extra={"tickets": result.tickets, "events": result.events,
                                    "mails": result.mails, "deferred": result.deferred,
                                    "duplicates": result.duplicates, "failed": result.failed})
    return result
