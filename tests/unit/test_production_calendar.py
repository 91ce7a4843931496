"""The Russian production calendar as the holidays package records it, checked against decrees.

The per-month figures are the official five-day-week production calendars of
2024, 2025 and 2026 (working days; for 2025 and 2026 also the 40-hour-week norms,
which count the shortened pre-holiday days given per date, since the holidays
package does not know them).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from mailticket import config
from mailticket.model import Calendar, Interval, Priority
from mailticket.sla import production_calendar
from mailticket.sla.business_hours import (
    add_business_minutes,
    business_minutes_between,
    day_hours,
    is_working_time,
)
from mailticket.sla.production_calendar import (
    decree_missing,
    has_decree,
    is_supported,
    national_year,
)

MSK = ZoneInfo("Europe/Moscow")
REPO = Path(__file__).resolve().parents[2]
EIGHT_HOURS = (Interval(time(9), time(13)), Interval(time(14), time(18)))
SEVEN_HOURS = (Interval(time(9), time(13)), Interval(time(14), time(17)))


def ru_calendar(shortened: tuple[date, ...] = ()) -> Calendar:
    """A five-day week of 8-hour days on the Russian production calendar."""
    return Calendar(
        "ru",
        "Europe/Moscow",
        (EIGHT_HOURS,) * 5 + ((), ()),
        country="RU",
        days=MappingProxyType(dict.fromkeys(shortened, SEVEN_HOURS)),
    )


def working_days(calendar: Calendar, year: int, month: int) -> int:
    day, count = date(year, month, 1), 0
    while day.month == month:
        count += bool(day_hours(calendar, day))
        day += timedelta(days=1)
    return count


def working_hours(calendar: Calendar, year: int, month: int) -> float:
    start = datetime(year, month, 1, tzinfo=MSK)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=MSK)
    return business_minutes_between(calendar, start, end) / 60


OFFICIAL_DAYS = {
    2024: [17, 20, 20, 21, 20, 19, 23, 22, 21, 23, 21, 21],
    2025: [17, 20, 21, 22, 18, 19, 23, 21, 22, 23, 19, 22],
    2026: [15, 19, 21, 22, 19, 21, 23, 21, 22, 22, 20, 22],
}
# The pre-holiday days one hour shorter (Labour Code art. 95), from the official calendars.
SHORTENED = {
    2025: (date(2025, 3, 7), date(2025, 4, 30), date(2025, 6, 11), date(2025, 11, 1)),
    2026: (date(2026, 4, 30), date(2026, 5, 8), date(2026, 6, 11), date(2026, 11, 3)),
}
OFFICIAL_HOURS = {
    2025: [136, 160, 167, 175, 144, 151, 184, 168, 176, 184, 151, 176],
    2026: [120, 152, 168, 175, 151, 167, 184, 168, 176, 176, 159, 176],
}


@pytest.mark.parametrize("year", sorted(OFFICIAL_DAYS))
def test_official_working_days_per_month(year: int) -> None:
    calendar = ru_calendar()
    assert [working_days(calendar, year, m) for m in range(1, 13)] == OFFICIAL_DAYS[year]
    assert sum(OFFICIAL_DAYS[year]) == {2024: 248, 2025: 247, 2026: 247}[year]


@pytest.mark.parametrize("year", sorted(OFFICIAL_HOURS))
def test_official_hours_with_the_shortened_days_given_per_date(year: int) -> None:
    plain = ru_calendar()
    assert sum(working_hours(plain, year, m) for m in range(1, 13)) == 8 * sum(OFFICIAL_DAYS[year])
    calendar = ru_calendar(SHORTENED[year])
    assert [working_hours(calendar, year, m) for m in range(1, 13)] == OFFICIAL_HOURS[year]
    assert sum(OFFICIAL_HOURS[year]) == 1972


@pytest.mark.parametrize(
    "saturday",
    [date(2024, 4, 27), date(2024, 11, 2), date(2024, 12, 28), date(2025, 11, 1)],
)
def test_moved_working_saturdays_are_working_days(saturday: date) -> None:
    assert saturday.weekday() == 5
    assert saturday in national_year("RU", saturday.year).worked
    assert day_hours(ru_calendar(), saturday) == EIGHT_HOURS
    assert is_working_time(ru_calendar(), datetime.combine(saturday, time(10), MSK))


def test_the_worked_saturdays_of_each_year_are_exactly_the_decrees() -> None:
    assert national_year("RU", 2024).worked == {
        date(2024, 4, 27),
        date(2024, 11, 2),
        date(2024, 12, 28),
    }
    assert national_year("RU", 2025).worked == {date(2025, 11, 1)}
    # The 2026 decree moves only the weekend New Year holidays (3 and 4 January) to
    # 9 January and 31 December; no Saturday is worked.
    assert national_year("RU", 2026).worked == frozenset()


def test_minor_ticket_of_friday_1_november_2024_is_not_due_on_the_monday_holiday() -> None:
    # Today is irrelevant now: 2024 is answered on demand, not from a window of years.
    cfg = config.load(REPO / "config.example.toml", today=date(2030, 6, 1))
    target = cfg.sla_plans["standard"].targets[Priority.MINOR]
    calendar = cfg.calendars[target.calendar]
    opened = datetime(2024, 11, 1, 19, 30, tzinfo=MSK)
    due = add_business_minutes(calendar, opened, target.first_response_minutes).astimezone(MSK)
    # 30 minutes on Friday, the other 7.5 hours on the worked Saturday; Monday 4 November
    # (Unity Day) is a holiday and never counted.
    assert due == datetime(2024, 11, 2, 15, 30, tzinfo=MSK)
    assert not is_working_time(calendar, datetime(2024, 11, 4, 10, 0, tzinfo=MSK))


def test_2025_november_bridge_saturday_worked_and_monday_off() -> None:
    year = national_year("RU", 2025)
    # Decree for 2025: Saturday 1 November worked, Monday 3 November off.
    assert date(2025, 11, 1) in year.worked
    assert date(2025, 11, 3) in year.days_off
    assert date(2025, 11, 4) in year.days_off


def test_2025_weekday_days_off_are_exactly_the_decree() -> None:
    assert sorted(national_year("RU", 2025).days_off) == [
        date(2025, 1, 1),
        date(2025, 1, 2),
        date(2025, 1, 3),
        date(2025, 1, 6),
        date(2025, 1, 7),
        date(2025, 1, 8),
        date(2025, 5, 1),
        date(2025, 5, 2),
        date(2025, 5, 8),
        date(2025, 5, 9),
        date(2025, 6, 12),
        date(2025, 6, 13),
        date(2025, 11, 3),
        date(2025, 11, 4),
        date(2025, 12, 31),
    ]


def test_2026_new_year_holidays_and_moved_days() -> None:
    off = national_year("RU", 2026).days_off
    # 3 and 4 January fall on a weekend and are moved to 9 January and 31 December;
    # the holidays on Sunday 8 March and Saturday 9 May give the following Mondays off.
    # Weekend holidays themselves are not in the weekday set.
    assert sorted(off) == [
        date(2026, 1, 1),
        date(2026, 1, 2),
        date(2026, 1, 5),
        date(2026, 1, 6),
        date(2026, 1, 7),
        date(2026, 1, 8),
        date(2026, 1, 9),
        date(2026, 2, 23),
        date(2026, 3, 9),
        date(2026, 5, 1),
        date(2026, 5, 11),
        date(2026, 6, 12),
        date(2026, 11, 4),
        date(2026, 12, 31),
    ]


def test_each_year_holds_only_its_own_days() -> None:
    for year in (2010, 2024, 2026, 2031):
        calendar = national_year("RU", year)
        assert {d.year for d in calendar.days_off | calendar.worked} == {year}
    assert national_year("RU", 2026) is national_year("RU", 2026)  # memoised


def last_decree_year(country: str) -> int:
    """The last year whose decree the installed package knows (grows with upgrades)."""
    return max(year for year in range(2024, 2101) if has_decree(country, year))


def test_decrees_known_to_the_package() -> None:
    for year in (2010, 2024, 2025, 2026, 2027):
        assert has_decree("RU", year), year
        assert not decree_missing("RU", year)
    # The year after the last known decree: only fixed-date holidays, nothing moved.
    after = last_decree_year("RU") + 1
    assert not has_decree("RU", after)
    assert national_year("RU", after).worked == frozenset()
    assert decree_missing("RU", after)
    assert decree_missing("RU", after + 1)


def test_only_countries_that_keep_moving_days_miss_a_decree() -> None:
    # Russia's last decrees are long past in 2100: no habit left to miss.
    assert not has_decree("RU", 2100)
    assert not decree_missing("RU", 2100)
    # Germany never moves days; Ukraine has not since 2022.
    assert not decree_missing("DE", 2026)
    assert not decree_missing("UA", 2026)


def test_unknown_country() -> None:
    assert is_supported("RU")
    assert not is_supported("XX")
    with pytest.raises(ValueError, match="no national calendar for country 'XX'"):
        national_year("XX", 2025)
    with pytest.raises(ValueError, match="no national calendar for country 'XX'"):
        decree_missing("XX", 2025)


def test_package_version_is_at_least_the_pinned_floor() -> None:
    major, minor = (int(part) for part in production_calendar.package_version().split(".")[:2])
    assert (major, minor) >= (0, 107)
