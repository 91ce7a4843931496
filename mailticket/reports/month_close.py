"""Freezing a contract's month: what the report reads besides the record, kept in ``sla_month_close``.

The record (``sla_events``) is append-only, but a report also needs things that
change: which tickets were still open at the month's end and which of their
timers still ran (only the tickets' history can say), the fallbacks for rows
written before the record froze priority and target, the ratings, the routing
rules, the config's calendars. The first build of a month after it ended
gathers all of that as of the month's end, notes the last record row it saw
(``last_event_id``) and writes both as one :class:`SlaMonthClose` row. Every
later build reads that row and the record up to that id, so the scheduled
report and any rebuild print the same figures; a month still in progress is
gathered live each time and writes nothing.

The cut-off must not miss a row that commits later with a smaller id: SQLite
holds the write lock for the whole transaction (``BEGIN IMMEDIATE``), and on
PostgreSQL the close takes ``sla_events`` in SHARE mode, which waits for every
writer in flight and holds new ones back until the close commits (seconds,
once a month per contract). Two instances closing the same month race on the
unique key; the loser re-reads the winner's row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.model import Contract, SlaPlan
from mailticket.reports import backlog, sla_month, usage
from mailticket.reports import volume as report_volume
from mailticket.reports.record import record_rows
from mailticket.reports.sla_month import Facts, MonthView, RunningFact
from mailticket.reports.usage import Satisfaction, Services
from mailticket.reports.volume import Volume
from mailticket.sla.business_hours import business_minutes_between
from mailticket.sla.record_row import RecordedRow
from mailticket.store.schema import SlaEvent, SlaMonthClose, Ticket

SNAPSHOT_VERSION = 1
_CHUNK = 500


@dataclass(frozen=True)
class MonthInputs:
    """Everything a month's report reads besides the record rows."""

    facts: Facts
    plan_name: str
    backlog_start: int
    backlog_end: int
    volume: Volume
    satisfaction: Satisfaction
    services: Services


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    return (ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK))


def closes(session: Session, contract_id: str) -> list[SlaMonthClose]:
    """The contract's closed months, in the order they were closed."""
    return list(session.scalars(select(SlaMonthClose)
                                .where(SlaMonthClose.contract_id == contract_id)
                                .order_by(SlaMonthClose.id)))


def views(rows: Iterable[SlaMonthClose]) -> list[MonthView]:
    """Closes as claimants of timer instances (:func:`sla_month.counted`)."""
    return [MonthView(c.month, c.last_event_id) for c in rows]


def find(session: Session, contract_id: str, month: str) -> SlaMonthClose | None:
    """The close of one month, if it was closed."""
    return session.scalar(select(SlaMonthClose).where(SlaMonthClose.contract_id == contract_id,
                                                      SlaMonthClose.month == month))


# --- Gathering and freezing ---------------------------------------------------------------


def _targets(plan: SlaPlan | None) -> dict[str, dict[str, tuple[int, str]]]:
    if plan is None:
        return {}
    out: dict[str, dict[str, tuple[int, str]]] = {}
    for priority, t in plan.targets.items():
        timers = {sla_month.FIRST_RESPONSE: (t.first_response_minutes, t.calendar),
                  sla_month.RESOLUTION: (t.resolution_minutes, t.calendar)}
        if t.next_response_minutes is not None:
            timers[sla_month.NEXT_RESPONSE] = (t.next_response_minutes, t.calendar)
        out[str(priority)] = timers
    return out


def gather(
    session: Session, config: Config, contract: Contract, span: tuple[datetime, datetime],
    as_of: datetime, rows: Sequence[RecordedRow], cutoff: int | None, backlog_start: int | None,
) -> MonthInputs:
    """The month's inputs as of ``as_of`` (its end, or now while it runs); no overdue yet.

    ``rows`` are the month's record rows (:func:`record_rows`), ``backlog_start`` the
    previous month's backlog at its end if that month is closed.
    """
    start, end = span
    plan = config.sla_plans.get(contract.sla_plan)
    zone = config.reports.timezone
    still_open = backlog.open_at(session, contract.id, as_of)
    running = backlog.running_at(session, config, plan, still_open, as_of, cutoff) if plan else []
    if backlog_start is None:
        backlog_start = len(backlog.open_at(session, contract.id, start))
    opened = list(session.scalars(
        select(Ticket)
        .where(Ticket.contract_id == contract.id, Ticket.created_at >= start,
               Ticket.created_at < end, Ticket.merged_into.is_(None))
        .order_by(Ticket.id)))
    undated = sorted({r.ticket_id for r in rows if r.priority is None})
    priorities: dict[int, str] = {}
    for chunk in _chunks(undated):
        for ticket_id, priority in session.execute(
                select(Ticket.id, Ticket.priority).where(Ticket.id.in_(chunk))):
            priorities[ticket_id] = priority
    facts = Facts(
        timezone=zone, prefix=config.mail.ticket_prefix, as_of=as_of,
        running=tuple(running), priorities=priorities, targets=_targets(plan),
        calendars={cid: c.always_open for cid, c in sorted(config.calendars.items())},
    )
    return MonthInputs(
        facts=facts, plan_name=plan.name if plan else "", backlog_start=backlog_start,
        backlog_end=len(still_open), volume=report_volume.volume(opened, zone),
        satisfaction=usage.satisfaction(session, config, contract.id, start, end),
        services=usage.services(session, contract, opened, start, end),
    )


