"""The Russian production calendar as the holidays package records it, checked against decrees."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from mailticket.sla.production_calendar import is_supported, national_days


def test_2025_november_bridge_saturday_worked_and_monday_off() -> None:
    off, worked = national_days("RU", [2025])
    # Decree for 2025: Saturday 1 November worked, Monday 3 November off.
    assert date(2025, 11, 1) in worked
    assert date(2025, 11, 3) in off
    assert date(2025, 11, 4) in off
    assert worked == frozenset({date(2025, 11, 1)})


def test_2025_weekday_days_off_are_exactly_the_decree() -> None:
    off, _ = national_days("RU", [2025])
    assert sorted(off) == [
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
    off, worked = national_days("RU", [2026])
    new_year = {date(2026, 1, 1) + timedelta(days=i) for i in range(8)}
    weekdays = {d for d in new_year if d.weekday() < 5}
    assert weekdays <= off
    # 3 and 4 January fall on a weekend and are moved to 9 January and 31 December.
    assert date(2026, 1, 9) in off
    assert date(2026, 12, 31) in off
    # Holidays on Sunday 8 March and Saturday 9 May give the following Mondays off.
    assert date(2026, 3, 9) in off
    assert date(2026, 5, 11) in off
    # No Saturday is worked in 2026: the moves come from weekend holidays.
    assert worked == frozenset()
    # Weekend holidays themselves are not in the weekday set.
    assert date(2026, 1, 3) not in off
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


def test_years_are_limited_to_the_request() -> None:
    off, worked = national_days("RU", [2026])
    assert {d.year for d in off} == {2026}
    assert worked == frozenset()
    both_off, both_worked = national_days("RU", [2025, 2026])
    assert both_off == national_days("RU", [2025])[0] | off
    assert both_worked == frozenset({date(2025, 11, 1)})
    assert national_days("RU", []) == (frozenset(), frozenset())


def test_unknown_country() -> None:
    assert is_supported("RU")
    assert not is_supported("XX")
    with pytest.raises(ValueError, match="no national calendar for country 'XX'"):
        national_days("XX", [2025])
