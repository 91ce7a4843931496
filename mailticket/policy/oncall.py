"""Who is on call right now: the weekly rota of engineer pairs, read from ``[oncall]``.

Critical tickets page the current pair at any hour (issue 6 §4), so the answer
must not depend on the server's time zone or on a daylight-saving change: a
shift starts at the handover's *wall-clock* time in the rota's zone every
week, and weeks are counted on the local calendar. Pure functions of the
config and ``now``; the scheduler and ``mailticket oncall`` share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from mailticket.config import OncallConfig

_WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Shift:
    """One week of the rota: the pair on call from ``starts_at`` until ``ends_at`` (UTC)."""

    index: int
    pair: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    return now


def _handover(oncall: OncallConfig, day: date) -> datetime:
    """The handover instant on local date ``day``, in UTC.

    A handover inside a spring-forward gap happens at the jump; one inside a fall-back
    fold happens at its first occurrence (``fold=0``), the earlier of the two instants.
    """
    zone = ZoneInfo(oncall.timezone)
    local = datetime.combine(day, oncall.handover, zone)
    # Round-tripping through UTC moves a non-existent wall time to a real instant.
    return local.astimezone(UTC).astimezone(zone).astimezone(UTC)


def week_index(oncall: OncallConfig, now: datetime) -> int | None:
    """The number of whole rota weeks since the first handover (negative before it)."""
    if oncall.start is None or not oncall.rota:
        return None
    zone = ZoneInfo(oncall.timezone)
    local = _aware(now).astimezone(zone)
    days = (local.date() - oncall.start).days
    weeks = days // 7
    # Handover day of the week this local date falls in: before the handover instant
    # the previous pair is still on duty.
    handover_day = oncall.start + timedelta(days=weeks * 7)
    if local.date() == handover_day and now < _handover(oncall, handover_day):
        weeks -= 1
    return weeks


def shift_at(oncall: OncallConfig, now: datetime) -> Shift | None:
    """The shift covering ``now``, or None when no rota is configured."""
    weeks = week_index(oncall, now)
    if weeks is None or oncall.start is None:
        return None
    first_day = oncall.start + timedelta(days=weeks * 7)
    return Shift(
        index=weeks % len(oncall.rota),
        pair=oncall.rota[weeks % len(oncall.rota)],
        starts_at=_handover(oncall, first_day),
        ends_at=_handover(oncall, first_day + _WEEK),
    )


def current_pair(oncall: OncallConfig, now: datetime) -> tuple[str, ...]:
    """The engineers on call at ``now``; empty when no rota is configured."""
    shift = shift_at(oncall, now)
    return shift.pair if shift is not None else ()


def upcoming(oncall: OncallConfig, now: datetime, weeks: int) -> list[Shift]:
    """The current shift and the ones after it, for ``mailticket oncall`` and the docs."""
    shifts: list[Shift] = []
    shift = shift_at(oncall, now)
    while shift is not None and len(shifts) < weeks:
        shifts.append(shift)
        shift = shift_at(oncall, shift.ends_at)
    return shifts
