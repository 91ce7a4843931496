"""The facts of an incident notice, read from what was recorded, never recomputed.

The notice is a customer document: it says what happened, in the customer's
own words, and how each SLA timer ended as the SLA record froze it at that
moment (the priority then, the target, the due time as it stood, the actual
instant and the minutes overdue). A priority lowered later cannot turn a
breach into "met", because nothing here evaluates today's ticket.

What engineers add comes from the audit log, one action per command:
``cause``, ``actions``, ``impact`` and ``prevention`` carry ``{"text": …}``;
``started`` and ``restored`` carry ``{"at": ISO instant, "source": …}``, where
the source of ``restored`` is ``engineer`` (``#restored``) or ``alert`` (a
monitoring recovery). The latest ``started``/``restored`` row wins, so an
engineer can correct a time by writing the command again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.model import ArticleKind, Priority
from mailticket.outbound import notify
from mailticket.outbound.notify import Notifier
from mailticket.sla.business_hours import business_minutes_between
from mailticket.sla.clock import EventKind, Timer
from mailticket.store.schema import Article, AuditEvent, SlaEvent, Ticket
from mailticket.tickets import sla_record
from mailticket.tickets import sla_stamp as sla_service

# Audit actions of the commands that feed the notice.
CAUSE, ACTIONS, IMPACT, PREVENTION = "cause", "actions", "impact", "prevention"
STARTED, RESTORED = "started", "restored"
# Who said the service was restored, and what detected the incident.
BY_ENGINEER, BY_ALERT, BY_MAIL = "engineer", "alert", "mail"
# How long "what happened" may be: enough for the gist, short enough to read first.
SUMMARY_LENGTH = 300
_TIMER_ORDER = {str(Timer.FIRST_RESPONSE): 0, str(Timer.NEXT_RESPONSE): 1,
                str(Timer.RESOLUTION): 2}
_ENDS = (sla_record.MET, sla_record.STOPPED)


@dataclass(frozen=True)
class TimerOutcome:
    """How one SLA timer ended, as the record says.

    ``ended_at`` is when it was met (``met``) or stopped by the resolution; it is
    None for a breach whose timer never ended. A timer breached under one
    priority and then given a new deadline by a priority change gives two
    outcomes: the breach as it stood, and the end under the new target.
    """

    timer: str
    priority: str | None
    period: int
    target_minutes: int | None
    due_at: datetime | None
    ended_at: datetime | None
    met: bool
    breached: bool
    overdue_minutes: int | None


@dataclass(frozen=True)
class IncidentFacts:
    """Everything the ``incident_report`` template shows beside the ticket and its timeline."""

    breached: bool
    was_critical: bool
    summary: str
    impact: str
    cause: str
    actions: str
    prevention: str
    started_at: datetime | None
    detected_at: datetime
    detected_by: str
    first_response_at: datetime | None
    restored_at: datetime | None
    restored_by: str
    resolved_at: datetime | None
    outage_minutes: int | None
    timers: tuple[TimerOutcome, ...]


def ticket_timezone(notifier: Notifier, ticket: Ticket) -> str:
    """The time zone of the calendar the ticket's SLA counts in, for every time shown or read.

    The calendar of the ticket's priority in its plan (a 24/7 calendar has a zone
    too); without one, the zone the other customer mails use.
    """
    plan = sla_service.plan_of(notifier.config, ticket)
    targets = plan.targets.get(Priority(ticket.priority)) if plan is not None else None
    calendar = notifier.config.calendars.get(targets.calendar) if targets is not None else None
    if calendar is not None:
        return calendar.timezone
    return str(notify.ticket_context(notifier, ticket)["timezone"])


def shorten(text: str, limit: int = SUMMARY_LENGTH) -> str:
    """``text`` on one line, cut on a whole word to at most ``limit`` characters with "…"."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    if flat[limit - 1] != " " and " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:—-.") + "…"


def record_rows(session: Session, ticket: Ticket) -> list[SlaEvent]:
    """The ticket's SLA record without the notice markers, oldest first."""
    return list(session.scalars(
        select(SlaEvent)
        .where(SlaEvent.ticket_id == ticket.id, SlaEvent.timer != sla_service.INCIDENT_REPORT)
        .order_by(SlaEvent.deadline, SlaEvent.id)
    ))


def was_critical(rows: Sequence[SlaEvent]) -> bool:
    """Whether the record shows trouble while the ticket was critical.

    A warning or breach written while critical, or a timer that ended late while
    critical (the scan may not have written that breach yet). This is what makes
    a ticket that breached as critical and was lowered later still get its notice.
    """
    for row in rows:
        if row.priority != Priority.CRITICAL:
            continue
        if row.kind in (EventKind.WARNING, EventKind.BREACH) or _late(row):
            return True
    return False


def needs_notice(session: Session, ticket: Ticket) -> bool:
    """A critical ticket, or one whose record shows trouble while it was critical.

    Runs after every mail that leaves a ticket resolved, so only the record rows
    written while critical are read.
    """
    if ticket.priority == Priority.CRITICAL:
        return True
    return was_critical(list(session.scalars(
        select(SlaEvent).where(SlaEvent.ticket_id == ticket.id,
                               SlaEvent.priority == Priority.CRITICAL.value))))


