"""``[digest]``: who gets which list by mail, and when (issue 16).

The morning digest is on by default: every engineer gets one at the start of
their own working day (their ``[engineers]`` calendar and time zone, else the
section's calendar), so nobody gets one on a day off or a holiday. The admin
sets it from the general to the particular, and the most particular wins:
``[digest]`` for everyone, ``[digest.lines.L3]`` for a line,
``[digest.engineers."ADDRESS"]`` for one engineer; an engineer's own
``#digest off`` / ``#digest 09:00`` (stored in the database) wins over all.

The handover mail and the weekly summaries are routed by a ``to`` list of
roles and addresses: ``"oncall"`` (the incoming pair), ``"dedicated"`` and
``"deputy"`` (a contract's engineers), ``"line:L2"`` (every engineer of a
line) or a plain address such as a duty lead's. ``handover = false`` and
``weekly = false`` remain the short way to turn one off.

Kept apart from ``settings`` so the section reads as one unit; it depends on
nothing but the reading helpers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time
from typing import Any

from mailticket.config.locate import Key
from mailticket.config.read import (
    Problems,
    address_problem,
    as_table,
    check_keys,
    describe,
    get_value,
    unknown_reference,
)
from mailticket.model import Line

_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_KEYS = ("enabled", "calendar", "at", "waiting_days", "lines", "engineers", "handover",
         "weekly")
_PERSON_KEYS = ("enabled", "at")
_ROUTE_KEYS = ("enabled", "to")

# Roles a ``to`` list may name, besides ``line:Lx`` and plain addresses.
ONCALL = "oncall"
DEDICATED = "dedicated"
DEPUTY = "deputy"
LINE_PREFIX = "line:"
HANDOVER_ROLES = (ONCALL,)
WEEKLY_ROLES = (DEDICATED, DEPUTY)


@dataclass(frozen=True)
class EngineerDigest:
    """A morning digest setting for one engineer or one line; None keeps the broader value."""

    enabled: bool | None = None
    at: time | None = None


@dataclass(frozen=True)
class DigestConfig:
    """``[digest]``: the morning digests, the handover mail and the weekly summaries."""

    enabled: bool = True
    # The calendar whose working days and time zone the digest follows for an engineer
    # without their own; "" = the first calendar that is not always open.
    calendar: str = ""
    # Local time the digest goes out; None = when the engineer's working day starts.
    at: time | None = None
    # Tickets waiting on the customer longer than this many days get their own section.
    waiting_days: int = 3
    # Per line ("L1".."L4"), then per engineer address: the admin's narrower settings.
    lines: dict[str, EngineerDigest] = field(default_factory=dict)
    engineers: dict[str, EngineerDigest] = field(default_factory=dict)
    # The on-call handover mail, at each handover of the [oncall] rota.
    handover: bool = True
    handover_to: tuple[str, ...] = (ONCALL,)
    # The weekly summary of each contract.
    weekly: bool = True
    weekly_to: tuple[str, ...] = (DEDICATED,)


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


def _person(p: Problems, raw: object, where: Key) -> EngineerDigest:
    """One ``[digest.lines.X]`` or ``[digest.engineers."X"]`` table."""
    entry = as_table(p, raw, where) or {}
    if "calendar" in entry:
        # The earlier place of an engineer's calendar: say where it lives now.
        p.add((*where, "calendar"), "an engineer's calendar is set on the engineer: "
              '[engineers."ADDRESS"] calendar = "…" (and timezone)')
    check_keys(p, {k: v for k, v in entry.items() if k != "calendar"}, where, _PERSON_KEYS)
    return EngineerDigest(get_value(p, entry, where, "enabled", bool, None),
                          _clock(p, entry, where))


def _people(p: Problems, table: dict[str, Any], path: Key,
            engineer_ids: set[str]) -> dict[str, EngineerDigest]:
    out: dict[str, EngineerDigest] = {}
    raw = as_table(p, table.get("engineers", {}), (*path, "engineers")) or {}
    for address, entry in raw.items():
        where: Key = (*path, "engineers", address)
        key = address.strip().lower()
        if key not in engineer_ids:
            p.add(where, unknown_reference("engineer", address, engineer_ids, "engineers"))
        out[key] = _person(p, entry, where)
    return out


def _lines(p: Problems, table: dict[str, Any], path: Key) -> dict[str, EngineerDigest]:
    out: dict[str, EngineerDigest] = {}
    raw = as_table(p, table.get("lines", {}), (*path, "lines")) or {}
    names = [line.value for line in Line]
    for name, entry in raw.items():
        where: Key = (*path, "lines", name)
        if name.upper() not in names:
            p.add(where, f"unknown line; expected one of {', '.join(names)}")
            continue
        out[name.upper()] = _person(p, entry, where)
    return out


def recipient_problem(item: str, roles: tuple[str, ...]) -> str | None:
    """Why ``item`` is not a role, ``line:Lx`` or an address of a ``to`` list, or None."""
    if item in roles:
        return None
    if item.startswith(LINE_PREFIX):
        line = item.removeprefix(LINE_PREFIX).upper()
        if line in Line.__members__:
            return None
        return f"unknown line {line!r} in {item!r}; expected line:L1 … line:L4"
    if "@" in item:
        return address_problem(item)
    quoted = ", ".join(f'"{r}"' for r in roles)
    return f'expected {quoted}, "line:L1" … "line:L4" or an address, got {item!r}'


def _route(p: Problems, table: dict[str, Any], path: Key, key: str,
           roles: tuple[str, ...], default: tuple[str, ...]) -> tuple[bool, tuple[str, ...]]:
    """``key = false`` or ``[digest.KEY] enabled/to``: whether it goes out, and to whom."""
    raw = table.get(key, True)
    if isinstance(raw, bool):
        return raw, default
    where: Key = (*path, key)
    if not isinstance(raw, dict):
        p.add(where, f"expected true, false or a table, got {describe(raw)}")
        return True, default
    check_keys(p, raw, where, _ROUTE_KEYS)
    enabled: bool = get_value(p, raw, where, "enabled", bool, True)
    given: tuple[str, ...] = get_value(p, raw, where, "to", tuple[str, ...], default)
    out: list[str] = []
    for index, item in enumerate(given):
        norm = item.strip().lower()
        norm = (LINE_PREFIX + norm.removeprefix(LINE_PREFIX).upper()
                if norm.startswith(LINE_PREFIX) else norm)
        problem = recipient_problem(norm, roles)
        if problem is not None:
            p.add((*where, "to", index), problem)
        elif norm not in out:
            out.append(norm)
    if "to" in raw and not given:
        p.add((*where, "to"), "lists nobody; to turn it off write enabled = false")
    return enabled, tuple(out) or default


def read_digest(p: Problems, table: dict[str, Any], engineer_ids: set[str],
                calendar_ids: set[str]) -> DigestConfig:
    """``[digest]`` with its engineer, line and calendar references checked."""
    path: Key = ("digest",)
    check_keys(p, table, path, _KEYS)
    calendar: str = get_value(p, table, path, "calendar", str, "")
    if calendar and calendar not in calendar_ids:
        p.add((*path, "calendar"), unknown_reference("calendar", calendar, calendar_ids,
                                                     "calendars"))
    waiting: int = get_value(p, table, path, "waiting_days", int, 3)
    if waiting < 1:
        p.add((*path, "waiting_days"), "must be at least 1")
        waiting = 3
    handover, handover_to = _route(p, table, path, "handover", HANDOVER_ROLES, (ONCALL,))
    weekly, weekly_to = _route(p, table, path, "weekly", WEEKLY_ROLES, (DEDICATED,))
    return DigestConfig(
        enabled=get_value(p, table, path, "enabled", bool, True), calendar=calendar,
        at=_clock(p, table, path), waiting_days=waiting, lines=_lines(p, table, path),
        engineers=_people(p, table, path, engineer_ids),
        handover=handover, handover_to=handover_to, weekly=weekly, weekly_to=weekly_to,
    )
