"""``mailticket calendar show NAME --year YYYY``: a calendar's year, month by month.

An admin holds this against the official production calendar before trusting
SLA deadlines to it: per month the working days, the working hours (the
business time the SLA clock counts), the days off that the week would have
worked (holidays, transferred days off), the days worked that the week would
have had off (decreed working Saturdays) and the days with other hours
(shortened pre-holiday days from ``[calendars.ID.days]``). ``--json`` prints
the twelve months as a list for scripts. Only the config is read, no database.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mailticket.cli import common
from mailticket.errors import MailticketError, NotFound
from mailticket.model import Calendar, Interval
from mailticket.sla import business_hours, production_calendar

# The ``holidays`` package covers Russia from 1991 to 2100; a little either side
# still makes sense for a calendar without ``country``.
FIRST_YEAR, LAST_YEAR = 1900, 2200


def month_summary(calendar: Calendar, year: int, month: int) -> dict[str, Any]:
    """One month of ``calendar`` as JSON-ready data (dates in ISO form)."""
    first = date(year, month, 1)
    after = date(year + month // 12, month % 12 + 1, 1)
    working_days = 0
    holidays: list[str] = []
    moved: list[str] = []
    changed: list[dict[str, Any]] = []
    day = first
    while day < after:
        hours = _hours_of(calendar, day)
        weekly = calendar.week[day.weekday()] if not calendar.always_open else hours
        working_days += bool(hours)
        if weekly and not hours:
            holidays.append(day.isoformat())
        elif hours and not weekly:
            moved.append(day.isoformat())
        elif hours != weekly:
            changed.append({"date": day.isoformat(), "hours": [_interval(iv) for iv in hours]})
        day += timedelta(days=1)
    zone = ZoneInfo(calendar.timezone)
    minutes = business_hours.business_minutes_between(
        calendar, datetime.combine(first, time(0), zone), datetime.combine(after, time(0), zone)
    )
    return {
        "month": f"{year}-{month:02d}",
        "working_days": working_days,
        "working_hours": minutes // 60 if minutes % 60 == 0 else round(minutes / 60, 2),
        "holidays": holidays,
        "moved_working_days": moved,
        "changed_hours": changed,
    }


def year_summary(calendar: Calendar, year: int) -> list[dict[str, Any]]:
    """The twelve months of :func:`month_summary`."""
    return [month_summary(calendar, year, month) for month in range(1, 13)]


def _hours_of(calendar: Calendar, day: date) -> tuple[Interval, ...]:
    """A date's working intervals; a 24/7 calendar works the whole day."""
    if calendar.always_open:
        return (Interval(time(0), time(0)),)
    return business_hours.day_hours(calendar, day)


def _interval(interval: Interval) -> str:
    end = "24:00" if interval.end == time(0) else f"{interval.end:%H:%M}"
    return f"{interval.start:%H:%M}-{end}"


def format_year(calendar: Calendar, year: int, months: list[dict[str, Any]]) -> str:
    """The text of ``calendar show``: a header, one line per month, the year's totals."""
    source = (
        f"; production calendar {calendar.country} from holidays "
        f"{production_calendar.package_version()}"
        if calendar.country
        else ""
    )
    lines = [
        f"{calendar.id} {year} ({calendar.timezone}{'; 24/7' if calendar.always_open else ''}"
        f"{source})",
        f"{'month':<8} {'days':>5} {'hours':>7}  days off, worked days, other hours",
    ]
    for m in months:
        notes = []
        if m["holidays"]:
            notes.append("off " + ", ".join(_day_numbers(m["holidays"])))
        if m["moved_working_days"]:
            notes.append("worked " + ", ".join(_day_numbers(m["moved_working_days"])))
        for change in m["changed_hours"]:
            hours = ", ".join(change["hours"]) or "off"
            notes.append(f"hours {int(change['date'][8:])} {hours}")
        line = f"{m['month']:<8} {m['working_days']:>5} {m['working_hours']:>7}  {'; '.join(notes)}"
        lines.append(line.rstrip())
    total_hours = sum(m["working_hours"] for m in months)
    total = round(total_hours, 2) if isinstance(total_hours, float) else total_hours
    lines.append(f"{'total':<8} {sum(m['working_days'] for m in months):>5} {total:>7}")
    return "\n".join(lines) + "\n"


def _day_numbers(days: list[str]) -> list[str]:
    return [str(int(day[8:])) for day in days]


def cmd_calendar_show(args: argparse.Namespace) -> int:
    """Print one calendar's year per month (text, or ``--json``)."""
    cfg = common.load_config(args)
    calendar = cfg.calendars.get(args.name)
    if calendar is None:
        known = ", ".join(sorted(cfg.calendars)) or "none"
        raise NotFound(f"no calendar {args.name!r} in {args.config} (calendars: {known})")
    year = args.year or common.utc_now().astimezone(ZoneInfo(calendar.timezone)).year
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise MailticketError(f"--year must be between {FIRST_YEAR} and {LAST_YEAR}, not {year}")
    country = calendar.country
    if country is not None and production_calendar.decree_missing(country, year):
        print(
            f"warning: holidays {production_calendar.package_version()} has no {country} decree "
            f"of moved days off for {year}: weekend holidays are not moved and no Saturday is "
            "worked, so the figures below may differ from the official calendar",
            file=sys.stderr,
        )
    months = year_summary(calendar, year)
    if args.json:
        print(json.dumps(months, ensure_ascii=False, indent=2))
    else:
        print(format_year(calendar, year, months), end="")
    return 0


def register(sub: Any) -> None:
    """Add ``calendar show`` to the main parser's sub-commands."""
    cal = sub.add_parser("calendar", help="working-time calendars").add_subparsers(
        dest="cal_cmd", required=True
    )
    p = cal.add_parser("show", help="a calendar's working days and hours per month of a year")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.add_argument("name", help="calendar id, as in [calendars.NAME]")
    p.add_argument("--year", type=int, help="default: the current year")
    p.add_argument("--json", action="store_true", help="a list of twelve months")
    p.set_defaults(func=cmd_calendar_show)
