"""Validate business calendars and SLA plans, the config sections the SLA clock runs on.

A calendar names its country here; ``sla.business_hours`` looks the national
production calendar (moved days off and worked Saturdays) up for whichever year
it needs, so no fixed window of years is merged at load time. This module also
warns when the installed ``holidays`` package lacks a decree the clock will need.
"""

from __future__ import annotations

import difflib
import enum
import itertools
import re
import zoneinfo
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any, TypeVar

from mailticket.config.locate import Key
from mailticket.config.read import (
    ID,
    ID_REASON,
    Problems,
    as_table,
    check_keys,
    describe,
    get_value,
    read_addresses,
    unknown_reference,
)
from mailticket.config.settings import WEEKDAYS, OncallConfig, ReportsConfig, parse_duration
from mailticket.model import (
    Calendar,
    Interval,
    PauseRule,
    Priority,
    PriorityChangeRule,
    PriorityTargets,
    SlaPlan,
)
from mailticket.sla import production_calendar

_CALENDAR_KEYS = (
    "timezone",
    *WEEKDAYS,
    "holidays",
    "extra_working_days",
    "extra_day_hours",
    "always_open",
    "country",
    "days",
)
# Decrees of next year's moved days are signed in August–October. Warning about a
# missing one earlier would warn most of the year about what nobody can fix yet;
# from October on there is still time to upgrade before deadlines cross New Year.
NEXT_YEAR_DECREE_MONTH = 10
_INTERVAL = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


def read_calendars(p: Problems, table: dict[str, Any]) -> dict[str, Calendar]:
    """``[calendars.ID]`` tables."""
    out: dict[str, Calendar] = {}
    for cid, raw in table.items():
        path: Key = ("calendars", cid)
        body = as_table(p, raw, path)
        if body is None:
            continue
        if not ID.fullmatch(cid):
            p.add(path, f"calendar id {ID_REASON}")
        calendar = _read_calendar(p, cid, body, path)
        if calendar is not None:
            out[cid] = calendar
    return out


def calendar_warnings(w: Problems, calendars: Mapping[str, Calendar], today: date) -> None:
    """Warn about each calendar whose national calendar lacks a decree deadlines will need.

    This year's decree is always needed; next year's from ``NEXT_YEAR_DECREE_MONTH``
    on. Which countries need one and whether the installed ``holidays`` package
    has it is :func:`~mailticket.sla.production_calendar.decree_missing`'s call.
    """
    years = [today.year] + ([today.year + 1] if today.month >= NEXT_YEAR_DECREE_MONTH else [])
    for cid, calendar in calendars.items():
        if calendar.country is None:
            continue
        missing = [y for y in years if production_calendar.decree_missing(calendar.country, y)]
        if missing:
            w.add(
                ("calendars", cid, "country"),
                f"holidays {production_calendar.package_version()} has no {calendar.country} "
                f"decree of moved days off for {', '.join(map(str, missing))}: weekend holidays "
                "are not moved and no Saturday is worked; upgrade the holidays package (or "
                f"list that year's days in holidays, extra_working_days or [calendars.{cid}.days])",
            )


