"""Business-time arithmetic on a :class:`~mailticket.model.Calendar`.

SLA targets are measured in business minutes, so every deadline depends on this module
alone being exact. The rule everything here follows, including on DST change days:

    An instant is working time if and only if its wall-clock reading in the calendar's
    zone falls inside one of the working intervals of its local date.

Consequences worth knowing (and tested):

* A day's interval ``08:00–20:00`` is 12 real hours unless a clock change happens inside
  it; ``01:00–04:00`` is 2 real hours on a spring-forward day in Europe/Berlin (the wall
  clock never shows 02:00–03:00) and 4 real hours on a fall-back day (it shows 02:00–03:00
  twice).
* A non-existent local time (in a spring-forward gap) as an interval bound acts as the
  instant of the jump: ``02:30–05:00`` on 2026-03-29 in Berlin starts at 03:00 CEST.
* An ambiguous local time (in a fall-back fold) is matched on both passes: ``02:30–05:00``
  on 2026-10-25 in Berlin is working from 02:30 to 03:00 CEST, then again from 02:30 CET
  to 05:00 CET. No ``fold`` guessing is needed because we map UTC to wall time, never back.
* An interval ending at ``00:00`` means "until midnight" (24:00), so ``00:00–00:00`` is a
  full day; any other interval with ``end <= start`` is invalid (``ValueError``).
* Holidays and extra working days are local dates. A date in ``extra_working_days`` is a
  working day even if it is also listed in ``holidays`` (the explicit override wins); it
  uses ``extra_day_hours``, or Monday's hours when that is empty.
* A calendar with ``country`` follows that country's production calendar in every year
  (weekday holidays and transferred days off are off, decreed working Saturdays work
  like extra working days); the calendar's own ``holidays`` and ``extra_working_days``
  win over it, and ``days`` (per-date hours, e.g. a shortened pre-holiday day) win over
  everything. Each year's differences from the week are worked out once per calendar
  and kept in ``Calendar.year_memo``, so the hot path is one dict lookup per day.
* ``always_open`` calendars are plain clock arithmetic.

Intervals are half-open ``[start, end)``. All inputs must be aware datetimes; all outputs
are aware UTC. Work is proportional to the number of local days crossed, never to minutes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mailticket.model import Calendar, Interval
from mailticket.sla import production_calendar

Span = tuple[datetime, datetime]

_MIDNIGHT = time(0)
_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)
_MINUTE = timedelta(minutes=1)
_ZERO = timedelta(0)
_FOREVER = datetime.max.replace(tzinfo=UTC)


def _utc(t: datetime, name: str) -> datetime:
    """``t`` in UTC; naive datetimes are a programming error here."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {t!r}")
    return t.astimezone(UTC)


def _offset(tz: ZoneInfo, t: datetime) -> timedelta:
    """The zone's UTC offset at instant ``t``."""
    return t.astimezone(tz).utcoffset() or _ZERO


def day_hours(calendar: Calendar, day: date) -> tuple[Interval, ...]:
    """The working intervals of one local date, after holidays, moved days and dated hours.

    Not meaningful for ``always_open`` calendars, whose every minute counts.
    """
    exceptions = calendar.year_memo.get(day.year)
    if exceptions is None:
        exceptions = _year_exceptions(calendar, day.year)
    hours = exceptions.get(day)
    return calendar.week[day.weekday()] if hours is None else hours



def _year_exceptions(calendar: Calendar, year: int) -> Mapping[date, tuple[Interval, ...]]:
    """Every date of ``year`` whose hours differ from the week, memoised on the calendar.

    Later sources override earlier ones: the national calendar, own holidays, own extra
    working days, then ``days``. A calendar without weekly hours ignores the national
    worked Saturdays, so that only the days it lists itself can work (see
    :func:`_last_possible_day`).
    """
    extra = calendar.extra_day_hours or calendar.week[0]
    table: dict[date, tuple[Interval, ...]] = {}
    if calendar.country is not None:
        national = production_calendar.national_year(calendar.country, year)
        table.update(dict.fromkeys(national.days_off, ()))
        if any(calendar.week):
            table.update(dict.fromkeys(national.worked, extra))
    table.update((d, ()) for d in calendar.holidays if d.year == year)
    table.update((d, extra) for d in calendar.extra_working_days if d.year == year)
    table.update((d, hours) for d, hours in calendar.days.items() if d.year == year)
    # Two threads may build the same year at once; both results are equal.
    calendar.year_memo[year] = table
    return table


