"""A month's SLA timer instances from the record: which there are, how each ended, which count.

Pure: it takes record rows (already cut at a closed month's ``last_event_id``)
and the month's frozen :class:`Facts`, and returns the instances the month
counts (:mod:`mailticket.reports.sla_table` turns them into the report's table);
nothing here reads a clock, a ticket or the config, so a rebuild of a closed
month cannot differ.

A *timer instance* is ``(ticket, timer, period)`` for first response and
resolution (a reopened ticket starts resolution period 1, 2, …) and
``(ticket, next_response, due)`` for each unanswered customer message. Its
outcome is decided once: *breached* if any ``breach`` row exists, or a ``met``
row says it came after its due time (under the priority of the first breach, so
lowering the priority later erases nothing), else *met*, else *stopped* (a
resolution ended it before it was needed; listed, never in compliance). A later
``met`` row of a breached instance only gives the breach list its actual time.

An instance counts in exactly one month. It belongs to the month of its
decisive instant (the first breach's due time, else the met instant) — or,
when that row was recorded after the instant's month had been closed (a
retroactive breach, a scan that was down), to the month the row was recorded
in. Of several months that could claim it, the one closed first does, so a
closed report never loses or repeats an instance it printed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from mailticket.model import Priority
from mailticket.sla.record_row import RecordedRow

FIRST_RESPONSE, NEXT_RESPONSE, RESOLUTION = "first_response", "next_response", "resolution"
# The order of the report's rows: what the customer waits for first comes first.
TIMERS = (FIRST_RESPONSE, NEXT_RESPONSE, RESOLUTION)
PRIORITIES = tuple(p.value for p in Priority)
BREACH, MET, STOPPED = "breach", "met", "stopped"
OUTCOME_KINDS = (BREACH, MET, STOPPED)

InstanceKey = tuple[int, str, int, datetime | None]


@dataclass(frozen=True)
class RunningFact:
    """A timer instance still running at the month's end (or now, for a month in progress)."""

    ticket_id: int
    timer: str
    period: int
    priority: str
    due_at: datetime | None
    target_minutes: int
    calendar: str


@dataclass(frozen=True)
class Facts:
    """What the SLA figures need beyond the record, frozen when the month closes.

    ``priorities`` is each ticket's priority for rows written before the record
    froze it (migration 0008); ``targets`` maps priority → timer → (minutes,
    calendar) for the same purpose; ``calendars`` says which calendars count
    every minute; ``overdue`` holds business minutes late of breaches that no
    met row of the same due time measures (key: :func:`key_text`).
    """

    timezone: str
    prefix: str
    as_of: datetime
    running: tuple[RunningFact, ...] = ()
    priorities: Mapping[int, str] = field(default_factory=dict)
    targets: Mapping[str, Mapping[str, tuple[int, str]]] = field(default_factory=dict)
    calendars: Mapping[str, bool] = field(default_factory=dict)
    overdue: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class MonthView:
    """One closed month as a claimant of instances: its month and the last row it saw."""

    month: str
    last_event_id: int


@dataclass(frozen=True)
class Instance:
    """A decided timer instance counted in the month."""

    key: InstanceKey
    outcome: str
    priority: str
    calendar: str
    target_minutes: int | None
    due_at: datetime | None
    decided_at: datetime
    answered_at: datetime | None
    used_minutes: int | None
    overdue_minutes: int | None
    notified: bool
    reason: str
    # The month of the decisive instant when the row was recorded after that month closed.
    recorded_late: str | None = None
    # A breach the record says was not answered (rows before 0008 cannot say it).
    unanswered: bool = False

    @property
    def ticket_id(self) -> int:
        return self.key[0]

    @property
    def timer(self) -> str:
        return self.key[1]


def month_of(instant: datetime, timezone: str) -> str:
    """``YYYY-MM`` of an instant in the report's time zone."""
    return f"{instant.astimezone(ZoneInfo(timezone)):%Y-%m}"


def instance_key(row: RecordedRow) -> InstanceKey:
    """Which timer instance a row belongs to (see the module docstring)."""
    if row.timer == NEXT_RESPONSE:
        # Rows written before 0008 have no due_at: a breach's threshold is its due time.
        due = row.due_at or (row.deadline if row.kind == BREACH else None)
        return (row.ticket_id, row.timer, 0, due)
    return (row.ticket_id, row.timer, row.period, None)


def key_text(key: InstanceKey) -> str:
    """An instance key as a JSON object key."""
    ticket_id, timer, period, due = key
    return f"{ticket_id}/{timer}/{period}/{due.isoformat() if due else ''}"


@dataclass(frozen=True)
class Decision:
    """The row that decides an instance, the outcome, and the decisive instant."""

    row: RecordedRow
    outcome: str
    instant: datetime


def _late_met(row: RecordedRow) -> bool:
    """A met row after its due time: a breach even if the scan has not recorded it (yet)."""
    return row.kind == MET and row.due_at is not None and row.deadline > row.due_at


