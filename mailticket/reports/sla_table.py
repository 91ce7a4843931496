"""The SLA section's table, breach list and running list from a month's decided instances.

Pure, like :mod:`mailticket.reports.sla_month`, which decides the instances.
Rows group instances by priority, timer and calendar: the times of one row are
always minutes of one calendar (24/7 or business hours), never a mix. A row's
median and 90th percentile are of the minutes used by the instances with a
``met`` row measured in that calendar; its distribution says how much of the
target they took (within 25, 50, 75, 100 % of it, or later).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mailticket.reports.sla_month import PRIORITIES, TIMERS, Facts, Instance, RunningFact

# Upper edges (percent of the target) of the response-time distribution; a last
# bucket holds everything over 100 %.
BUCKETS = (25, 50, 75, 100)


@dataclass(frozen=True)
class TimerRow:
    """One priority × timer × calendar: targets, outcomes and times in the plan's minutes."""

    priority: str
    timer: str
    calendar: str
    always_open: bool
    targets: tuple[int, ...] = ()
    tickets: int = 0
    met: int = 0
    breached: int = 0
    running: int = 0
    stopped: int = 0
    answered: int = 0
    median: float | None = None
    p90: int | None = None
    # Instances answered within 25/50/75/100 % of the target and later.
    distribution: tuple[int, ...] = (0,) * (len(BUCKETS) + 1)

    @property
    def measured(self) -> int:
        """Timer instances decided in the month (met or breached)."""
        return self.met + self.breached

    @property
    def compliance(self) -> float | None:
        """Met as a share of decided (met + breached), percent, one decimal."""
        return percent(self.met, self.measured)


@dataclass(frozen=True)
class BreachLine:
    """One breached instance for the breach list."""

    ref: str
    timer: str
    priority: str
    due_at: datetime | None
    answered_at: datetime | None
    # True: the record says it was not answered (False with no answered_at: unknown).
    unanswered: bool
    overdue_minutes: int | None
    always_open: bool
    calendar: str
    notified: bool
    reason: str
    recorded_late: str | None


@dataclass(frozen=True)
class RunningLine:
    """One instance still running at the month's end."""

    ref: str
    timer: str
    priority: str
    due_at: datetime | None
    overdue: bool
    target_minutes: int
    always_open: bool


@dataclass(frozen=True)
class StoppedLine:
    """A timer a resolution stopped before it was needed (internal list only)."""

    ref: str
    timer: str
    priority: str
    at: datetime


@dataclass(frozen=True)
class SlaMonth:
    """The SLA section of a monthly report."""

    rows: tuple[TimerRow, ...] = ()
    breaches: tuple[BreachLine, ...] = ()
    running: tuple[RunningLine, ...] = ()
    stopped: tuple[StoppedLine, ...] = ()

    def compliance_by(self, priority: str | None = None) -> tuple[int, int]:
        """(met, breached) over every timer of ``priority``, or of all priorities."""
        rows = [r for r in self.rows if priority is None or r.priority == priority]
        return sum(r.met for r in rows), sum(r.breached for r in rows)


def percent(part: int, whole: int) -> float | None:
    """``part`` of ``whole`` in percent with one decimal; None of nothing."""
    return round(100 * part / whole, 1) if whole else None


def percentile(values: Sequence[int], share: float) -> int | None:
    """Nearest-rank percentile: the smallest value with at least ``share`` of them at or below."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _bucket(used: int, target: int | None) -> int | None:
    if not target:
        return None
    share = 100 * used / target
    return next((i for i, edge in enumerate(BUCKETS) if share <= edge), len(BUCKETS))


def _ref(facts: Facts, ticket_id: int) -> str:
    # TicketRef's format, with the prefix frozen in the facts.
    return f"{facts.prefix}-{ticket_id}"


def aggregate(instances: Sequence[Instance], facts: Facts) -> SlaMonth:
    """The table rows, the breach list, the running list and the stopped list."""
    groups: dict[tuple[str, str, str], list[Instance]] = defaultdict(list)
    running: dict[tuple[str, str, str], list[RunningFact]] = defaultdict(list)
    for instance in instances:
        groups[(instance.priority, instance.timer, instance.calendar)].append(instance)
    for fact in facts.running:
        running[(fact.priority, fact.timer, fact.calendar)].append(fact)
    rows = [_row(k, groups.get(k, []), running.get(k, []), facts)
            for k in sorted({*groups, *running}, key=_row_order)]
    breaches = [
        BreachLine(
            ref=_ref(facts, i.ticket_id), timer=i.timer, priority=i.priority, due_at=i.due_at,
            answered_at=i.answered_at, unanswered=i.unanswered,
            overdue_minutes=i.overdue_minutes,
            always_open=facts.calendars.get(i.calendar, False), calendar=i.calendar,
            notified=i.notified, reason=i.reason, recorded_late=i.recorded_late,
        )
        for i in instances if i.outcome == "breached"
    ]
    breaches.sort(key=lambda b: (b.due_at or facts.as_of, b.ref, TIMERS.index(b.timer)))
    running_lines = sorted(
        (RunningLine(ref=_ref(facts, f.ticket_id), timer=f.timer, priority=f.priority,
                     due_at=f.due_at, overdue=f.due_at is not None and f.due_at <= facts.as_of,
                     target_minutes=f.target_minutes,
                     always_open=facts.calendars.get(f.calendar, False))
         for f in facts.running),
        key=lambda r: (r.due_at is None, r.due_at or facts.as_of, r.ref, TIMERS.index(r.timer)),
    )
    stopped = [StoppedLine(_ref(facts, i.ticket_id), i.timer, i.priority, i.decided_at)
               for i in instances if i.outcome == "stopped"]
    return SlaMonth(tuple(rows), tuple(breaches), tuple(running_lines), tuple(stopped))


def _row_order(key: tuple[str, str, str]) -> tuple[int, int, str]:
    priority, timer, calendar = key
    rank = PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES)
    return rank, TIMERS.index(timer), calendar


def _row(
    key: tuple[str, str, str], instances: Sequence[Instance], running: Sequence[RunningFact],
    facts: Facts,
) -> TimerRow:
    priority, timer, calendar = key
    decided = [i for i in instances if i.outcome in ("met", "breached")]
    used = [i.used_minutes for i in decided if i.used_minutes is not None]
    distribution = [0] * (len(BUCKETS) + 1)
    for i in decided:
        if i.used_minutes is not None and (b := _bucket(i.used_minutes, i.target_minutes)) is not None:
            distribution[b] += 1
    targets = {i.target_minutes for i in instances if i.target_minutes} | {
        f.target_minutes for f in running}
    return TimerRow(
        priority=priority, timer=timer, calendar=calendar,
        always_open=facts.calendars.get(calendar, False), targets=tuple(sorted(targets)),
        tickets=len({i.ticket_id for i in decided}),
        met=sum(i.outcome == "met" for i in decided),
        breached=sum(i.outcome == "breached" for i in decided),
        running=len(running), stopped=sum(i.outcome == "stopped" for i in instances),
        answered=len(used),
        median=float(statistics.median(used)) if used else None,
        p90=percentile(used, 0.9), distribution=tuple(distribution),
    )