def _read_calendar(p: Problems, cid: str, table: dict[str, Any], path: Key) -> Calendar | None:
    """One calendar; its national production calendar is looked up per year when used."""
    before = len(p.items)
    check_keys(p, table, path, _CALENDAR_KEYS)
    always_open: bool = get_value(p, table, path, "always_open", bool, False)
    timezone: str | None = get_value(p, table, path, "timezone", str)
    if timezone is None:
        if not always_open and "timezone" not in table:
            p.add((*path, "timezone"), "missing required key (a time zone such as Europe/Moscow)")
        timezone = "UTC"
    elif (problem := timezone_problem(timezone)) is not None:
        p.add((*path, "timezone"), problem)
    week = tuple(_intervals(p, table.get(day, []), (*path, day)) for day in WEEKDAYS)
    extra_hours = _intervals(p, table.get("extra_day_hours", []), (*path, "extra_day_hours"))
    own_off = _dates(p, table.get("holidays", []), (*path, "holidays"))
    own_worked = _dates(p, table.get("extra_working_days", []), (*path, "extra_working_days"))
    for day in sorted(own_off & own_worked):
        p.add((*path, "extra_working_days"), f"{day} is also listed in holidays")
    dated = _dated_hours(p, table.get("days", {}), (*path, "days"))
    for day, (_, key) in sorted(dated.items()):
        for name, listed in (("holidays", own_off), ("extra_working_days", own_worked)):
            if day in listed:
                p.add((*path, "days", key), f"{day} is also listed in {name}; give it in one place")
    country: str | None = get_value(p, table, path, "country", str)
    if country is not None:
        country = country.strip().upper()
        if not production_calendar.is_supported(country):
            p.add(
                (*path, "country"),
                f"no national calendar for country {country!r}; use a code such as RU",
            )
    if always_open and any(week):
        p.add((*path, "always_open"), "cannot be combined with weekly hours (mon…sun)")
    if always_open:
        for key in ("country", "holidays", "extra_working_days", "extra_day_hours", "days"):
            if table.get(key):
                p.add((*path, key), "cannot be combined with always_open: every minute counts")
    if not always_open and not any(week):
        p.add(path, "no working hours: give intervals for mon…sun or set always_open = true")
    if own_worked and not always_open and not extra_hours and not week[0]:
        p.add(
            (*path, "extra_day_hours"), "required for extra_working_days because mon has no hours"
        )
    if len(p.items) > before:
        return None
    # The admin's own lists win over the national calendar in both directions;
    # business_hours applies them in that order.
    return Calendar(
        id=cid,
        timezone=timezone,
        week=week,
        holidays=own_off,
        extra_working_days=own_worked,
        extra_day_hours=extra_hours,
        always_open=always_open,
        country=country,
        days={day: hours for day, (hours, _) in dated.items()},
    )