def outcomes(config: Config, rows: Sequence[SlaEvent]) -> tuple[TimerOutcome, ...]:
    """Each timer's end (met or stopped) and each breach no end accounts for."""
    ends = [row for row in rows if row.kind in _ENDS]
    found: list[TimerOutcome] = []
    for end in ends:
        late = _late(end)
        overdue = None
        if late:
            overdue = (end.overdue_minutes if end.kind == sla_record.MET
                       and end.overdue_minutes is not None
                       else _overdue(config, end.calendar, end.due_at, end.deadline))
        found.append(TimerOutcome(
            timer=end.timer, priority=end.priority, period=end.period,
            target_minutes=end.target_minutes, due_at=end.due_at, ended_at=end.deadline,
            met=end.kind == sla_record.MET, breached=late, overdue_minutes=overdue))
    ended = {(end.timer, end.period, end.due_at) for end in ends}
    for breach in (row for row in rows if row.kind == EventKind.BREACH):
        due = breach.due_at or breach.deadline
        if (breach.timer, breach.period, due) in ended:
            continue
        # The deadline moved after this breach (a priority change): the timer ended
        # later, under another target; the breach stands as it was.
        later = next((e for e in ends if (e.timer, e.period) == (breach.timer, breach.period)
                      and e.deadline >= due), None)
        found.append(TimerOutcome(
            timer=breach.timer, priority=breach.priority, period=breach.period,
            target_minutes=breach.target_minutes, due_at=due,
            ended_at=later.deadline if later is not None else None,
            met=later is not None and later.kind == sla_record.MET, breached=True,
            overdue_minutes=(_overdue(config, breach.calendar, due, later.deadline)
                             if later is not None else None)))
    found.sort(key=lambda o: (_TIMER_ORDER.get(o.timer, 9), o.due_at or o.ended_at or datetime.max))
    return tuple(found)


def _late(row: SlaEvent) -> bool:
    """A met or stopped entry after its due instant (a reply exactly at it is in time)."""
    return row.kind in _ENDS and row.due_at is not None and row.deadline > row.due_at


def _overdue(config: Config, calendar_id: str | None, due: datetime | None,
             end: datetime) -> int | None:
    """Business minutes from a recorded due instant to a recorded end, in the recorded calendar."""
    calendar = config.calendars.get(calendar_id or "")
    if calendar is None or due is None:
        return None
    return business_minutes_between(calendar, due, end)


def recorded_text(session: Session, ticket: Ticket, action: str) -> str:
    """Everything engineers wrote with one text command (``#cause`` …), one entry per line."""
    texts = session.scalars(
        select(AuditEvent.detail)
        .where(AuditEvent.ticket_id == ticket.id, AuditEvent.action == action)
        .order_by(AuditEvent.id)
    )
    return "\n".join(str(d.get("text", "")).strip() for d in texts if d.get("text"))


def recorded_instant(session: Session, ticket: Ticket, action: str) -> tuple[datetime, str] | None:
    """The latest ``started`` or ``restored`` instant and its source, or None."""
    detail = session.scalars(
        select(AuditEvent.detail)
        .where(AuditEvent.ticket_id == ticket.id, AuditEvent.action == action)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    ).first()
    if not detail or not detail.get("at"):
        return None
    return datetime.fromisoformat(str(detail["at"])), str(detail.get("source", BY_ENGINEER))


def instant_detail(at: datetime, source: str) -> dict[str, object]:
    """The audit detail of a ``started`` or ``restored`` row (see the module docstring)."""
    return {"at": at.astimezone(UTC).isoformat(), "source": source}


def summary(session: Session, ticket: Ticket) -> str:
    """What happened in the customer's words: their first message, else the subject."""
    text = session.scalars(
        select(Article.text)
        .where(Article.ticket_id == ticket.id, Article.kind == ArticleKind.CUSTOMER.value)
        .order_by(Article.id)
        .limit(1)
    ).first()
    return shorten(text or "") or shorten(ticket.subject)


def facts(session: Session, notifier: Notifier, ticket: Ticket) -> IncidentFacts:
    """Read the notice's facts for ``ticket`` as it stands (resolved, normally)."""
    rows = record_rows(session, ticket)
    timers = outcomes(notifier.config, rows)
    started = recorded_instant(session, ticket, STARTED)
    restored = recorded_instant(session, ticket, RESTORED)
    start = started[0] if started is not None else ticket.created_at
    outage = None
    if restored is not None and restored[0] >= start:
        outage = int((restored[0] - start).total_seconds() // 60)
    return IncidentFacts(
        breached=any(t.breached for t in timers),
        was_critical=was_critical(rows),
        summary=summary(session, ticket),
        impact=recorded_text(session, ticket, IMPACT),
        cause=recorded_text(session, ticket, CAUSE),
        actions=recorded_text(session, ticket, ACTIONS),
        prevention=recorded_text(session, ticket, PREVENTION),
        started_at=started[0] if started is not None else None,
        detected_at=ticket.created_at,
        detected_by=BY_ALERT if ticket.alert_key else BY_MAIL,
        first_response_at=ticket.first_response_at,
        restored_at=restored[0] if restored is not None else None,
        restored_by=restored[1] if restored is not None else "",
        resolved_at=ticket.resolved_at,
        outage_minutes=outage,
        timers=timers,
    )
