"""Business-time arithmetic: nights, weekends, holidays, moved working days, DST, properties.

Also the order of a date's sources: dated hours, own extra working days, own holidays,
the national production calendar (any year, memoised per calendar), the week.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailticket.model import Calendar, Interval
from mailticket.sla.business_hours import (
    add_business_minutes,
    add_business_time,
    business_minutes_between,
    business_time_between,
    day_hours,
    is_working_time,
    next_working_time,
    working_intervals,
)
from mailticket.sla.production_calendar import national_year

MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")


def iv(start: str, end: str) -> Interval:
    return Interval(time.fromisoformat(start), time.fromisoformat(end))


def weekdays(*hours: Interval, days: range = range(5)) -> tuple[tuple[Interval, ...], ...]:
    return tuple(hours if day in days else () for day in range(7))


def msk(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=MSK)


def berlin(y: int, mo: int, d: int, h: int = 0, mi: int = 0, *, fold: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=BERLIN, fold=fold)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


BIZ = Calendar("biz", "Europe/Moscow", weekdays(iv("08:00", "20:00")))
SPLIT = Calendar("split", "Europe/Moscow", weekdays(iv("09:00", "13:00"), iv("14:00", "18:00")))
ALWAYS = Calendar("247", "Europe/Moscow", weekdays(), always_open=True)
# Russia 2025: Saturday 1 November was worked (a short day) and its day off moved to Monday
# 3 November, next to Unity Day on 4 November.
RU_2025 = Calendar(
    "ru",
    "Europe/Moscow",
    weekdays(iv("09:00", "18:00")),
    holidays=frozenset({date(2025, 11, 3), date(2025, 11, 4)}),
    extra_working_days=frozenset({date(2025, 11, 1)}),
    extra_day_hours=(iv("09:00", "17:00"),),
)
NEW_YEAR = Calendar(
    "ny",
    "Europe/Moscow",
    weekdays(iv("08:00", "20:00")),
    holidays=frozenset(date(2026, 1, day) for day in range(1, 12)),
)
NIGHT_BERLIN = Calendar("night", "Europe/Berlin", weekdays(iv("01:00", "04:00"), days=range(7)))
LATE_BERLIN = Calendar("late", "Europe/Berlin", weekdays(iv("02:30", "05:00"), days=range(7)))
LOCAL_247_BERLIN = Calendar("l247", "Europe/Berlin", weekdays(iv("00:00", "00:00"), days=range(7)))
DAY_BERLIN = Calendar("day", "Europe/Berlin", weekdays(iv("08:00", "20:00"), days=range(7)))


# --- nights, weekends, several intervals ----------------------------------------------


def test_add_across_a_night() -> None:
    assert add_business_minutes(BIZ, msk(2026, 10, 13, 19, 0), 120) == msk(2026, 10, 14, 9, 0)


def test_add_across_a_weekend_friday_evening() -> None:
    friday = msk(2026, 10, 16, 19, 50)
    assert add_business_minutes(BIZ, friday, 10) == msk(2026, 10, 16, 20, 0)
    assert add_business_minutes(BIZ, friday, 11) == msk(2026, 10, 19, 8, 1)
    assert add_business_minutes(BIZ, friday, 30) == msk(2026, 10, 19, 8, 20)
    assert business_minutes_between(BIZ, friday, msk(2026, 10, 19, 8, 20)) == 30


def test_results_are_utc() -> None:
    result = add_business_minutes(BIZ, msk(2026, 10, 16, 19, 50), 30)
    assert result.tzinfo is UTC
    assert result == utc(2026, 10, 19, 5, 20)


def test_start_outside_hours_counts_from_opening() -> None:
    saturday = msk(2026, 10, 17, 12, 0)
    assert add_business_minutes(BIZ, saturday, 60) == msk(2026, 10, 19, 9, 0)
    assert business_minutes_between(BIZ, saturday, msk(2026, 10, 19, 8, 0)) == 0


def test_zero_minutes_is_the_start_itself() -> None:
    saturday = msk(2026, 10, 17, 12, 0)
    assert add_business_minutes(BIZ, saturday, 0) == saturday


def test_several_intervals_per_day() -> None:
    monday = msk(2026, 10, 19, 9, 0)
    assert add_business_minutes(SPLIT, monday, 240) == msk(2026, 10, 19, 13, 0)
    assert add_business_minutes(SPLIT, monday, 241) == msk(2026, 10, 19, 14, 1)
    assert add_business_minutes(SPLIT, monday, 8 * 60 + 1) == msk(2026, 10, 20, 9, 1)
    assert (
        business_minutes_between(SPLIT, msk(2026, 10, 19, 12, 30), msk(2026, 10, 19, 14, 30)) == 60
    )
    assert list(working_intervals(SPLIT, msk(2026, 10, 19, 0, 0), msk(2026, 10, 20, 0, 0))) == [
        (utc(2026, 10, 19, 6, 0), utc(2026, 10, 19, 10, 0)),
        (utc(2026, 10, 19, 11, 0), utc(2026, 10, 19, 15, 0)),
    ]


def test_touching_intervals_merge() -> None:
    calendar = Calendar(
        "touch", "Europe/Moscow", weekdays(iv("13:00", "18:00"), iv("09:00", "13:00"))
    )
    assert list(working_intervals(calendar, msk(2026, 10, 19, 0, 0), msk(2026, 10, 20, 0, 0))) == [
        (utc(2026, 10, 19, 6, 0), utc(2026, 10, 19, 15, 0)),
    ]


def test_between_floors_partial_minutes_and_is_zero_backwards() -> None:
    a = msk(2026, 10, 19, 10, 0)
    assert business_minutes_between(BIZ, a, a + timedelta(seconds=119)) == 1
    assert business_minutes_between(BIZ, a, a - timedelta(hours=1)) == 0
    assert business_time_between(BIZ, a, a + timedelta(seconds=90)) == timedelta(seconds=90)


def test_is_working_time_is_half_open() -> None:
    assert is_working_time(BIZ, msk(2026, 10, 19, 8, 0))
    assert is_working_time(BIZ, msk(2026, 10, 19, 19, 59, 59))
    assert not is_working_time(BIZ, msk(2026, 10, 19, 20, 0))
    assert not is_working_time(BIZ, msk(2026, 10, 18, 12, 0))


def test_next_working_time() -> None:
    assert next_working_time(BIZ, msk(2026, 10, 17, 12, 0)) == msk(2026, 10, 19, 8, 0)
    assert next_working_time(BIZ, msk(2026, 10, 19, 20, 0)) == msk(2026, 10, 20, 8, 0)
    inside = msk(2026, 10, 19, 10, 17, 3)
    assert next_working_time(BIZ, inside) == inside


# --- holidays and moved working days -------------------------------------------------


def test_moved_working_saturday_russia_2025() -> None:
    friday = msk(2025, 10, 31, 17, 0)
    # One hour on Friday, then the worked Saturday with its short hours.
    assert add_business_minutes(RU_2025, friday, 120) == msk(2025, 11, 1, 10, 0)
    assert is_working_time(RU_2025, msk(2025, 11, 1, 16, 59))
    assert not is_working_time(RU_2025, msk(2025, 11, 1, 17, 0))
    # Sunday, the moved day off (Monday) and Unity Day (Tuesday) are skipped.
    assert add_business_minutes(RU_2025, friday, 60 + 8 * 60 + 30) == msk(2025, 11, 5, 9, 30)
    assert business_minutes_between(RU_2025, msk(2025, 11, 1, 0, 0), msk(2025, 11, 5, 0, 0)) == 480
    assert next_working_time(RU_2025, msk(2025, 11, 1, 17, 0)) == msk(2025, 11, 5, 9, 0)


def test_extra_working_day_without_own_hours_uses_monday() -> None:
    calendar = Calendar(
        "x",
        "Europe/Moscow",
        weekdays(iv("10:00", "12:00"), days=range(1)),
        extra_working_days=frozenset({date(2025, 11, 1)}),
    )
    assert list(working_intervals(calendar, msk(2025, 11, 1, 0, 0), msk(2025, 11, 2, 0, 0))) == [
        (utc(2025, 11, 1, 7, 0), utc(2025, 11, 1, 9, 0)),
    ]


def test_extra_working_day_overrides_a_holiday_on_the_same_date() -> None:
    calendar = Calendar(
        "x",
        "Europe/Moscow",
        weekdays(iv("09:00", "18:00")),
        holidays=frozenset({date(2025, 11, 1)}),
        extra_working_days=frozenset({date(2025, 11, 1)}),
    )
    assert is_working_time(calendar, msk(2025, 11, 1, 9, 0))


def test_four_hours_across_the_new_year_holidays() -> None:
    start = msk(2025, 12, 31, 19, 0)
    assert add_business_minutes(NEW_YEAR, start, 240) == msk(2026, 1, 12, 11, 0)
    assert business_minutes_between(NEW_YEAR, start, msk(2026, 1, 12, 11, 0)) == 240
    assert list(working_intervals(NEW_YEAR, start, msk(2026, 1, 12, 11, 0))) == [
        (utc(2025, 12, 31, 16, 0), utc(2025, 12, 31, 17, 0)),
        (utc(2026, 1, 12, 5, 0), utc(2026, 1, 12, 8, 0)),
    ]


def test_long_additions_iterate_days_not_minutes() -> None:
    # A year of business minutes (259 weekdays from 5 January): a day-by-day walk is a few hundred steps.
    result = add_business_minutes(BIZ, msk(2026, 1, 5, 8, 0), 259 * 12 * 60)
    assert result == msk(2026, 12, 31, 20, 0)


# --- time zones and DST ----------------------------------------------------------------


def test_moscow_has_no_dst() -> None:
    # Europe/Berlin changes clocks on 2026-10-25; Moscow does not.
    sunday_night = msk(2026, 10, 25, 0, 0)
    local_247 = Calendar("m", "Europe/Moscow", weekdays(iv("00:00", "00:00"), days=range(7)))
    assert business_time_between(local_247, sunday_night, sunday_night + timedelta(days=1)) == (
        timedelta(hours=24)
    )
    assert list(
        working_intervals(local_247, msk(2026, 10, 24, 12, 0), msk(2026, 10, 26, 12, 0))
    ) == [
        (utc(2026, 10, 24, 9, 0), utc(2026, 10, 24, 21, 0)),
        (utc(2026, 10, 24, 21, 0), utc(2026, 10, 25, 21, 0)),
        (utc(2026, 10, 25, 21, 0), utc(2026, 10, 26, 9, 0)),
    ]


def test_spring_forward_shortens_an_interval_spanning_the_gap() -> None:
    day = (berlin(2026, 3, 29, 0, 0), berlin(2026, 3, 30, 0, 0))
    # 01:00 CET = 00:00 UTC; 04:00 CEST = 02:00 UTC: two real hours.
    assert list(working_intervals(NIGHT_BERLIN, *day)) == [
        (utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 2, 0))
    ]
    assert add_business_minutes(NIGHT_BERLIN, berlin(2026, 3, 29, 1, 30), 60) == berlin(
        2026, 3, 29, 3, 30
    )


def test_fall_back_lengthens_an_interval_spanning_the_fold() -> None:
    day = (berlin(2026, 10, 25, 0, 0), berlin(2026, 10, 26, 0, 0))
    # 01:00 CEST = 23:00 UTC; 04:00 CET = 03:00 UTC: four real hours.
    assert list(working_intervals(NIGHT_BERLIN, *day)) == [
        (utc(2026, 10, 24, 23, 0), utc(2026, 10, 25, 3, 0))
    ]
    assert business_minutes_between(NIGHT_BERLIN, *day) == 240


def test_interval_starting_in_the_gap_starts_at_the_jump() -> None:
    day = (berlin(2026, 3, 29, 0, 0), berlin(2026, 3, 30, 0, 0))
    # 02:30 does not exist; work starts when the clock jumps to 03:00 CEST (01:00 UTC).
    assert list(working_intervals(LATE_BERLIN, *day)) == [
        (utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 3, 0))
    ]


def test_interval_starting_in_the_fold_matches_both_passes() -> None:
    day = (berlin(2026, 10, 25, 0, 0), berlin(2026, 10, 26, 0, 0))
    assert list(working_intervals(LATE_BERLIN, *day)) == [
        (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 0)),  # 02:30–03:00 CEST
        (utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 4, 0)),  # 02:30 CET–05:00 CET
    ]
    assert not is_working_time(LATE_BERLIN, berlin(2026, 10, 25, 2, 15, fold=1))
    assert is_working_time(LATE_BERLIN, berlin(2026, 10, 25, 2, 45, fold=1))
    assert is_working_time(LATE_BERLIN, berlin(2026, 10, 25, 2, 45, fold=0))


def test_local_247_calendar_follows_the_real_length_of_dst_days() -> None:
    spring = (berlin(2026, 3, 29, 0, 0), berlin(2026, 3, 30, 0, 0))
    autumn = (berlin(2026, 10, 25, 0, 0), berlin(2026, 10, 26, 0, 0))
    assert business_time_between(LOCAL_247_BERLIN, *spring) == timedelta(hours=23)
    assert business_time_between(LOCAL_247_BERLIN, *autumn) == timedelta(hours=25)
    assert add_business_minutes(LOCAL_247_BERLIN, spring[0], 24 * 60) == berlin(2026, 3, 30, 1, 0)


def test_day_hours_on_dst_days_are_twelve_real_hours() -> None:
    for day in (date(2026, 3, 29), date(2026, 10, 25)):
        start = datetime.combine(day, time(0), BERLIN)
        assert business_time_between(DAY_BERLIN, start, start + timedelta(days=1)) == timedelta(
            hours=12
        )
    assert add_business_minutes(DAY_BERLIN, berlin(2026, 3, 28, 19, 0), 120) == berlin(
        2026, 3, 29, 9, 0
    )


def test_always_open_is_clock_arithmetic() -> None:
    start = utc(2026, 3, 29, 0, 30)
    assert add_business_minutes(ALWAYS, start, 240) == utc(2026, 3, 29, 4, 30)
    assert business_minutes_between(ALWAYS, start, utc(2026, 3, 30, 0, 30)) == 1440
    assert list(working_intervals(ALWAYS, start, utc(2026, 3, 29, 1, 0))) == [
        (start, utc(2026, 3, 29, 1, 0))
    ]


def test_always_open_with_a_display_zone_still_counts_every_minute() -> None:
    shown_in_vladivostok = Calendar("24x7", "Asia/Vladivostok", weekdays(), always_open=True)
    start = msk(2026, 12, 31, 23, 0)
    assert business_minutes_between(shown_in_vladivostok, start, start + timedelta(days=7)) == (
        7 * 1440
    )
    assert add_business_minutes(shown_in_vladivostok, start, 90) == start + timedelta(minutes=90)


# --- national calendar, own lists and dated hours -----------------------------------

RU = Calendar("ru", "Europe/Moscow", weekdays(iv("09:00", "18:00")), country="RU")


def test_national_calendar_answers_for_any_year() -> None:
    # 2010: Saturday 27 February was worked so that Monday 22 February was free.
    assert day_hours(RU, date(2010, 2, 27)) == (iv("09:00", "18:00"),)
    assert day_hours(RU, date(2010, 2, 22)) == ()
    # 2031 has no decree yet, but New Year holidays are fixed by law.
    assert day_hours(RU, date(2031, 1, 2)) == ()
    assert day_hours(RU, date(2031, 1, 9)) == (iv("09:00", "18:00"),)
    # Tuesday 31 December 2024 was a day off by the 2024 decree.
    assert not is_working_time(RU, msk(2024, 12, 31, 12, 0))


def test_each_year_is_worked_out_once_per_calendar() -> None:
    calendar = Calendar("memo", "Europe/Moscow", weekdays(iv("09:00", "18:00")), country="RU")
    assert calendar.year_memo == {}
    minutes = business_minutes_between(calendar, msk(2024, 12, 20), msk(2026, 1, 20))
    assert set(calendar.year_memo) == {2024, 2025, 2026}
    table = calendar.year_memo[2025]
    assert business_minutes_between(calendar, msk(2024, 12, 20), msk(2026, 1, 20)) == minutes
    assert calendar.year_memo[2025] is table
    # The memo is no part of the value.
    fresh = Calendar("memo", "Europe/Moscow", weekdays(iv("09:00", "18:00")), country="RU")
    assert calendar == fresh
    assert hash(calendar) == hash(fresh)


def test_own_lists_win_over_the_national_calendar() -> None:
    own = Calendar(
        "own",
        "Europe/Moscow",
        weekdays(iv("09:00", "18:00")),
        holidays=frozenset({date(2025, 11, 1)}),  # the decree's working Saturday
        extra_working_days=frozenset({date(2025, 11, 3)}),  # the decree's day off
        extra_day_hours=(iv("10:00", "14:00"),),
        country="RU",
    )
    assert day_hours(own, date(2025, 11, 1)) == ()
    assert day_hours(own, date(2025, 11, 3)) == (iv("10:00", "14:00"),)
    assert day_hours(own, date(2025, 11, 4)) == ()  # Unity Day stays a holiday
    # The decree's other worked days use extra_day_hours as well.
    assert day_hours(own, date(2024, 4, 27)) == (iv("10:00", "14:00"),)


def test_dated_hours_win_over_everything() -> None:
    dated = Calendar(
        "dated",
        "Europe/Moscow",
        weekdays(iv("08:00", "20:00")),
        holidays=frozenset({date(2026, 6, 10)}),
        country="RU",
        days=MappingProxyType(
            {
                date(2026, 4, 30): (iv("08:00", "19:00"),),  # pre-holiday, one hour shorter
                date(2026, 5, 1): (iv("10:00", "12:00"),),  # a holiday worked by contract
                date(2026, 5, 6): (),  # a contract's own day off
                date(2026, 6, 10): (iv("09:00", "10:00"),),  # even over own holidays
            }
        ),
    )
    assert business_minutes_between(dated, msk(2026, 4, 30), msk(2026, 5, 1)) == 11 * 60
    assert business_minutes_between(dated, msk(2026, 5, 1), msk(2026, 5, 2)) == 2 * 60
    assert not is_working_time(dated, msk(2026, 5, 6, 12, 0))
    assert day_hours(dated, date(2026, 6, 10)) == (iv("09:00", "10:00"),)
    # The shortened day closes at 19:00, so half of the hour lands on 1 May's dated hours.
    assert add_business_minutes(dated, msk(2026, 4, 30, 18, 30), 60) == msk(2026, 5, 1, 10, 30)


def test_dated_hours_alone_bound_an_open_ended_search() -> None:
    only = Calendar(
        "only-dated",
        "Europe/Moscow",
        weekdays(days=range(0)),
        country="RU",
        days=MappingProxyType({date(2026, 3, 2): (iv("10:00", "11:00"),), date(2026, 3, 3): ()}),
    )
    assert add_business_minutes(only, msk(2026, 3, 1), 30) == msk(2026, 3, 2, 10, 30)
    with pytest.raises(ValueError, match="no working time"):
        add_business_minutes(only, msk(2026, 3, 1), 61)


# --- errors --------------------------------------------------------------------------


def test_a_calendar_without_working_time_is_an_error_not_a_hang() -> None:
    empty = Calendar("none", "Europe/Moscow", weekdays(days=range(0)))
    with pytest.raises(ValueError, match="no working time"):
        add_business_minutes(empty, msk(2026, 1, 1, 0, 0), 1)


def test_extra_days_only_calendar_runs_out() -> None:
    only = Calendar(
        "only",
        "Europe/Moscow",
        weekdays(days=range(0)),
        extra_working_days=frozenset({date(2026, 1, 10)}),
        extra_day_hours=(iv("10:00", "11:00"),),
    )
    assert add_business_minutes(only, msk(2026, 1, 1, 0, 0), 60) == msk(2026, 1, 10, 11, 0)
    with pytest.raises(ValueError, match="no working time"):
        add_business_minutes(only, msk(2026, 1, 1, 0, 0), 61)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="aware"):
        add_business_minutes(BIZ, datetime(2026, 1, 1), 1)
    with pytest.raises(ValueError, match="negative"):
        add_business_minutes(BIZ, msk(2026, 1, 1), -1)
    backwards = Calendar("bad", "Europe/Moscow", weekdays(iv("18:00", "09:00")))
    with pytest.raises(ValueError, match="ends before it starts"):
        add_business_minutes(backwards, msk(2026, 1, 5), 1)


# --- properties ----------------------------------------------------------------------

ZONES = (
    "Europe/Berlin",
    "Europe/Moscow",
    "America/New_York",
    "America/Santiago",  # clocks change at midnight
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Asia/Kathmandu",  # +05:45
    "UTC",
)
# Clock changes of 2026 in some of the zones above, so examples cluster where bugs hide.
ANCHORS = (
    utc(2026, 3, 29, 1, 0),
    utc(2026, 10, 25, 1, 0),
    utc(2026, 3, 8, 7, 0),
    utc(2026, 11, 1, 6, 0),
    utc(2026, 4, 5, 3, 0),
    utc(2026, 9, 6, 4, 0),
    utc(2026, 4, 4, 15, 0),
    utc(2026, 10, 3, 15, 30),
)


def _interval(bounds: tuple[int, int]) -> Interval:
    # Minutes of the day; 1440 is written as an 00:00 end (midnight).
    start, end = min(bounds), max(max(bounds), min(bounds) + 1)
    return Interval(time(start // 60, start % 60), time(end // 60 % 24, end % 60))


# Built once: a strategy object per draw (st.integers(start + 1, ...)) is slow in hypothesis.
INTERVALS = st.tuples(st.integers(0, 1439), st.integers(0, 1440)).map(_interval)
DAY_HOURS = st.lists(INTERVALS, max_size=2).map(tuple)
DAYS = st.dates(date(2026, 2, 20), date(2026, 11, 10))


@st.composite
def calendars(draw: st.DrawFn) -> Calendar:
    week = tuple(draw(DAY_HOURS) for _ in range(7))
    if not any(week):
        week = ((iv("09:00", "17:00"),), *week[1:])
    return Calendar(
        "prop",
        draw(st.sampled_from(ZONES)),
        week,
        holidays=frozenset(draw(st.lists(DAYS, max_size=8))),
        extra_working_days=frozenset(draw(st.lists(DAYS, max_size=3))),
        extra_day_hours=draw(st.lists(INTERVALS, max_size=1).map(tuple)),
        always_open=draw(st.integers(0, 9)) == 0,
        country=draw(st.sampled_from((None, None, "RU"))),
        days=MappingProxyType(draw(st.dictionaries(DAYS, DAY_HOURS, max_size=3))),
    )


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    anchor = draw(st.sampled_from(ANCHORS))
    return anchor + timedelta(seconds=draw(st.integers(-4 * 86400, 4 * 86400)))


def oracle_is_working(calendar: Calendar, t: datetime) -> bool:
    """The module's definition, restated naively: the wall clock is inside a day's interval."""
    if calendar.always_open:
        return True
    local = t.astimezone(ZoneInfo(calendar.timezone))
    day, wall = local.date(), local.time().replace(tzinfo=None)
    national = national_year(calendar.country, day.year) if calendar.country else None
    if day in calendar.days:
        hours = calendar.days[day]
    elif day in calendar.extra_working_days:
        hours = calendar.extra_day_hours or calendar.week[0]
    elif day in calendar.holidays or (national and day in national.days_off):
        hours = ()
    elif national and day in national.worked:
        hours = calendar.extra_day_hours or calendar.week[0]
    else:
        hours = calendar.week[day.weekday()]
    return any(i.start <= wall and (i.end == time(0) or wall < i.end) for i in hours)


# Generating a random calendar costs hypothesis more than the checks themselves; 40
# examples per property keep the module at a few seconds (3,000 passed when written).
PROPERTY = settings(max_examples=40, deadline=None)


@PROPERTY
@given(calendars(), instants(), st.integers(0, 2000))
def test_diff_inverts_add(calendar: Calendar, start: datetime, minutes: int) -> None:
    end = add_business_minutes(calendar, start, minutes)
    assert business_minutes_between(calendar, start, end) == minutes
    assert business_time_between(calendar, start, end) == timedelta(minutes=minutes)
    if is_working_time(calendar, start):
        # From working time the clock counts at once (the brief's special case of the above).
        tick = timedelta(microseconds=1)
        assert next_working_time(calendar, start) == start
        assert add_business_time(calendar, start, tick) == start + tick


@PROPERTY
@given(calendars(), instants(), instants())
def test_add_inverts_diff_up_to_idle_time(calendar: Calendar, a: datetime, b: datetime) -> None:
    # add(a, diff(a, b)) lands at or before b with no working time left in between,
    # exactly on b when b is inside a working piece with work before it.
    used = business_time_between(calendar, a, b)
    reached = add_business_time(calendar, a, used)
    assert reached <= max(a, b)
    assert business_time_between(calendar, reached, b) == timedelta(0)
    if b > a and used and is_working_time(calendar, b - timedelta(microseconds=1)):
        assert reached == b


@PROPERTY
@given(calendars(), instants(), st.integers(0, 1500), st.integers(0, 1500))
def test_add_is_monotonic_and_additive(
    calendar: Calendar, start: datetime, m1: int, m2: int
) -> None:
    low, high = sorted((m1, m2))
    assert add_business_minutes(calendar, start, low) <= add_business_minutes(calendar, start, high)
    later = start + timedelta(minutes=m2)
    assert add_business_minutes(calendar, start, m1) <= add_business_minutes(calendar, later, m1)
    step = add_business_minutes(calendar, start, m1)
    assert add_business_minutes(calendar, step, m2) == add_business_minutes(
        calendar, start, m1 + m2
    )


@PROPERTY
@given(calendars(), instants())
def test_is_working_time_matches_the_wall_clock_definition(calendar: Calendar, t: datetime) -> None:
    assert is_working_time(calendar, t) == oracle_is_working(calendar, t)


@settings(max_examples=15, deadline=None)
@given(calendars(), instants(), st.integers(0, 36 * 60))
def test_minutes_between_counts_working_minutes(
    calendar: Calendar, start: datetime, span: int
) -> None:
    # On a minute grid, business minutes are the count of minutes that start in working time.
    a = start.replace(second=0)
    b = a + timedelta(minutes=span)
    expected = sum(oracle_is_working(calendar, a + timedelta(minutes=i)) for i in range(span))
    assert business_minutes_between(calendar, a, b) == expected
    pieces = list(working_intervals(calendar, a, b))
    assert all(s < e for s, e in pieces)
    assert all(e1 <= s2 for (_, e1), (s2, _) in itertools.pairwise(pieces))