def timezone_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone, or None."""
    try:
        zoneinfo.ZoneInfo(name)
        return None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(name, sorted(zoneinfo.available_timezones()), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"time zone {name!r} not found{hint}"


def _intervals(p: Problems, raw: object, path: Key) -> tuple[Interval, ...]:
    """Parse ``["08:00-12:00", "13:00-20:00"]``: well-formed, non-empty, not overlapping."""
    if not isinstance(raw, list):
        p.add(path, f'expected a list like ["08:00-20:00"], got {describe(raw)}')
        return ()
    found: list[tuple[time, time, int]] = []
    for index, item in enumerate(raw):
        match = _INTERVAL.fullmatch(item.strip()) if isinstance(item, str) else None
        if match is None:
            p.add((*path, index), f"expected an interval like 08:00-20:00, got {describe(item)}")
            continue
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if (h2, m2) == (24, 0):
            p.add(
                (*path, index), "24:00 is not a time of day; end at 23:59 or set always_open = true"
            )
            continue
        if max(h1, h2) > 23 or max(m1, m2) > 59:
            p.add((*path, index), f"invalid time in interval {item!r}")
            continue
        start, end = time(h1, m1), time(h2, m2)
        text = f"{start:%H:%M}-{end:%H:%M}"
        if end < start:
            p.add(
                (*path, index),
                f"interval {text} ends before it starts (split a night shift at midnight)",
            )
        elif end == start:
            p.add((*path, index), f"interval {text} is empty")
        else:
            found.append((start, end, index))
    found.sort()
    for (s1, e1, _), (s2, e2, index) in itertools.pairwise(found):
        if s2 < e1:
            p.add(
                (*path, index),
                f"intervals {s1:%H:%M}-{e1:%H:%M} and {s2:%H:%M}-{e2:%H:%M} overlap",
            )
    return tuple(Interval(start, end) for start, end, _ in found)


def _dated_hours(
    p: Problems, raw: object, path: Key
) -> dict[date, tuple[tuple[Interval, ...], str]]:
    """``[calendars.ID.days]``: ``"2026-04-30" = ["08:00-19:00"]``; ``[]`` is a day off.

    Each date maps to its hours and the key as written, so a later problem can name it.
    """
    if not isinstance(raw, dict):
        example = '{ "2026-04-30" = ["08:00-19:00"] }'
        p.add(path, f"expected a table like {example}, got {describe(raw)}")
        return {}
    out: dict[date, tuple[tuple[Interval, ...], str]] = {}
    for key, value in raw.items():
        day = _as_date(key)
        if day is None:
            p.add((*path, key), f"expected a date like 2026-04-30 as the key, got {key!r}")
            continue
        if day in out:
            p.add((*path, key), f"{day} is given twice (also as {out[day][1]!r})")
            continue
        out[day] = (_intervals(p, value, (*path, key)), key)
    return out


def _dates(p: Problems, raw: object, path: Key) -> frozenset[date]:
    if not isinstance(raw, list):
        p.add(path, f"expected a list of dates like [2025-12-31], got {describe(raw)}")
        return frozenset()
    out = set()
    for index, item in enumerate(raw):
        day = _as_date(item)
        if day is None:
            p.add((*path, index), f"expected a date like 2025-12-31, got {describe(item)}")
        else:
            out.add(day)
    return frozenset(out)


def _as_date(item: object) -> date | None:
    """A TOML date (``2025-12-31``) or the same as a string; not a date-time."""
    if isinstance(item, datetime):
        return None
    if isinstance(item, date):
        return item
    if isinstance(item, str):
        try:
            return date.fromisoformat(item.strip())
        except ValueError:
            return None
    return None


_PLAN_KEYS = ("name", "warn_ratio", "calendar", "priority_change", "pause_on",
              *(priority.value for priority in Priority))
_TARGET_KEYS = ("first_response", "resolution", "next_response", "calendar")
_DURATION_HINT = "expected a duration like 30m, 4h, 2d"


def read_plans(p: Problems, table: dict[str, Any], calendar_ids: set[str]) -> dict[str, SlaPlan]:
    """``[sla_plans.ID]`` tables, each with all four priorities."""
    out: dict[str, SlaPlan] = {}
    for pid, raw in table.items():
        path: Key = ("sla_plans", pid)
        body = as_table(p, raw, path)
        if body is None:
            continue
        before = len(p.items)
        if not ID.fullmatch(pid):
            p.add(path, f"plan id {ID_REASON}")
        check_keys(p, body, path, _PLAN_KEYS)
        name: str = get_value(p, body, path, "name", str, pid)
        warn_ratio: float = get_value(p, body, path, "warn_ratio", float, 0.75)
        if not 0 < warn_ratio < 1:
            p.add((*path, "warn_ratio"), "must be between 0 and 1, such as 0.75")
        default: str | None = get_value(p, body, path, "calendar", str)
        if default is not None and default not in calendar_ids:
            p.add(
                (*path, "calendar"),
                unknown_reference("calendar", default, calendar_ids, "calendars"),
            )
        targets: dict[Priority, PriorityTargets] = {}
        for priority in Priority:
            sub_path = (*path, priority.value)
            if priority.value not in body:
                p.add(sub_path, f"missing; every plan needs {', '.join(Priority)}")
                continue
            sub = as_table(p, body[priority.value], sub_path)
            target = sub and _read_target(p, sub, sub_path, default, calendar_ids)
            if target:
                targets[priority] = target
        change = _choice(p, body, path, "priority_change", PriorityChangeRule)
        pause_on = _choice(p, body, path, "pause_on", PauseRule)
        if len(p.items) == before:
            out[pid] = SlaPlan(id=pid, name=name, targets=targets, warn_ratio=warn_ratio,
                               priority_change=change or PriorityChangeRule.FROM_START,
                               pause_on=pause_on or PauseRule.QUESTION)
    return out


_E = TypeVar("_E", bound=enum.StrEnum)


def _choice(
    p: Problems, table: dict[str, Any], path: Key, key: str, kind: type[_E]
) -> _E | None:
    """An optional key whose value is one of ``kind``'s values; None when absent or wrong."""
    value: str | None = get_value(p, table, path, key, str)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        p.add((*path, key), f"must be one of {', '.join(repr(str(m)) for m in kind)}, not {value!r}")
        return None


def _read_target(
    p: Problems, table: dict[str, Any], path: Key, default: str | None, calendar_ids: set[str]
) -> PriorityTargets | None:
    """One priority's targets; its calendar may come from the plan."""
    check_keys(p, table, path, _TARGET_KEYS)
    first = _duration(p, table, path, "first_response", required=True)
    resolution = _duration(p, table, path, "resolution", required=True)
    next_response = _duration(p, table, path, "next_response", required=False)
    if first and resolution and first > resolution:
        p.add(
            (*path, "first_response"), f"is longer than resolution ({first} > {resolution} minutes)"
        )
    calendar: str | None = get_value(p, table, path, "calendar", str)
    if calendar is None and "calendar" not in table:
        calendar = default
        if calendar is None:
            p.add((*path, "calendar"), "missing required key (or set calendar on the plan)")
    elif calendar is not None and calendar not in calendar_ids:
        p.add(
            (*path, "calendar"), unknown_reference("calendar", calendar, calendar_ids, "calendars")
        )
    if first is None or resolution is None or calendar is None:
        return None
    return PriorityTargets(
        first_response_minutes=first,
        resolution_minutes=resolution,
        calendar=calendar,
        next_response_minutes=next_response,
    )


