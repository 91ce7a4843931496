"""The monthly report of a contract: the month's figures, rendered, mailed or written out.

Issue 6 §7: tickets by priority and line, SLA compliance per timer, median and
90th-percentile response and resolution times (business minutes of the plan's
calendar, pauses excluded, exactly as the SLA counts them), the busiest hours
and weekdays (a chart and a CSV), and the most frequent subjects. Issue 8 adds
customer satisfaction (ratings of the tickets resolved in the month) and the
services used (contract type, people vs. monitoring alerts, routing rules,
engineer time); :mod:`mailticket.reports.usage` computes those two sections.

A ticket belongs to the month it was opened in, in ``reports.timezone``; its
timers are evaluated as of the report's ``now``. ``mailticket report monthly``
and the scheduled run share :func:`build`; the mail carries the chart as an
inline ``cid:`` image and the figures as a CSV attachment, ``--out DIR``
writes the same HTML, PNG and CSV as files.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.errors import MailticketError
from mailticket.mail.compose import strip_reply_prefixes
from mailticket.model import ArticleKind, Line, Priority
from mailticket.reports import usage as report_usage
from mailticket.reports.usage import Satisfaction, Services
from mailticket.sla.clock import TicketClock, Timer, deadlines
from mailticket.store.schema import Article, AuditEvent, Ticket
from mailticket.tickets import sla_stamp as sla_service

_MONTH = re.compile(r"(\d{4})-(\d{2})")
TOP_SUBJECTS = 10


@dataclass(frozen=True)
class Compliance:
    """One timer over the month: in time, breached, still running; percent of the decided."""

    timer: str
    in_time: int = 0
    breached: int = 0
    running: int = 0

    @property
    def percent(self) -> float | None:
        decided = self.in_time + self.breached
        return round(100 * self.in_time / decided, 1) if decided else None


@dataclass(frozen=True)
class Times:
    """Business minutes of met timers: how many, the median and the 90th percentile."""

    count: int = 0
    median: float | None = None
    p90: int | None = None


@dataclass(frozen=True)
class MonthlyReport:
    """All figures of one contract's month; pure data, rendered by templates."""

    contract_id: str
    contract_name: str
    month: str
    start: datetime
    end: datetime
    timezone: str
    total: int = 0
    by_priority: dict[str, int] = field(default_factory=dict)
    by_line: dict[str, int] = field(default_factory=dict)
    compliance: tuple[Compliance, ...] = ()
    response: Times = Times()
    resolution: Times = Times()
    by_hour: tuple[int, ...] = (0,) * 24
    by_weekday: tuple[int, ...] = (0,) * 7
    subjects: tuple[tuple[str, int], ...] = ()
    satisfaction: Satisfaction = field(default_factory=Satisfaction)
    services: Services = field(default_factory=Services)


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


def previous_month(now: datetime, timezone: str) -> str:
    """The month before the one ``now`` falls in, locally: what a scheduled run reports."""
    local = now.astimezone(ZoneInfo(timezone)).date().replace(day=1) - timedelta(days=1)
    return f"{local:%Y-%m}"


def percentile(values: Sequence[int], share: float) -> int | None:
    """Nearest-rank percentile: the smallest value with at least ``share`` of them at or below."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _times(values: list[int]) -> Times:
    if not values:
        return Times()
    return Times(len(values), float(statistics.median(values)), percentile(values, 0.9))


def clocks_for(session: Session, tickets: Sequence[Ticket]) -> dict[int, TicketClock]:
    """Every ticket's SLA clock with two queries in all, not two per ticket."""
    ids = [t.id for t in tickets]
    changes: dict[int, list[tuple[datetime, str, str]]] = {i: [] for i in ids}
    articles: dict[int, list[tuple[str, datetime]]] = {i: [] for i in ids}
    for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        for ticket_id, at, detail in session.execute(
            select(AuditEvent.ticket_id, AuditEvent.at, AuditEvent.detail)
            .where(AuditEvent.ticket_id.in_(chunk), AuditEvent.action == "status")
            .order_by(AuditEvent.at, AuditEvent.id)
        ):
            changes[ticket_id].append((at, str(detail.get("from")), str(detail.get("to"))))
        for ticket_id, kind, at in session.execute(
            select(Article.ticket_id, Article.kind, Article.created_at)
            .where(Article.ticket_id.in_(chunk),
                   Article.kind.in_([ArticleKind.REPLY.value, ArticleKind.CUSTOMER.value]))
            .order_by(Article.id)
        ):
            articles[ticket_id].append((kind, at))
    return {
        t.id: TicketClock(
            created_at=t.created_at,
            priority=Priority(t.priority),
            first_response_at=t.first_response_at,
            resolved_at=t.resolved_at,
            pauses=sla_service.pauses_from(changes[t.id]),
            unanswered_since=sla_service.unanswered_since(articles[t.id]),
        )
        for t in tickets
    }


def _subject_key(subject: str) -> str:
    return " ".join(strip_reply_prefixes(subject).casefold().split())


