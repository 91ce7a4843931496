"""Pure SLA evaluation: a ticket's clock, its plan and calendars, and ``now`` → deadlines.

Nothing here reads the database or the system clock, so the same answer comes out in the
scheduler, in ``mailticket sla show`` (worded by :mod:`mailticket.sla.explain`) and in the
incident report. The rules (issue 6 §3):

1. **Timers.** ``first_response`` and ``resolution`` run from ``created_at``.
   ``next_response`` exists only if the plan's targets set ``next_response_minutes``, the
   ticket has had its first response, and a customer message is unanswered: it runs from
   ``unanswered_since`` (the earliest customer message after the latest visible reply).
   Every timer counts business minutes of the calendar named in the priority's targets.
2. **Met.** ``first_response`` is met at ``first_response_at``: the first engineer reply the
   customer can see (acknowledgements and auto-replies are never passed in as one).
   ``resolution`` is met at ``resolved_at``. ``next_response`` is met only in a clock that
   describes a past cycle (``answered_at`` set): in the live clock the caller clears
   ``unanswered_since`` when the reply goes out and the timer is gone.
3. **Stop and reopen.** ``resolved_at`` (resolved or closed) stops every timer. A timer
   stopped before it was met is ``stopped``, and nothing fires for it after that instant.
   A reopened ticket has ``resolved_at`` None again and ``resolution_since`` set to the
   reopening: the resolution timer starts a new period there with its full target, and
   the caller passes every resolved period as a pause, so time spent resolved never
   counts for any timer.
4. **Pause.** Each ``(start, end)`` in ``pauses`` is a period in status ``waiting``; the end
   is the customer's next message, or None while still waiting. Business time inside a
   pause does not count for any timer, so deadlines move later by exactly the paused
   business time. While a pause is open, a threshold not yet reached has no instant (None).
5. **Priority change.** The clock carries the current priority and ``priority_since``, the
   instant of the latest change; the plan's ``priority_change`` rule applies the new
   targets either from the ticket's start (``from_start``: raising a ticket to
   ``critical`` late can put it in breach at once) or from the change onward
   (``from_change``: a timer not yet met restarts at the change with the new target).
   Under ``from_start`` a threshold that the change put in the past is *retroactive*:
   its warning is never sent (warning about the past helps nobody) and its breach is
   listed once, flagged, so the notice can say why. What was recorded before the change
   stays recorded; this module only ever adds.
6. **Thresholds.** A warning at ``plan.warn_ratio`` of each timer's target (no warning
   unless ``0 < warn_ratio < 1``) and a breach at 100 %. A threshold *fires* at its instant
   ``x`` if ``x <= now`` and the timer was still running at ``x`` (met or stopped strictly
   later). A reply at exactly the due instant is in time.
7. **Events.** Every fired threshold is listed in ``SlaStatus.events_due`` each time, keyed
   by ``(timer, kind, deadline)`` where ``deadline`` is the threshold's own instant; the
   scheduler's unique constraint turns "listed again" into "sent once". A pause that starts
   after a threshold leaves its instant unchanged, so no reminder is sent twice; a priority
   change moves the instants, so the new deadlines get their own reminders. After
   downtime a warning and its breach are listed together; the scheduler may skip a
   warning whose breach has fired too.
8. **Next check.** ``next_check_at`` is the earliest threshold instant after ``now`` that can
   still fire, or None. It changes only when the clock does (reply, status, priority), so
   the caller stores it in an indexed column and recomputes it after each such change.

A priority missing from the plan's targets means no SLA timers for that priority.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from mailticket.model import Calendar, Priority, PriorityChangeRule, SlaPlan
from mailticket.sla.business_hours import Span, working_intervals

# A period in status ``waiting``: (start, end), end None while still waiting.
Pause = tuple[datetime, datetime | None]

_ZERO = timedelta(0)
_MINUTE = timedelta(minutes=1)


class Timer(enum.StrEnum):
    """The SLA clocks a ticket can run."""

    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"
    NEXT_RESPONSE = "next_response"


class TimerState(enum.StrEnum):
    """Where one timer stands at ``now`` (``breached`` stays once the due instant fired)."""

    OK = "ok"
    WARNING = "warning"
    BREACHED = "breached"
    MET = "met"
    PAUSED = "paused"
    STOPPED = "stopped"


class EventKind(enum.StrEnum):
    """The two thresholds of a timer."""

    WARNING = "warning"
    BREACH = "breach"


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class TicketClock:
    """The SLA-relevant facts of one ticket; every datetime aware (stored as UTC)."""

    created_at: datetime
    priority: Priority
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    pauses: tuple[Pause, ...] = ()
    # The earliest customer message after the latest visible engineer reply, or None.
    unanswered_since: datetime | None = None
    # The latest priority change (rule 5), or None if the priority never changed.
    priority_since: datetime | None = None
    # The latest reopening: the current resolution period's start (rule 3), or None.
    resolution_since: datetime | None = None
    # How many times the ticket was reopened: the current resolution period's number.
    period: int = 0
    # Only when describing a past next-response cycle: the reply that answered
    # ``unanswered_since`` (so the timer is met there, rule 2).
    answered_at: datetime | None = None

    def __post_init__(self) -> None:
        # Normalise to UTC once so that comparisons and display downstream are simple.
        for name in ("created_at", "first_response_at", "resolved_at", "unanswered_since",
                     "priority_since", "resolution_since", "answered_at"):
            if (value := getattr(self, name)) is not None:
                object.__setattr__(self, name, _aware(value, name))
        pauses = tuple(
            (_aware(start, "pause start"), None if end is None else _aware(end, "pause end"))
            for start, end in self.pauses
        )
        object.__setattr__(self, "pauses", pauses)


@dataclass(frozen=True)
class Deadline:
    """One timer's thresholds; independent of ``now``.

    ``warn_at``/``due_at`` are None when there is no warning, or when an open pause began
    before the threshold was reached. ``used_minutes`` is the business time the timer
    consumed until it was met or stopped (None while it runs).
    """

    timer: Timer
    calendar: str
    started_at: datetime
    target_minutes: int
    warn_at: datetime | None
    due_at: datetime | None
    met_at: datetime | None = None
    stopped_at: datetime | None = None
    used_minutes: int | None = None

    @property
    def ended_at(self) -> datetime | None:
        """When the timer stopped running (met or stopped), if it did."""
        return self.met_at or self.stopped_at


@dataclass(frozen=True)
class SlaEventDue:
    """A threshold that has fired; ``(timer, kind, deadline)`` is its stable unique key.

    ``deadline`` is the threshold's own instant (``warn_at`` for a warning, ``due_at`` for
    a breach); ``due_at`` is the timer's due instant for the message text.
    ``retroactive`` marks a breach that a ``from_start`` priority change put in the past
    (rule 5); it is not part of the key.
    """

    timer: Timer
    kind: EventKind
    deadline: datetime
    due_at: datetime | None
    retroactive: bool = False

    @property
    def key(self) -> tuple[str, str, datetime]:
        """The value stored under the ``sla_events`` unique constraint (with the ticket id)."""
        return (str(self.timer), str(self.kind), self.deadline)


@dataclass(frozen=True)
class TimerStatus:
    """A timer at ``now``: its deadline and state."""

    deadline: Deadline
    state: TimerState


@dataclass(frozen=True)
class SlaStatus:
    """Everything the scheduler needs from one evaluation."""

    now: datetime
    timers: dict[Timer, TimerStatus] = field(default_factory=dict)
    events_due: tuple[SlaEventDue, ...] = ()
    next_check_at: datetime | None = None

    @property
    def breached(self) -> bool:
        """Whether any timer is in breach."""
        return any(t.state is TimerState.BREACHED for t in self.timers.values())


def _open_pauses(pauses: Sequence[Pause], start: datetime) -> list[Pause]:
    """Pauses sorted, overlaps joined, and those over before ``start`` dropped."""
    merged: list[Pause] = []
    for p_start, p_end in sorted(pauses, key=lambda p: p[0]):
        if p_end is not None and p_end <= max(p_start, start):
            continue
        if merged and (merged[-1][1] is None or p_start <= merged[-1][1]):
            last_start, last_end = merged[-1]
            end = None if last_end is None or p_end is None else max(last_end, p_end)
            merged[-1] = (last_start, end)
        else:
            merged.append((p_start, p_end))
    return merged


def active_intervals(
    calendar: Calendar, start: datetime, pauses: Sequence[Pause]
) -> Iterator[Span]:
    """Working pieces from ``start`` with the pauses cut out; ends where an open pause begins."""
    remaining = _open_pauses(pauses, start)
    index = 0
    for piece_start, piece_end in working_intervals(calendar, start):
        cursor = piece_start
        while cursor < piece_end:
            while (
                index < len(remaining)
                and (end := remaining[index][1]) is not None
                and end <= cursor
            ):
                index += 1
            if index == len(remaining) or remaining[index][0] >= piece_end:
                yield cursor, piece_end
                break
            pause_start, pause_end = remaining[index]
            if pause_start > cursor:
                yield cursor, pause_start
            if pause_end is None:
                return
            cursor = max(cursor, pause_end)


def _scan(
    pieces: Iterator[Span], thresholds: Sequence[timedelta], marks: Sequence[datetime]
) -> tuple[list[datetime | None], list[timedelta]]:
    """One pass: when each business-time threshold is reached, and the time used by each mark.

    A zero threshold is reached at the start of the first piece (the first working instant).
    """
    reached: list[datetime | None] = [None] * len(thresholds)
    used: list[timedelta] = [_ZERO] * len(marks)
    pending_t = sorted(range(len(thresholds)), key=lambda i: thresholds[i])
    pending_m = sorted(range(len(marks)), key=lambda i: marks[i])
    total = _ZERO
    for piece_start, piece_end in pieces:
        while pending_m and marks[pending_m[0]] <= piece_start:
            used[pending_m.pop(0)] = total
        length = piece_end - piece_start
        while pending_t and thresholds[pending_t[0]] <= total + length:
            i = pending_t.pop(0)
            reached[i] = piece_start + (thresholds[i] - total)
        while pending_m and marks[pending_m[0]] < piece_end:
            i = pending_m.pop(0)
            used[i] = total + (marks[i] - piece_start)
        total += length
        if not pending_t and not pending_m:
            break
    for i in pending_m:
        used[i] = total
    return reached, used


def deadlines(
    clock: TicketClock, plan: SlaPlan, calendars: Mapping[str, Calendar]
) -> dict[Timer, Deadline]:
    """Each running or finished timer's thresholds, independent of ``now``.

    Timers that start together (first response and resolution) share one pass, and a pass
    stops at the last threshold or end it needs, never at ``now``: a ticket open for a month
    costs no more than one opened today.
    """
    targets = plan.targets.get(clock.priority)
    if targets is None:
        return {}
    calendar = calendars.get(targets.calendar)
    if calendar is None:
        raise ValueError(f"SLA plan {plan.id!r} names unknown calendar {targets.calendar!r}")
    first_start, resolution_start = _starts(clock, plan.priority_change)
    specs: list[tuple[Timer, int, datetime, datetime | None]] = [
        (Timer.FIRST_RESPONSE, targets.first_response_minutes, first_start,
         clock.first_response_at),
        (Timer.RESOLUTION, targets.resolution_minutes, resolution_start, clock.resolved_at),
    ]  # fmt: skip
    minutes = targets.next_response_minutes
    if minutes is not None and clock.first_response_at and clock.unanswered_since:
        specs.append((Timer.NEXT_RESPONSE, minutes, clock.unanswered_since, clock.answered_at))
    warn = 0 < plan.warn_ratio < 1
    result: dict[Timer, Deadline] = {}
    for started_at in dict.fromkeys(spec[2] for spec in specs):
        group = [_finish(spec, clock.resolved_at) for spec in specs if spec[2] == started_at]
        thresholds: list[timedelta] = []
        for _, mins, _, _ in group:
            target = timedelta(minutes=mins)
            thresholds += [target, target * plan.warn_ratio] if warn else [target]
        marks = [end for _, _, met_at, stopped_at in group if (end := met_at or stopped_at)]
        pieces = active_intervals(calendar, started_at, clock.pauses)
        reached_at, used_at = _scan(pieces, thresholds, marks)
        reached, used = iter(reached_at), iter(used_at)
        for timer, mins, met_at, stopped_at in group:
            result[timer] = Deadline(
                timer=timer,
                calendar=calendar.id,
                started_at=started_at,
                target_minutes=mins,
                due_at=next(reached),
                warn_at=next(reached) if warn else None,
                met_at=met_at,
                stopped_at=stopped_at,
                used_minutes=next(used) // _MINUTE if met_at or stopped_at else None,
            )
    return result


def _starts(clock: TicketClock, rule: PriorityChangeRule) -> tuple[datetime, datetime]:
    """When the first-response and resolution timers start (rules 3 and 5)."""
    first = clock.created_at
    resolution = max(clock.created_at, clock.resolution_since or clock.created_at)
    since = clock.priority_since
    if rule is PriorityChangeRule.FROM_CHANGE and since is not None:
        # A timer met before the change keeps its start; the change cannot undo an answer.
        if clock.first_response_at is None or clock.first_response_at > since:
            first = max(first, since)
        if clock.resolved_at is None or clock.resolved_at > since:
            resolution = max(resolution, since)
    return first, resolution


def _finish(
    spec: tuple[Timer, int, datetime, datetime | None], resolved_at: datetime | None
) -> tuple[Timer, int, datetime | None, datetime | None]:
    """``(timer, minutes, met_at, stopped_at)``: resolution before the timer was met stops it."""
    timer, minutes, _, met_at = spec
    if resolved_at is not None and (met_at is None or resolved_at < met_at):
        return timer, minutes, None, resolved_at
    return timer, minutes, met_at, None


def _can_fire(instant: datetime | None, deadline: Deadline) -> bool:
    """Whether a threshold at ``instant`` falls while the timer runs (rule 6)."""
    ended = deadline.ended_at
    return instant is not None and (ended is None or instant < ended)


def _fired(instant: datetime | None, deadline: Deadline, now: datetime) -> bool:
    return instant is not None and instant <= now and _can_fire(instant, deadline)


def _paused_at(pauses: Sequence[Pause], now: datetime) -> bool:
    return any(start <= now and (end is None or now < end) for start, end in pauses)


def _state(deadline: Deadline, clock: TicketClock, now: datetime) -> TimerState:
    if _fired(deadline.due_at, deadline, now):
        return TimerState.BREACHED
    if deadline.met_at is not None and deadline.met_at <= now:
        return TimerState.MET
    if deadline.stopped_at is not None and deadline.stopped_at <= now:
        return TimerState.STOPPED
    if _paused_at(clock.pauses, now):
        return TimerState.PAUSED
    if _fired(deadline.warn_at, deadline, now):
        return TimerState.WARNING
    return TimerState.OK


def evaluate(
    clock: TicketClock, plan: SlaPlan, calendars: Mapping[str, Calendar], now: datetime
) -> SlaStatus:
    """The state of every timer at ``now``, the events fired by ``now``, and the next check."""
    now = _aware(now, "now")
    timers: dict[Timer, TimerStatus] = {}
    events: list[SlaEventDue] = []
    upcoming: list[datetime] = []
    # Under from_start, thresholds the latest priority change put in the past (rule 5).
    changed = clock.priority_since if plan.priority_change is PriorityChangeRule.FROM_START else None
    for timer, deadline in deadlines(clock, plan, calendars).items():
        timers[timer] = TimerStatus(deadline, _state(deadline, clock, now))
        for kind, instant in (
            (EventKind.WARNING, deadline.warn_at),
            (EventKind.BREACH, deadline.due_at),
        ):
            if instant is None or not _can_fire(instant, deadline):
                continue
            retroactive = changed is not None and instant < changed
            if retroactive and kind is EventKind.WARNING:
                continue
            if instant <= now:
                events.append(SlaEventDue(timer, kind, instant, deadline.due_at, retroactive))
            else:
                upcoming.append(instant)
    events.sort(key=lambda e: (e.deadline, e.timer, e.kind))
    return SlaStatus(now, timers, tuple(events), min(upcoming, default=None))