def _duration(
    p: Problems, table: dict[str, Any], path: Key, key: str, required: bool
) -> int | None:
    """A positive duration in minutes, or None after reporting why not."""
    if key not in table:
        if required:
            p.add((*path, key), "missing required key")
        return None
    minutes = parse_duration(table[key])
    if minutes is None:
        p.add((*path, key), f"{_DURATION_HINT}, got {describe(table[key])}")
        return None
    if minutes <= 0:
        p.add((*path, key), "must be longer than 0")
        return None
    return minutes


_ONCALL_KEYS = ("rota", "start", "handover", "timezone")
_REPORTS_KEYS = ("monthly", "day", "time", "timezone", "recipients", "incident_recipients")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")


def _clock_time(p: Problems, table: dict[str, Any], path: Key, key: str, default: time) -> time:
    """A local time of day written ``"10:00"`` (or a TOML local time)."""
    raw = table.get(key)
    if raw is None:
        return default
    if isinstance(raw, time):
        return raw
    match = _CLOCK.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        p.add((*path, key), f'expected a time of day like "10:00", got {describe(raw)}')
        return default
    return time(int(match.group(1)), int(match.group(2)))


def _zone(p: Problems, table: dict[str, Any], path: Key) -> str:
    zone: str = get_value(p, table, path, "timezone", str, "Europe/Moscow")
    if (problem := timezone_problem(zone)) is not None:
        p.add((*path, "timezone"), problem)
        return "UTC"
    return zone


def read_oncall(p: Problems, table: dict[str, Any], engineer_ids: set[str]) -> OncallConfig:
    """``[oncall]``: ``rota`` is a list of pairs of engineer addresses, one pair per week."""
    path: Key = ("oncall",)
    check_keys(p, table, path, _ONCALL_KEYS)
    rota: list[tuple[str, ...]] = []
    raw = table.get("rota", [])
    if not isinstance(raw, list):
        hint = 'expected a list of pairs like [["a@x", "b@x"]]'
        p.add((*path, "rota"), f"{hint}, got {describe(raw)}")
        raw = []
    for index, pair in enumerate(raw):
        where = (*path, "rota", index)
        strings = isinstance(pair, list) and all(isinstance(a, str) for a in pair)
        if not strings or len(pair) != 2:
            p.add(where, f"expected a pair of engineer addresses, got {describe(pair)}")
            continue
        members = tuple(a.strip().lower() for a in pair)
        for address in members:
            if address not in engineer_ids:
                p.add(where, unknown_reference("engineer", address, engineer_ids, "engineers"))
        if members[0] == members[1]:
            p.add(where, f"a pair needs two different engineers, got {members[0]} twice")
        rota.append(members)
    start = _as_date(table["start"]) if "start" in table else None
    if "start" in table and start is None:
        p.add((*path, "start"), f"expected a date like 2026-01-05, got {describe(table['start'])}")
    if rota and "start" not in table:
        p.add((*path, "start"), "missing required key (the first day of the rota's first week)")
    handover = _clock_time(p, table, path, "handover", time(10, 0))
    zone = _zone(p, table, path)
    return OncallConfig(rota=tuple(rota), start=start, handover=handover, timezone=zone)


def read_reports(p: Problems, table: dict[str, Any]) -> ReportsConfig:
    """``[reports]``: when the monthly reports go out, and who is copied on reports."""
    path: Key = ("reports",)
    check_keys(p, table, path, _REPORTS_KEYS)
    monthly: bool = get_value(p, table, path, "monthly", bool, False)
    day: int = get_value(p, table, path, "day", int, 1)
    if not 1 <= day <= 28:
        p.add((*path, "day"), "must be between 1 and 28, so every month has it")
        day = 1
    recipients: tuple[str, ...] = get_value(p, table, path, "recipients", tuple[str, ...], ())
    incident: tuple[str, ...] = get_value(
        p, table, path, "incident_recipients", tuple[str, ...], ()
    )
    return ReportsConfig(
        monthly=monthly,
        day=day,
        at=_clock_time(p, table, path, "time", time(9, 0)),
        timezone=_zone(p, table, path),
        recipients=read_addresses(p, recipients, (*path, "recipients")),
        incident_recipients=read_addresses(p, incident, (*path, "incident_recipients")),
    )
