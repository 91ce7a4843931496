"""The monthly report of a contract: built from the SLA record, frozen once the month is over.

Issue 6 §7, issue 8 and issue 13. Per priority and per timer (first response,
next response, resolution): the target, tickets, met, breached, compliance,
median and 90th percentile of the minutes used — in the plan's own minutes of
that priority's calendar, so 24/7 and business minutes never mix — and the
list of breaches with due time, actual time and minutes overdue; the timers
still running at the month's end; the backlog at the month's start and end;
the trend against the previous month; tickets opened by priority, line, hour
and weekday; frequent subjects; customer satisfaction and services used.

Where the figures come from (:mod:`mailticket.reports.sla_month` says how an
instance is decided and which month counts it):

* a month that has ended is read from its close (:mod:`mailticket.reports.month_close`):
  the first build writes it, every build reads the record up to the close's
  ``last_event_id`` and its snapshot, so the scheduled report and any rebuild
  are identical;
* a month in progress is built live as of ``now`` and marked provisional;
  nothing is written for it.

A timer still running at the month's end is listed, not counted: it counts in
the month in which it is met or breached, like every instance. Building a
month closes the previous one too if it has ended (the trend and the backlog
at the start read it). ``mailticket report monthly`` and the scheduled run
share :func:`build`; :mod:`mailticket.reports.export` renders the figures and
:mod:`mailticket.reports.delivery` mails or writes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.errors import MailticketError
from mailticket.model import Contract
from mailticket.reports import month_close, record, sla_month, sla_table
from mailticket.reports.month_close import MonthInputs
from mailticket.reports.sla_table import SlaMonth, percent
from mailticket.reports.sla_table import percentile as percentile
from mailticket.reports.usage import Satisfaction, Services
from mailticket.reports.volume import Volume
from mailticket.store.schema import SlaMonthClose

_MONTH = re.compile(r"(\d{4})-(\d{2})")
TOTAL = "total"


@dataclass(frozen=True)
class TrendRow:
    """Compliance of one priority (or all, ``total``) this month and the month before."""

    key: str
    previous: float | None
    current: float | None
    previous_breached: int
    breached: int

    @property
    def change(self) -> float | None:
        """Percentage points gained (positive) or lost since the previous month."""
        if self.previous is None or self.current is None:
            return None
        return round(self.current - self.previous, 1)


@dataclass(frozen=True)
class MonthlyReport:
    """All figures of one contract's month; pure data, rendered by templates and the CSV."""

    contract_id: str
    contract_name: str
    month: str
    start: datetime
    end: datetime
    timezone: str
    as_of: datetime
    plan_name: str = ""
    previous_month: str = ""
    # When the month was closed; None while it is in progress (provisional figures).
    closed_at: datetime | None = None
    last_event_id: int | None = None
    backlog_start: int = 0
    backlog_end: int = 0
    volume: Volume = field(default_factory=Volume)
    previous_total: int = 0
    sla: SlaMonth = field(default_factory=SlaMonth)
    trend: tuple[TrendRow, ...] = ()
    satisfaction: Satisfaction = field(default_factory=Satisfaction)
    services: Services = field(default_factory=Services)

    @property
    def provisional(self) -> bool:
        """Whether the month is still in progress (figures as of ``as_of``, not frozen)."""
        return self.closed_at is None

    @property
    def total(self) -> int:
        """Tickets opened in the month."""
        return self.volume.total