def _wall_span(day: date, interval: Interval) -> tuple[datetime, datetime]:
    """Naive wall-clock bounds of ``interval`` on ``day``; an ``00:00`` end means midnight."""
    start = datetime.combine(day, interval.start)
    if interval.end == _MIDNIGHT:
        end = datetime.combine(day + _DAY, _MIDNIGHT)
    else:
        end = datetime.combine(day, interval.end)
    if end <= start:
        raise ValueError(f"working interval {interval.start}–{interval.end} ends before it starts")
    return start, end


def _segments(
    tz: ZoneInfo, lo: datetime, hi: datetime
) -> Iterator[tuple[datetime, datetime, timedelta]]:
    """Split ``[lo, hi)`` into runs of constant UTC offset.

    zoneinfo has no public list of transitions, so a change is found by bisection to the
    microsecond. It assumes two changes within one local day never cancel out, which holds
    for every zone in the tz database since 1970.
    """
    while True:
        first = _offset(tz, lo)
        if _offset(tz, hi - _TICK) == first:
            yield lo, hi, first
            return
        # Invariant: the offset at ``a`` is ``first`` and at ``b`` it is not.
        a, b = lo, hi - _TICK
        while b - a > _TICK:
            mid = a + (b - a) // 2
            if _offset(tz, mid) == first:
                a = mid
            else:
                b = mid
        yield lo, b, first
        lo = b


def _clip(calendar: Calendar, lo: datetime, hi: datetime, offset: timedelta) -> Iterator[Span]:
    """Working pieces inside the constant-offset UTC run ``[lo, hi)``."""
    wall_lo = (lo + offset).replace(tzinfo=None)
    wall_hi = (hi + offset).replace(tzinfo=None)
    day, last = wall_lo.date(), (wall_hi - _TICK).date()
    while day <= last:
        for interval in sorted(day_hours(calendar, day), key=lambda iv: iv.start):
            start, end = _wall_span(day, interval)
            start, end = max(start, wall_lo), min(end, wall_hi)
            if start < end:
                yield (start - offset).replace(tzinfo=UTC), (end - offset).replace(tzinfo=UTC)
        day += _DAY


def _fast_day(
    calendar: Calendar, day: date, offset: timedelta, lo: datetime, hi: datetime
) -> list[Span]:
    """Working pieces of local ``day`` within ``[lo, hi)`` when its offset is constant.

    This is the common case and avoids the naive/aware round trips of :func:`_clip`.
    """
    hours = day_hours(calendar, day)
    if len(hours) > 1:
        hours = tuple(sorted(hours, key=lambda iv: iv.start))
    pieces: list[Span] = []
    for interval in hours:
        start = datetime.combine(day, interval.start, UTC) - offset
        if interval.end == _MIDNIGHT:
            end = datetime.combine(day + _DAY, _MIDNIGHT, UTC) - offset
        else:
            end = datetime.combine(day, interval.end, UTC) - offset
        if end <= start:
            raise ValueError(
                f"working interval {interval.start}–{interval.end} ends before it starts"
            )
        start, end = max(start, lo), min(end, hi)
        if start < end:
            pieces.append((start, end))
    return pieces


def _merge(pieces: list[Span]) -> list[Span]:
    """Join touching or overlapping pieces (sorted by start)."""
    merged: list[Span] = []
    for start, end in pieces:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _last_possible_day(calendar: Calendar) -> date | None:
    """The last local date that can have working time, or None if there is no such limit."""
    if any(calendar.week):
        return None
    listed = [day for day, hours in calendar.days.items() if hours]
    if calendar.extra_day_hours:
        listed.extend(d for d in calendar.extra_working_days if d not in calendar.days)
    return max(listed, default=date.min)