def decisive(rows: Iterable[RecordedRow], bound: int | None = None) -> Decision | None:
    """What decides an instance among its rows with ``id <= bound``.

    The earliest breach — a ``breach`` row at its threshold, or a ``met`` row after
    its due time at that due time (the scan may record that breach later, or, after
    downtime, after the month closed) — else the met row, else the stop.
    """
    seen = [r for r in rows if bound is None or r.id <= bound]
    breaches = [(r.deadline, 0, r.id, r) for r in seen if r.kind == BREACH]
    breaches += [(r.due_at, 1, r.id, r) for r in seen if _late_met(r) and r.due_at is not None]
    if breaches:
        instant, _, _, row = min(breaches)
        return Decision(row, "breached", instant)
    for kind, outcome in ((MET, "met"), (STOPPED, "stopped")):
        found = [r for r in seen if r.kind == kind]
        if found:
            row = min(found, key=lambda r: (r.deadline, r.id))
            return Decision(row, outcome, row.deadline)
    return None


def _claims(
    rows: Sequence[RecordedRow], month: str, bound: int | None, closed: Mapping[str, int],
    timezone: str,
) -> str | None:
    """Whether ``month`` (seeing rows up to ``bound``) claims the instance of ``rows``.

    Returns None if not, ``""`` for an instance decided in the month, or the month of
    its instant when it was recorded in ``month`` after that month had closed.
    """
    found = decisive(rows, bound)
    if found is None:
        return None
    row = found.row
    instant_month = month_of(found.instant, timezone)
    if instant_month == month:
        return ""
    late = (instant_month < month and month_of(row.created_at, timezone) == month
            and instant_month in closed and row.id > closed[instant_month])
    return instant_month if late else None


def counted(
    rows: Iterable[RecordedRow], month: str, facts: Facts, earlier: Sequence[MonthView],
) -> list[Instance]:
    """The instances ``month`` counts, from its rows and the closes made before its own.

    ``rows`` are every outcome row of the candidate tickets that the month may see;
    ``earlier`` are the contract's closes made before this month's (all of them for a
    month in progress).
    """
    closed = {view.month: view.last_event_id for view in earlier}
    by_instance: dict[InstanceKey, list[RecordedRow]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.id):
        if row.timer in TIMERS and row.kind in OUTCOME_KINDS:
            by_instance[instance_key(row)].append(row)
    out: list[Instance] = []
    for key, its_rows in by_instance.items():
        claim = _claims(its_rows, month, None, closed, facts.timezone)
        if claim is None:
            continue
        if any(_claims(its_rows, view.month, view.last_event_id, closed, facts.timezone)
               is not None for view in earlier if view.month != month):
            continue
        out.append(_instance(key, its_rows, facts, claim or None))
    return sorted(out, key=lambda i: (i.decided_at, i.key[0], i.key[1]))


def _instance(
    key: InstanceKey, rows: Sequence[RecordedRow], facts: Facts, late: str | None
) -> Instance:
    found = decisive(rows)
    assert found is not None
    row, outcome = found.row, found.outcome
    priority = row.priority or facts.priorities.get(row.ticket_id, "")
    fallback = facts.targets.get(priority, {}).get(row.timer)
    calendar = row.calendar or (fallback[1] if fallback else "")
    target = row.target_minutes or (fallback[0] if fallback else None)
    met = min((r for r in rows if r.kind == MET), key=lambda r: (r.deadline, r.id), default=None)
    # A met row measured in another calendar (the priority changed) would mix minutes.
    used = met.used_minutes if met is not None and (met.calendar or calendar) == calendar else None
    due = row.due_at or (found.instant if outcome == "breached" else None)
    overdue = None
    # Rows written before 0008 (no frozen priority) never had a met row beside them.
    unanswered = outcome == "breached" and met is None and row.priority is not None
    if outcome == "breached":
        same_due = met is not None and met.due_at == due and met.overdue_minutes is not None
        overdue = met.overdue_minutes if same_due and met is not None \
            else facts.overdue.get(key_text(key))
    return Instance(
        key=key, outcome=outcome, priority=priority, calendar=calendar, target_minutes=target,
        due_at=due, decided_at=found.instant, answered_at=met.deadline if met else None,
        used_minutes=used, overdue_minutes=overdue, notified=row.notified, reason=row.reason,
        recorded_late=late, unanswered=unanswered,
    )


def unmeasured_breaches(instances: Iterable[Instance]) -> list[Instance]:
    """Breaches whose overdue minutes the record does not give (to freeze in the facts).

    Those answered under other targets, and those not answered (late until the
    month's end); a breach from before 0008 without a met row is left unmeasured.
    """
    return [i for i in instances if i.outcome == "breached" and i.overdue_minutes is None
            and (i.answered_at is not None or i.unanswered)]
