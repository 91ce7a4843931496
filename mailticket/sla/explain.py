"""``mailticket sla show`` in words: a ticket's plan, calendar, pauses, intervals and events.

Pure like :mod:`mailticket.sla.clock` (which it only reads): the same evaluation the
scheduler acts on, printed in the calendar's time zone so that "why did this
reminder come at 08:35?" is answered by the intervals that were counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from mailticket.model import Calendar, Interval, SlaPlan
from mailticket.sla.clock import TicketClock, active_intervals, evaluate

_MINUTE = timedelta(minutes=1)

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_SHOWN_INTERVALS = 8


def _hours_text(hours: tuple[Interval, ...]) -> str:
    if not hours:
        return "off"
    return ", ".join(f"{iv.start:%H:%M}–{iv.end:%H:%M}".replace("–00:00", "–24:00") for iv in hours)


def _calendar_text(calendar: Calendar) -> str:
    """``Mon–Fri 08:00–20:00; Sat–Sun off; 14 holidays, 1 extra working day``."""
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
    parts.append(
        f"holidays: {len(calendar.holidays)}, "
        f"extra working days: {len(calendar.extra_working_days)}"
    )
    return "; ".join(parts)


def show_time(t: datetime | None, zone: ZoneInfo, missing: str = "—") -> str:
    """``2026-11-20 Fri 19:50 MSK`` (seconds only when there are some), or ``missing``."""
    if t is None:
        return missing
    local = t.astimezone(zone)
    seconds = ":%S" if local.second or local.microsecond else ""
    return local.strftime(f"%Y-%m-%d %a %H:%M{seconds} %Z")


def explain(
    clock: TicketClock,
    plan: SlaPlan,
    calendars: Mapping[str, Calendar],
    now: datetime,
    sent: Mapping[tuple[str, str, datetime], datetime] | None = None,
) -> list[str]:
    """Human-readable lines for ``mailticket sla show``: plan, calendar, pauses, timers, events.

    ``sent`` maps the key of each event already recorded to when it was; given, each fired
    event says whether and when it went out.
    """
    status = evaluate(clock, plan, calendars, now)
    lines = [f"Plan: {plan.name} ({plan.id}); priority {clock.priority}"]
    targets = plan.targets.get(clock.priority)
    if targets is None:
        return [*lines, "No SLA targets for this priority: no timers run."]
    calendar = calendars[targets.calendar]
    zone = ZoneInfo(calendar.timezone)

    def show(t: datetime | None, missing: str = "—") -> str:
        return show_time(t, zone, missing)

    if 0 < plan.warn_ratio < 1:
        lines[0] += f"; warning at {plan.warn_ratio:.0%} of each target"
    lines.append(f"Calendar: {calendar.id} ({calendar.timezone}; {_calendar_text(calendar)})")
    lines.append(f"Now: {show(status.now)}")
    if not clock.pauses:
        lines.append("Pauses: none")
    for start, end in clock.pauses:
        lines.append(f"Paused (waiting on customer): {show(start)} → {show(end, 'still waiting')}")
    for timer, ts in status.timers.items():
        d = ts.deadline
        # The intervals that counted so far: up to now, or up to when the timer ended.
        until = min(now, d.ended_at or now)
        counted = []
        for start, end in active_intervals(calendar, d.started_at, clock.pauses):
            if start >= until:
                break
            counted.append((start, min(end, until)))
        used = sum((end - start for start, end in counted), timedelta()) // _MINUTE
        lines.append(
            f"{timer}: {d.target_minutes} business min from {show(d.started_at)}; "
            f"state {ts.state}; used {used} min"
        )
        lines.append(
            f"  warning at {show(d.warn_at)}; due {show(d.due_at, 'unknown while paused')}"
        )
        if d.met_at is not None:
            lines.append(f"  met at {show(d.met_at)}")
        if d.stopped_at is not None:
            lines.append(f"  stopped (resolved) at {show(d.stopped_at)}")
        for start, end in counted[:_SHOWN_INTERVALS]:
            minutes = (end - start) // _MINUTE
            lines.append(f"  counted {show(start)} → {show(end)} ({minutes} min)")
        if len(counted) > _SHOWN_INTERVALS:
            lines.append(f"  … and {len(counted) - _SHOWN_INTERVALS} more intervals")
    for event in status.events_due:
        line = f"Event due: {event.timer} {event.kind} at {show(event.deadline)}"
        if sent is not None:
            at = sent.get(event.key)
            line += f"; sent {show(at)}" if at is not None else "; not sent yet"
        lines.append(line)
    lines.append(f"Next check: {show(status.next_check_at, 'none (nothing more can fire)')}")
    return lines