def working_intervals(
    calendar: Calendar, start: datetime, end: datetime | None = None
) -> Iterator[Span]:
    """Yield the working pieces of ``[start, end)`` in UTC, in order (``end=None``: forever).

    Pieces are non-empty, disjoint and clipped to the window. Pieces of one local day are
    merged; pieces of consecutive days may touch (a 24/7 local calendar yields one per day).
    Open-ended iteration raises ``ValueError`` once the calendar can have no more working
    time (an empty week and no extra working day left).
    """
    if len(calendar.week) != 7:
        raise ValueError(f"calendar {calendar.id!r}: week must have 7 days")
    lo = _utc(start, "start")
    stop = _FOREVER if end is None else _utc(end, "end")
    if lo >= stop:
        return
    if calendar.always_open:
        yield lo, stop
        return
    tz = ZoneInfo(calendar.timezone)
    # Without weekly hours only the listed extra days can work; past the last one nothing
    # can, and an open-ended search would never end.
    last_day = _last_possible_day(calendar)
    day = lo.astimezone(tz).date()
    day_offset = datetime.combine(day, _MIDNIGHT, tz).utcoffset() or _ZERO
    while lo < stop:
        if end is None and last_day is not None and day > last_day:
            raise ValueError(f"calendar {calendar.id!r} has no working time after {lo.isoformat()}")
        # Local midnights bound the chunks: a working day stays in one chunk, so its pieces
        # merge. Any increasing instants would be correct, so a midnight that falls in a
        # gap or fold (fold=0 here) does no harm.
        next_offset = datetime.combine(day + _DAY, _MIDNIGHT, tz).utcoffset() or _ZERO
        next_midnight = datetime.combine(day + _DAY, _MIDNIGHT, UTC) - next_offset
        hi = min(next_midnight, stop)
        if hi > lo:
            if next_offset == day_offset:
                pieces = _fast_day(calendar, day, next_offset, lo, hi)
            else:
                pieces = []
                for seg_lo, seg_hi, offset in _segments(tz, lo, hi):
                    pieces.extend(_clip(calendar, seg_lo, seg_hi, offset))
            yield from _merge(pieces) if len(pieces) > 1 else pieces
            lo = hi
        day += _DAY
        day_offset = next_offset


def add_business_time(calendar: Calendar, start: datetime, duration: timedelta) -> datetime:
    """The instant at which ``duration`` of business time has passed since ``start``.

    Zero returns ``start`` itself. Otherwise the result is inside a working piece or at its
    end (so 10 minutes before closing plus 10 minutes is closing time, not next morning).
    """
    if duration < _ZERO:
        raise ValueError(f"duration must not be negative, got {duration}")
    begin = _utc(start, "start")
    if duration == _ZERO:
        return begin
    remaining = duration
    for piece_start, piece_end in working_intervals(calendar, begin):
        if piece_end - piece_start >= remaining:
            return piece_start + remaining
        remaining -= piece_end - piece_start
    raise AssertionError("unreachable: open-ended working_intervals ended")  # pragma: no cover


def business_time_between(calendar: Calendar, a: datetime, b: datetime) -> timedelta:
    """Business time in ``[a, b)``; zero when ``b <= a``."""
    total = _ZERO
    for piece_start, piece_end in working_intervals(calendar, a, b):
        total += piece_end - piece_start
    return total


def add_business_minutes(calendar: Calendar, start: datetime, minutes: int) -> datetime:
    """``start`` plus ``minutes`` business minutes (see :func:`add_business_time`)."""
    return add_business_time(calendar, start, timedelta(minutes=minutes))


def business_minutes_between(calendar: Calendar, a: datetime, b: datetime) -> int:
    """Whole business minutes in ``[a, b)``, rounded down; 0 when ``b <= a``."""
    return business_time_between(calendar, a, b) // _MINUTE


def is_working_time(calendar: Calendar, t: datetime) -> bool:
    """Whether the instant ``t`` is working time."""
    moment = _utc(t, "t")
    return next(working_intervals(calendar, moment, moment + _TICK), None) is not None


def next_working_time(calendar: Calendar, t: datetime) -> datetime:
    """``t`` itself if it is working time, else the start of the next working piece."""
    return next(working_intervals(calendar, t))[0]