def build(
    session: Session, config: Config, contract_id: str, month: str, now: datetime
) -> MonthlyReport:
    """Compute one contract's month from the tickets opened in it."""
    contract = config.contracts.get(contract_id)
    if contract is None:
        raise MailticketError(f"unknown contract {contract_id!r}")
    zone_name = config.reports.timezone
    start, end = month_bounds(month, zone_name)
    tickets = list(session.scalars(
        select(Ticket)
        .where(Ticket.contract_id == contract_id, Ticket.created_at >= start,
               Ticket.created_at < end, Ticket.merged_into.is_(None))
        .order_by(Ticket.id)
    ))
    plan = config.sla_plans.get(contract.sla_plan)
    clocks = clocks_for(session, tickets)
    outcomes: dict[Timer, list[int]] = {timer: [0, 0, 0] for timer in Timer}
    used: dict[Timer, list[int]] = {Timer.FIRST_RESPONSE: [], Timer.RESOLUTION: []}
    hours, weekdays = [0] * 24, [0] * 7
    subjects: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    zone = ZoneInfo(zone_name)
    for ticket in tickets:
        local = ticket.created_at.astimezone(zone)
        hours[local.hour] += 1
        weekdays[local.weekday()] += 1
        key = _subject_key(ticket.subject)
        subjects[key] += 1
        spelling.setdefault(key, strip_reply_prefixes(ticket.subject))
        if plan is None:
            continue
        for timer, d in deadlines(clocks[ticket.id], plan, config.calendars).items():
            if d.met_at is not None and (d.due_at is None or d.met_at <= d.due_at):
                outcomes[timer][0] += 1
            elif d.due_at is not None and d.due_at <= min(d.ended_at or now, now):
                outcomes[timer][1] += 1
            elif d.ended_at is None:
                outcomes[timer][2] += 1
            if d.met_at is not None and d.used_minutes is not None and timer in used:
                used[timer].append(d.used_minutes)
    return MonthlyReport(
        contract_id=contract.id,
        contract_name=contract.name,
        month=month,
        start=start,
        end=end,
        timezone=zone_name,
        total=len(tickets),
        by_priority={p.value: sum(t.priority == p for t in tickets) for p in Priority},
        by_line={line.value: sum(t.line == line for t in tickets) for line in Line},
        compliance=tuple(Compliance(str(timer), *counts) for timer, counts in outcomes.items()
                         if any(counts)),
        response=_times(used[Timer.FIRST_RESPONSE]),
        resolution=_times(used[Timer.RESOLUTION]),
        by_hour=tuple(hours),
        by_weekday=tuple(weekdays),
        subjects=tuple((spelling[k], n) for k, n in
                       sorted(subjects.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_SUBJECTS]),
        satisfaction=report_usage.satisfaction(session, config, contract.id, start, end),
        services=report_usage.services(session, contract, tickets, start, end),
    )


_WEEKDAY_CODES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def to_csv(report: MonthlyReport) -> str:
    """Every figure of the report as ``section,key,value`` rows (the chart's data included)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["section", "key", "value"])
    writer.writerow(["summary", "contract", report.contract_id])
    writer.writerow(["summary", "month", report.month])
    writer.writerow(["summary", "tickets", report.total])
    for priority, count in report.by_priority.items():
        writer.writerow(["priority", priority, count])
    for line, count in report.by_line.items():
        writer.writerow(["line", line, count])
    for c in report.compliance:
        for key, value in (("in_time", c.in_time), ("breached", c.breached),
                           ("running", c.running), ("percent", c.percent)):
            writer.writerow([f"sla_{c.timer}", key, "" if value is None else value])
    for name, times in (("response_minutes", report.response),
                        ("resolution_minutes", report.resolution)):
        for key, value in (("count", times.count), ("median", times.median),
                           ("p90", times.p90)):
            writer.writerow([name, key, "" if value is None else value])
    for hour, count in enumerate(report.by_hour):
        writer.writerow(["hour", f"{hour:02d}", count])
    for day, count in zip(_WEEKDAY_CODES, report.by_weekday, strict=True):
        writer.writerow(["weekday", day, count])
    for subject, count in report.subjects:
        writer.writerow(["subject", subject, count])
    _usage_rows(writer, report)
    return out.getvalue()


def _usage_rows(writer: Any, report: MonthlyReport) -> None:
    """The satisfaction and services sections as CSV rows."""
    sat, used = report.satisfaction, report.services
    figures: list[tuple[str, object]] = [
        ("resolved", sat.resolved), ("rating_requested", sat.requested), ("rated", sat.rated),
        ("percent_rated", sat.percent_rated), ("average", sat.average),
        ("low_threshold", sat.low_threshold),
    ]
    for key, value in figures:
        writer.writerow(["satisfaction", key, "" if value is None else value])
    for score, count in zip(report_usage.SCORES, sat.distribution, strict=True):
        writer.writerow(["rating", score, count])
    for low in sat.low:
        writer.writerow(["low_rating", low.ref, low.rating])
        writer.writerow(["low_rating_comment", low.ref, low.comment])
    services: list[tuple[str, object]] = [
        ("contract_type", used.contract_type), ("human_requests", used.human),
        ("monitoring_alerts", used.alerts), ("alert_mails", used.alert_mails),
        ("alert_flaps", used.alert_flaps), ("engineer_minutes", used.engineer_minutes),
    ]
    for key, value in services:
        writer.writerow(["services", key, value])
    for kind, count in used.by_contract_type.items():
        writer.writerow(["contract_type", kind, count])
    for rule, count in used.by_rule:
        writer.writerow(["routing_rule", rule, count])


def template_context(report: MonthlyReport, chart_src: str, csv_name: str) -> dict[str, Any]:
    """The ``monthly_report`` template context."""
    busiest_hour = max(range(24), key=lambda h: report.by_hour[h]) if report.total else None
    busiest_day = max(range(7), key=lambda d: report.by_weekday[d]) if report.total else None
    return {
        "report": report,
        "contract_name": report.contract_name,
        "month": report.month,
        "period_start": report.start,
        "period_end": report.end - timedelta(minutes=1),
        "timezone": report.timezone,
        "busiest_hour": busiest_hour,
        "busiest_weekday": busiest_day,
        "chart_src": chart_src,
        "csv_name": csv_name,
    }