def measure_overdue(
    config: Config, instances: Iterable[sla_month.Instance], as_of: datetime
) -> dict[str, int]:
    """Business minutes late of breaches no met row measures: to the answer, or to ``as_of``."""
    out: dict[str, int] = {}
    for instance in sla_month.unmeasured_breaches(instances):
        calendar = config.calendars.get(instance.calendar)
        if calendar is None or instance.due_at is None:
            continue
        until = instance.answered_at or as_of
        out[sla_month.key_text(instance.key)] = business_minutes_between(
            calendar, instance.due_at, max(until, instance.due_at))
    return out


def max_event_id(session: Session) -> int:
    """The newest record row now, with no writer in flight (see the module docstring)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE sla_events IN SHARE MODE"))
    return int(session.scalar(select(func.max(SlaEvent.id))) or 0)


def close(
    session: Session, config: Config, contract: Contract, month: str, start: datetime,
    end: datetime, now: datetime, backlog_start: int | None,
) -> SlaMonthClose:
    """The month's close: read it, or gather the month as of its end and write it once."""
    existing = find(session, contract.id, month)
    if existing is not None:
        return existing
    cutoff = max_event_id(session)
    earlier = views(closes(session, contract.id))
    rows = record_rows(session, contract.id, start, end, cutoff)
    inputs = gather(session, config, contract, (start, end), end, rows, cutoff, backlog_start)
    instances = sla_month.counted(rows, month, inputs.facts, earlier)
    overdue = measure_overdue(config, instances, end)
    inputs = replace(inputs, facts=replace(inputs.facts, overdue=overdue))
    row = SlaMonthClose(contract_id=contract.id, month=month, closed_at=now,
                        last_event_id=cutoff, snapshot=snapshot(inputs))
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        # Another instance closed it first: its row is the month.
        won = find(session, contract.id, month)
        assert won is not None
        return won
    return row


# --- The snapshot as JSON -----------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def snapshot(inputs: MonthInputs) -> dict[str, Any]:
    """The close's JSON: every input of the month's figures that could change later."""
    facts = inputs.facts
    return {
        "version": SNAPSHOT_VERSION,
        "timezone": facts.timezone,
        "prefix": facts.prefix,
        "as_of": facts.as_of.isoformat(),
        "plan_name": inputs.plan_name,
        "backlog": {"start": inputs.backlog_start, "end": inputs.backlog_end},
        "running": [
            {"ticket": f.ticket_id, "timer": f.timer, "period": f.period, "priority": f.priority,
             "due_at": _iso(f.due_at), "target_minutes": f.target_minutes,
             "calendar": f.calendar}
            for f in facts.running
        ],
        "priorities": {str(k): v for k, v in sorted(facts.priorities.items())},
        "targets": {p: {t: list(v) for t, v in timers.items()}
                    for p, timers in facts.targets.items()},
        "calendars": dict(facts.calendars),
        "overdue": dict(sorted(facts.overdue.items())),
        "volume": report_volume.to_json(inputs.volume),
        "satisfaction": usage.satisfaction_to_json(inputs.satisfaction),
        "services": usage.services_to_json(inputs.services),
    }


def from_snapshot(data: Mapping[str, Any]) -> MonthInputs:
    """A close's JSON back as the month's inputs."""
    as_of = _dt(data["as_of"])
    assert as_of is not None
    facts = Facts(
        timezone=str(data["timezone"]), prefix=str(data["prefix"]), as_of=as_of,
        running=tuple(
            RunningFact(int(f["ticket"]), str(f["timer"]), int(f["period"]), str(f["priority"]),
                        _dt(f["due_at"]), int(f["target_minutes"]), str(f["calendar"]))
            for f in data["running"]
        ),
        priorities={int(k): str(v) for k, v in data["priorities"].items()},
        targets={str(p): {str(t): (int(v[0]), str(v[1])) for t, v in timers.items()}
                 for p, timers in data["targets"].items()},
        calendars={str(k): bool(v) for k, v in data["calendars"].items()},
        overdue={str(k): int(v) for k, v in data["overdue"].items()},
    )
    return MonthInputs(
        facts=facts, plan_name=str(data["plan_name"]),
        backlog_start=int(data["backlog"]["start"]), backlog_end=int(data["backlog"]["end"]),
        volume=report_volume.from_json(data["volume"]),
        satisfaction=usage.satisfaction_from_json(data["satisfaction"]),
        services=usage.services_from_json(data["services"]),
    )
