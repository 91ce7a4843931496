"""A monthly report's figures as CSV and as the ``monthly_report`` template context.

Two variants of the same figures. The customer's prints nothing of our
configuration — no routing rule names, calendar ids, breach reasons written
for engineers, or which breach went out without a notice; the provider's
internal variant (``--internal``) adds them. The CSV carries every figure of
the mail and the charts as ``section,item,key,value`` rows (times local to the
report's time zone, ISO 8601), so a spreadsheet can pivot them; it depends on
nothing but the report, so a closed month's CSV is the same bytes every time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mailticket.reports import usage
from mailticket.reports.monthly import MonthlyReport
from mailticket.reports.sla_table import BUCKETS, TimerRow
from mailticket.reports.volume import WEEKDAY_CODES

# The charts of the report, in the order the mail shows them.
CHARTS = ("compliance", "response", "trend", "hours")
_SHARES = (*(f"within_{edge}_percent" for edge in BUCKETS), f"over_{BUCKETS[-1]}_percent")


def minutes_kind(always_open: bool) -> str:
    """Which minutes a row's times are in: every minute, or the calendar's working ones."""
    return "all_hours" if always_open else "business_hours"


def row_item(row: TimerRow) -> str:
    """A table row's CSV item: ``critical/first_response/all_hours``."""
    return f"{row.priority}/{row.timer}/{minutes_kind(row.always_open)}"


def _value(value: object) -> object:
    return "" if value is None else value


def to_csv(report: MonthlyReport, *, internal: bool = False) -> str:
    """Every figure of the report as ``section,item,key,value`` rows."""
    zone = ZoneInfo(report.timezone)

    def when(value: datetime | None) -> str:
        return value.astimezone(zone).isoformat(timespec="minutes") if value else ""

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    rows: list[tuple[str, str, str, object]] = [
        ("summary", "", "contract", report.contract_id),
        ("summary", "", "month", report.month),
        ("summary", "", "status", "provisional" if report.provisional else "final"),
        ("summary", "", "as_of", when(report.as_of)),
        ("summary", "", "closed_at", when(report.closed_at)),
        ("summary", "", "tickets", report.total),
        ("summary", "", "previous_month", report.previous_month),
        ("summary", "", "previous_tickets", report.previous_total),
        ("summary", "", "backlog_start", report.backlog_start),
        ("summary", "", "backlog_end", report.backlog_end),
    ]
    if internal:
        rows.append(("summary", "", "last_event_id", report.last_event_id))
    rows += [("priority", p, "tickets", n) for p, n in report.volume.by_priority.items()]
    rows += [("line", line, "tickets", n) for line, n in report.volume.by_line.items()]
    for row in report.sla.rows:
        item = row_item(row)
        figures: list[tuple[str, object]] = [
            ("target_minutes", ";".join(str(t) for t in row.targets)),
            ("minutes", minutes_kind(row.always_open)),
            ("tickets", row.tickets), ("measured", row.measured), ("met", row.met),
            ("breached", row.breached),
            ("compliance_percent", row.compliance), ("running", row.running),
            ("stopped", row.stopped), ("answered", row.answered),
            ("median_minutes", row.median), ("p90_minutes", row.p90),
            *zip(_SHARES, row.distribution, strict=True),
        ]
        if internal:
            figures.append(("calendar", row.calendar))
        rows += [("sla", item, key, value) for key, value in figures]
    for b in report.sla.breaches:
        item = f"{b.ref}/{b.timer}/{when(b.due_at)}"
        figures = [("priority", b.priority), ("due", when(b.due_at)),
                   ("answered", when(b.answered_at)),
                   ("unanswered", "yes" if b.unanswered else "no" if b.answered_at else ""),
                   ("overdue_minutes", b.overdue_minutes),
                   ("minutes", minutes_kind(b.always_open)),
                   ("recorded_late", b.recorded_late)]
        if internal:
            figures += [("notified", "yes" if b.notified else "no"), ("reason", b.reason),
                        ("calendar", b.calendar)]
        rows += [("breach", item, key, value) for key, value in figures]
    for r in report.sla.running:
        rows += [("running", f"{r.ref}/{r.timer}", key, value) for key, value in (
            ("priority", r.priority), ("due", when(r.due_at)),
            ("target_minutes", r.target_minutes), ("overdue", "yes" if r.overdue else "no"))]
    if internal:
        for s in report.sla.stopped:
            rows += [("stopped", f"{s.ref}/{s.timer}", "priority", s.priority),
                     ("stopped", f"{s.ref}/{s.timer}", "at", when(s.at))]
    for t in report.trend:
        rows += [("trend", t.key, key, value) for key, value in (
            ("previous_percent", t.previous), ("percent", t.current),
            ("change_points", t.change), ("previous_breached", t.previous_breached),
            ("breached", t.breached))]
    rows += [("hour", f"{h:02d}", "tickets", n) for h, n in enumerate(report.volume.by_hour)]
    rows += [("weekday", day, "tickets", n)
             for day, n in zip(WEEKDAY_CODES, report.volume.by_weekday, strict=True)]
    rows += [("subject", subject, "tickets", n) for subject, n in report.volume.subjects]
    rows += _usage_rows(report, internal)
    writer.writerow(["section", "item", "key", "value"])
    writer.writerows((section, item, key, _value(value)) for section, item, key, value in rows)
    return out.getvalue()


def _usage_rows(report: MonthlyReport, internal: bool) -> list[tuple[str, str, str, object]]:
    """The satisfaction and services sections; routing rules only in the internal variant."""
    sat, used = report.satisfaction, report.services
    rows: list[tuple[str, str, str, object]] = [
        ("satisfaction", "", key, value) for key, value in (
            ("resolved", sat.resolved), ("rating_requested", sat.requested),
            ("rated", sat.rated), ("percent_rated", sat.percent_rated),
            ("average", sat.average), ("low_threshold", sat.low_threshold))]
    rows += [("rating", str(score), "tickets", n)
             for score, n in zip(usage.SCORES, sat.distribution, strict=True)]
    for low in sat.low:
        rows += [("low_rating", low.ref, "rating", low.rating),
                 ("low_rating", low.ref, "comment", low.comment)]
    rows += [("services", "", key, value) for key, value in (
        ("contract_type", used.contract_type), ("human_requests", used.human),
        ("monitoring_alerts", used.alerts), ("alert_mails", used.alert_mails),
        ("alert_flaps", used.alert_flaps), ("engineer_minutes", used.engineer_minutes))]
    rows += [("contract_type", kind, "tickets", n) for kind, n in used.by_contract_type.items()]
    if internal:
        rows += [("routing_rule", rule, "tickets", n) for rule, n in used.by_rule]
    return rows


def template_context(
    report: MonthlyReport, charts: Mapping[str, str], csv_name: str, *, internal: bool = False
) -> dict[str, Any]:
    """The ``monthly_report`` template context; ``charts`` maps each of :data:`CHARTS` to a src."""
    volume = report.volume
    busiest_hour = max(range(24), key=lambda h: volume.by_hour[h]) if volume.total else None
    busiest_day = max(range(7), key=lambda d: volume.by_weekday[d]) if volume.total else None
    return {
        "report": report,
        "internal": internal,
        "contract_name": report.contract_name,
        "month": report.month,
        "period_start": report.start,
        "period_end": report.end - timedelta(minutes=1),
        "timezone": report.timezone,
        "busiest_hour": busiest_hour,
        "busiest_weekday": busiest_day,
        "charts": {name: charts[name] for name in CHARTS},
        "csv_name": csv_name,
        "buckets": BUCKETS,
    }
