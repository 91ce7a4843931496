"""``mailticket sla show`` in words: a ticket's plan, calendar, pauses, intervals and events.

Pure like :mod:`mailticket.sla.clock` (which it only reads): the same evaluation the
scheduler acts on, printed in the calendar's time zone so that "why did this
reminder come at 08:35?" is answered by the intervals that were counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from mailticket.model import Calendar, Interval, PauseRule, PriorityChangeRule, SlaPlan
from mailticket.sla.business_hours import business_minutes_between
from mailticket.sla.clock import (
    Deadline,
    TicketClock,
    Timer,
    TimerState,
    active_intervals,
    evaluate,
)
from mailticket.sla.record_row import RecordedRow

_MINUTE = timedelta(minutes=1)

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_SHOWN_INTERVALS = 8


def _hours_text(hours: tuple[Interval, ...]) -> str:
    if not hours:
        return "off"
    return ", ".join(f"{iv.start:%H:%M}–{iv.end:%H:%M}".replace("–00:00", "–24:00") for iv in hours)


def _calendar_text(calendar: Calendar) -> str:
    """``Mon–Fri 08:00–20:00; Sat–Sun off; production calendar RU; holidays: 0, …``.

    The national days are not counted: they are looked up per year, without end.
    """
    if calendar.always_open:
        return "24/7"
    groups: list[tuple[int, int, str]] = []
    for day, hours in enumerate(calendar.week):
        text = _hours_text(hours)
        if groups and groups[-1][2] == text:
            groups[-1] = (groups[-1][0], day, text)
        else:
            groups.append((day, day, text))
    parts = [f"{_WEEKDAYS[a]}{'–' + _WEEKDAYS[b] if b > a else ''} {text}" for a, b, text in groups]
    if calendar.country is not None:
        parts.append(f"production calendar {calendar.country}")
    own = (
        f"holidays: {len(calendar.holidays)}, "
        f"extra working days: {len(calendar.extra_working_days)}"
    )
    if calendar.days:
        own += f", dated hours: {len(calendar.days)}"
    parts.append(own)
    return "; ".join(parts)


def show_time(t: datetime | None, zone: ZoneInfo, missing: str = "—") -> str:
    """``2026-11-20 Fri 19:50 MSK`` (seconds only when there are some), or ``missing``."""
    if t is None:
        return missing
    local = t.astimezone(zone)
    seconds = ":%S" if local.second or local.microsecond else ""
    return local.strftime(f"%Y-%m-%d %a %H:%M{seconds} %Z")


_RULE_TEXT = {
    PriorityChangeRule.FROM_START: "a new priority's targets count from the ticket's start",
    PriorityChangeRule.FROM_CHANGE: "a new priority's targets count from the change",
}
_PAUSE_TEXT = {
    PauseRule.QUESTION: "only status waiting set by a reply to the customer pauses",
    PauseRule.STATUS: "any change to status waiting pauses",
}


def _start_text(timer: Timer, d: Deadline, clock: TicketClock) -> str:
    """Why the timer counts from where it does (rules 3 and 5)."""
    if timer is Timer.NEXT_RESPONSE:
        return "the customer's unanswered message"
    if timer is Timer.RESOLUTION and clock.resolution_since == d.started_at:
        return f"the reopening (resolution period {clock.period + 1})"
    if clock.priority_since is not None and d.started_at == clock.priority_since:
        return f"the priority change to {clock.priority}"
    return "the ticket's start"


def _minutes(n: int) -> str:
    hours, minutes = divmod(n, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def explain(
    clock: TicketClock,
    plan: SlaPlan,
    calendars: Mapping[str, Calendar],
    now: datetime,
    record: Sequence[RecordedRow] | None = None,
) -> list[str]:
    """Human-readable lines for ``mailticket sla show``: rules, calendar, timers, the record.

    Times are shown in the time zone of the calendar the priority counts in (a 24x7
    calendar has a display zone too). Each timer says its target, what its start is,
    its due time and how it ended; a met timer shows the due time as it stood when it
    was met (from the record), not one a later pause or change moved. ``record`` lists
    what was written (and mailed, to whom, once each); events due but not in it are
    listed as not yet sent.
    """
    status = evaluate(clock, plan, calendars, now)
    lines = [f"Plan: {plan.name} ({plan.id}); priority {clock.priority}"]
    targets = plan.targets.get(clock.priority)
    if targets is None:
        return [*lines, "No SLA targets for this priority: no timers run."]
    calendar = calendars[targets.calendar]
    zone = ZoneInfo(calendar.timezone)
    rows = list(record or ())
    met_rows = {(r.timer, r.deadline): r for r in rows if r.kind == "met"}
    breaches = {r.timer for r in rows if r.kind == "breach"}

    def show(t: datetime | None, missing: str = "—") -> str:
        return show_time(t, zone, missing)

    if 0 < plan.warn_ratio < 1:
        lines[0] += f"; warning at {plan.warn_ratio:.0%} of each target"
    lines.append(f"Rules: priority change {plan.priority_change} ({_RULE_TEXT[plan.priority_change]}); "
                 f"pause on {plan.pause_on} ({_PAUSE_TEXT[plan.pause_on]})")
    lines.append(f"Calendar: {calendar.id} ({calendar.timezone}; {_calendar_text(calendar)})")
    lines.append(f"Times in {calendar.timezone}. Now: {show(status.now)}")
    if clock.priority_since is not None:
        lines.append(f"Priority changed to {clock.priority} at {show(clock.priority_since)}")
    if not clock.pauses:
        lines.append("Pauses: none")
    for start, end in clock.pauses:
        lines.append(f"Paused: {show(start)} → {show(end, 'still paused')}")
    unit = "24/7" if calendar.always_open else "business"
    for timer, ts in status.timers.items():
        d = ts.deadline
        until = min(now, d.ended_at or now)
        counted = []
        for start, end in active_intervals(calendar, d.started_at, clock.pauses):
            if start >= until:
                break
            counted.append((start, min(end, until)))
        used = sum((end - start for start, end in counted), timedelta()) // _MINUTE
        lines.append(f"{timer}: target {d.target_minutes} {unit} min, counted from "
                     f"{show(d.started_at)} ({_start_text(timer, d, clock)}); state {ts.state}")
        met = met_rows.get((str(timer), d.met_at)) if d.met_at is not None else None
        due = met.due_at if met is not None else d.due_at
        lines.append(f"  due {show(due, 'unknown while paused')}"
                     f"{' (as it stood when met)' if met is not None else ''}; "
                     f"warning at {show(d.warn_at)}")
        if d.met_at is not None:
            overdue = met.overdue_minutes if met is not None else None
            verdict = (f"{_minutes(overdue)} overdue" if overdue else
                       "late" if str(timer) in breaches else "in time")
            lines.append(f"  met at {show(d.met_at)}: {verdict}; used {used} of "
                         f"{d.target_minutes} min")
        elif d.stopped_at is not None:
            lines.append(f"  stopped (resolved before it was met) at {show(d.stopped_at)}")
        elif ts.state is TimerState.BREACHED and d.due_at is not None:
            late = business_minutes_between(calendar, d.due_at, now)
            lines.append(f"  overdue by {_minutes(late)} so far; used {used} min")
        else:
            lines.append(f"  used {used} min")
        for start, end in counted[:_SHOWN_INTERVALS]:
            minutes = (end - start) // _MINUTE
            lines.append(f"  counted {show(start)} → {show(end)} ({minutes} min)")
        if len(counted) > _SHOWN_INTERVALS:
            lines.append(f"  … and {len(counted) - _SHOWN_INTERVALS} more intervals")
    recorded = {r.key for r in rows}
    for event in status.events_due:
        if event.key not in recorded:
            lines.append(f"Due, not recorded yet: {event.timer} {event.kind} at "
                         f"{show(event.deadline)}")
    lines.append(f"Next check: {show(status.next_check_at, 'none (nothing more can fire)')}")
    lines.append("Record:" if rows else "Record: nothing yet")
    lines += [f"  {_record_line(r, show)}" for r in rows]
    return lines


def _record_line(row: RecordedRow, show: Callable[[datetime | None], str]) -> str:
    """One record entry: when, what, the facts frozen with it, and whom it was sent to."""
    what = f"{row.timer} {row.kind}"
    if row.timer == "clock":
        what = row.kind
    elif row.timer == "incident_report":
        what = "incident report"
    facts: list[str] = []
    if row.kind in ("warning", "breach") and row.due_at is not None:
        facts.append(f"due {show(row.due_at)}")
    if row.kind == "met":
        facts.append(f"due {show(row.due_at)}")
        facts.append(f"{_minutes(row.overdue_minutes)} overdue" if row.overdue_minutes
                     else "in time")
    if row.priority:
        facts.append(row.priority)
    if row.reason:
        facts.append(row.reason)
    text = f"{show(row.deadline)}  {what}" + (f" ({'; '.join(facts)})" if facts else "")
    if row.kind in ("warning", "breach"):
        if not row.notified:
            text += "; recorded without a mail (one notice covered it)"
        elif row.recipients:
            text += f"; sent {show(row.created_at)} to {', '.join(row.recipients)}"
    return text
