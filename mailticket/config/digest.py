"""``[digest]``: who gets which list by mail, and when (issue 16).

The morning digest is on by default: every engineer gets one at the start of
their working day, counted on one calendar (its time zone, week, national
holidays and moved days), so nobody gets one on a day off. ``at`` moves it
for everyone, ``[digest.engineers."ADDRESS"]`` (hour, on/off, own calendar) for
one engineer; an engineer's
own ``#digest off`` / ``#digest 09:00`` (stored in the database) overrides both.
Kept apart from ``settings`` so the section reads as one unit; it depends on
nothing but the reading helpers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time
from typing import Any

from mailticket.config.locate import Key
from mailticket.config.read import Problems, as_table, check_keys, describe, get_value

_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_KEYS = ("enabled", "calendar", "at", "waiting_days", "engineers", "handover",
         "weekly")
_ENGINEER_KEYS = ("enabled", "at", "calendar")


@dataclass(frozen=True)
class EngineerDigest:
    """One engineer's digest as the admin set it in TOML; None keeps the section's value."""

    enabled: bool | None = None
    at: time | None = None
    # This engineer's working days (another office, another country's holidays).
    calendar: str | None = None


@dataclass(frozen=True)
class DigestConfig:
    """``[digest]``: the morning digest per engineer."""

    enabled: bool = True
    # The calendar whose working days and time zone the digest follows; "" = the first
    # calendar that is not always open.
    calendar: str = ""
    # Local time the digest goes out; None = when the calendar's working day starts.
    at: time | None = None
    # Tickets waiting on the customer longer than this many days get their own section.
    waiting_days: int = 3
    engineers: dict[str, EngineerDigest] = field(default_factory=dict)
    # The on-call handover mail to the incoming pair of the [oncall] rota.
    handover: bool = True
    # The weekly summary of each contract to its dedicated engineer.
    weekly: bool = True


def parse_clock(value: str) -> time | None:
    """``"09:00"`` → 09:00; anything else → None."""
    match = _CLOCK.fullmatch(value.strip())
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        return None
    return time(int(match.group(1)), int(match.group(2)))


def _clock(p: Problems, table: dict[str, Any], path: Key) -> time | None:
    raw = table.get("at")
    if raw is None or isinstance(raw, time):
        return raw
    found = parse_clock(raw) if isinstance(raw, str) else None
    if found is None:
        p.add((*path, "at"), f'expected a time of day like "09:00", got {describe(raw)}')
    return found


def read_digest(p: Problems, table: dict[str, Any], engineer_ids: set[str],
                calendar_ids: set[str]) -> DigestConfig:
    """``[digest]`` with its engineer and calendar references checked."""
    path: Key = ("digest",)
    check_keys(p, table, path, _KEYS)
    calendar: str = get_value(p, table, path, "calendar", str, "")
    if calendar and calendar not in calendar_ids:
        p.add((*path, "calendar"), f"unknown calendar {calendar!r}")
    waiting: int = get_value(p, table, path, "waiting_days", int, 3)
    if waiting < 1:
        p.add((*path, "waiting_days"), "must be at least 1")
        waiting = 3
    people: dict[str, EngineerDigest] = {}
    raw_people = as_table(p, table.get("engineers", {}), (*path, "engineers")) or {}
    for address, raw in raw_people.items():
        where: Key = (*path, "engineers", address)
        entry = as_table(p, raw, where) or {}
        check_keys(p, entry, where, _ENGINEER_KEYS)
        key = address.strip().lower()
        if key not in engineer_ids:
            p.add(where, f"unknown engineer {address!r}")
        own: str | None = get_value(p, entry, where, "calendar", str, None)
        if own is not None and own not in calendar_ids:
            p.add((*where, "calendar"), f"unknown calendar {own!r}")
        people[key] = EngineerDigest(get_value(p, entry, where, "enabled", bool, None),
                                     _clock(p, entry, where), own)
    return DigestConfig(
        enabled=get_value(p, table, path, "enabled", bool, True), calendar=calendar,
        at=_clock(p, table, path), waiting_days=waiting, engineers=people,
        handover=get_value(p, table, path, "handover", bool, True),
        weekly=get_value(p, table, path, "weekly", bool, True),
    )