def month_bounds(month: str, timezone: str) -> tuple[datetime, datetime]:
    """``2026-10`` → the month's first and next month's first local midnight, aware."""
    match = _MONTH.fullmatch(month.strip())
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise MailticketError(f"bad month {month!r}: expected YYYY-MM such as 2026-10")
    year, number = int(match.group(1)), int(match.group(2))
    zone = ZoneInfo(timezone)
    first = date(year, number, 1)
    following = date(year + number // 12, number % 12 + 1, 1)
    return (datetime.combine(first, datetime.min.time(), zone),
            datetime.combine(following, datetime.min.time(), zone))


def month_before(month: str) -> str:
    """``2026-01`` → ``2025-12``."""
    year, number = (int(part) for part in month.split("-"))
    return f"{year - 1}-12" if number == 1 else f"{year}-{number - 1:02d}"


def previous_month(now: datetime, timezone: str) -> str:
    """The month before the one ``now`` falls in, locally: what a scheduled run reports."""
    local = now.astimezone(ZoneInfo(timezone)).date().replace(day=1) - timedelta(days=1)
    return f"{local:%Y-%m}"


@dataclass(frozen=True)
class _Month:
    """One month's inputs and SLA figures, and its close if it has one."""

    inputs: MonthInputs
    sla: SlaMonth
    start: datetime
    end: datetime
    close: SlaMonthClose | None


def _backlog_before(session: Session, contract: Contract, month: str) -> int | None:
    """The previous month's backlog at its end, if that month is closed."""
    before = month_close.find(session, contract.id, month_before(month))
    return month_close.from_snapshot(before.snapshot).backlog_end if before else None


def _month(
    session: Session, config: Config, contract: Contract, month: str, now: datetime
) -> _Month:
    """A month's figures: from its close once it has ended (closing it first), else live."""
    start, end = month_bounds(month, config.reports.timezone)
    if end <= now:
        close = month_close.find(session, contract.id, month) or month_close.close(
            session, config, contract, month, start, end, now,
            _backlog_before(session, contract, month))
        inputs = month_close.from_snapshot(close.snapshot)
        # The month's own time zone, even if reports.timezone changed since.
        start, end = month_bounds(month, inputs.facts.timezone)
        earlier = month_close.views(c for c in month_close.closes(session, contract.id)
                                    if c.id < close.id)
        rows = record.record_rows(session, contract.id, start, end, close.last_event_id)
        instances = sla_month.counted(rows, month, inputs.facts, earlier)
        return _Month(inputs, sla_table.aggregate(instances, inputs.facts), start, end, close)
    earlier = month_close.views(month_close.closes(session, contract.id))
    rows = record.record_rows(session, contract.id, start, end, None)
    as_of = max(min(now, end), start)
    inputs = month_close.gather(session, config, contract, (start, end), as_of, rows, None,
                                _backlog_before(session, contract, month))
    first = sla_month.counted(rows, month, inputs.facts, earlier)
    facts = replace(inputs.facts, overdue=month_close.measure_overdue(config, first, as_of))
    inputs = replace(inputs, facts=facts)
    instances = sla_month.counted(rows, month, facts, earlier)
    return _Month(inputs, sla_table.aggregate(instances, facts), start, end, None)


def trend(current: SlaMonth, previous: SlaMonth) -> tuple[TrendRow, ...]:
    """Compliance per priority that had decided timers in either month, then the total."""
    rows = []
    for key in (*sla_month.PRIORITIES, TOTAL):
        priority = None if key == TOTAL else key
        met, breached = current.compliance_by(priority)
        was_met, was_breached = previous.compliance_by(priority)
        if key != TOTAL and not (met + breached + was_met + was_breached):
            continue
        rows.append(TrendRow(key, percent(was_met, was_met + was_breached),
                             percent(met, met + breached), was_breached, breached))
    return tuple(rows)


def build(
    session: Session, config: Config, contract_id: str, month: str, now: datetime
) -> MonthlyReport:
    """One contract's month (closing it, and the month before, if they have ended)."""
    contract = config.contracts.get(contract_id)
    if contract is None:
        raise MailticketError(f"unknown contract {contract_id!r}")
    month_bounds(month, config.reports.timezone)
    before = _month(session, config, contract, month_before(month), now)
    this = _month(session, config, contract, month, now)
    inputs = this.inputs
    return MonthlyReport(
        contract_id=contract.id,
        contract_name=contract.name,
        month=month,
        start=this.start,
        end=this.end,
        timezone=inputs.facts.timezone,
        as_of=inputs.facts.as_of,
        plan_name=inputs.plan_name,
        previous_month=month_before(month),
        closed_at=this.close.closed_at if this.close else None,
        last_event_id=this.close.last_event_id if this.close else None,
        backlog_start=inputs.backlog_start,
        backlog_end=inputs.backlog_end,
        volume=inputs.volume,
        previous_total=before.inputs.volume.total,
        sla=this.sla,
        trend=trend(this.sla, before.sla),
        satisfaction=inputs.satisfaction,
        services=inputs.services,
    )
