"""National production calendars: which weekdays are off and which weekend days are worked.

Russia (like several other countries) moves days off by decree every year: a
holiday that falls on a weekend becomes a weekday off, and a Saturday may become
a working day so that a bridge day can be taken off (2025-11-01 was worked so
that 2025-11-03 was free). Admins should not type these lists by hand, so a
calendar with ``country = "RU"`` takes them from the maintained ``holidays``
package. This module is the only place that talks to that package. It answers
for any year on demand, memoised per (country, year), so a ticket of 2024 and a
report about 2031 are computed on the same calendar as today's tickets.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import holidays

# A country that moved days by decree in any of this many years before a year is
# expected to decree that year as well (see :func:`decree_missing`).
HABIT_YEARS = 3


@dataclass(frozen=True)
class NationalYear:
    """One country's production calendar for one year, as the ``holidays`` package records it.

    ``days_off`` holds every public holiday and transferred day off that falls on
    Monday–Friday (a weekly calendar already treats weekends as days off);
    ``worked`` holds the Saturdays and Sundays a decree made working days.
    """

    country: str
    year: int
    days_off: frozenset[date]
    worked: frozenset[date]


def is_supported(country: str) -> bool:
    """Whether the ``holidays`` package has a calendar for this ISO 3166-1 alpha-2 code."""
    return country in _supported_countries()


def package_version() -> str:
    """The installed ``holidays`` version, for messages that ask for an upgrade."""
    return importlib.metadata.version("holidays")


@functools.cache
def national_year(country: str, year: int) -> NationalYear:
    """The production calendar of ``country`` in ``year``; ``ValueError`` for an unknown country.

    Memoised: building a year of Russian holidays costs a few milliseconds and
    the answer never changes while the process runs, so business-time
    arithmetic may ask once per year it crosses without slowing down.
    """
    calendar = _country_year(country, year)
    days_off = frozenset(d for d in calendar if d.year == year and d.weekday() < 5)
    # ``weekend_workdays`` is the package's public record of worked Saturdays and
    # Sundays. Holidays on weekends that were merely moved (e.g. 2026-01-03 moved
    # to 2026-01-09) are not in it, because they never become working days.
    worked = frozenset(
        d
        for d in getattr(calendar, "weekend_workdays", set())
        if d.year == year and d.weekday() >= 5 and d not in calendar
    )
    return NationalYear(country, year, days_off, worked)


@functools.cache
def has_decree(country: str, year: int) -> bool:
    """Whether the package records a decree of moved days off of ``country`` for ``year``.

    The package keeps a decree's transfers ("day off moved from Saturday 1
    November to Monday 3 November") and its extra days in lieu as *special*
    holidays keyed by year; the fixed-date holidays come from rules that cover
    every year. A year without any special holiday has only the fixed-date
    holidays: weekend holidays are not moved and no Saturday is worked.
    """
    return any(year in mapping for mapping in _special_mappings(_country_year(country, year)))


@functools.cache
def decree_missing(country: str, year: int) -> bool:
    """Whether ``year`` needs a decree of ``country`` that the installed package lacks.

    A country needs one when it moved days by decree (a transfer) in any of the
    ``HABIT_YEARS`` years before: Russia does every year, since its New Year
    holidays always touch a weekend. Countries that never did, or stopped (Ukraine
    since 2022), need none, so they never cause a warning; a package more than
    ``HABIT_YEARS`` years stale no longer warns either, but it warned before.
    """
    transfers = _transfer_years(country)
    if not any(earlier in transfers for earlier in range(year - HABIT_YEARS, year)):
        return False
    return not has_decree(country, year)


@functools.cache
def _transfer_years(country: str) -> frozenset[int]:
    """Every year in which the package records a transfer for ``country``."""
    # The special tables of every year come with the object, even with no year built.
    mappings = _special_mappings(_country_year(country, None))
    return frozenset(
        year for mapping in mappings for year, entries in mapping.items() if _has_transfer(entries)
    )


@functools.cache
def _supported_countries() -> frozenset[str]:
    # The package computes this list by importing its registry; it never changes
    # while the process runs, so ask once.
    return frozenset(holidays.list_supported_countries())


def _country_year(country: str, year: int | None) -> Any:
    """The package's holiday object for one country and year (a ``dict[date, str]``)."""
    if not is_supported(country):
        raise ValueError(f"no national calendar for country {country!r}")
    return holidays.country_holidays(country, years=year if year is not None else [])


def _special_mappings(calendar: Any) -> list[Mapping[int, Any]]:
    """The package's per-year special-holiday tables (``special_public_holidays`` and kin)."""
    return [
        value
        for name, value in vars(calendar).items()
        if name.startswith("special_") and isinstance(value, Mapping)
    ]


def _has_transfer(entries: Any) -> bool:
    """Whether one year's special entries include a transfer ``(to_m, to_d, from_m, from_d)``.

    An entry is either one tuple or a tuple of tuples; a named special holiday
    is ``(month, day, name)`` and a transfer is four (or five) integers.
    """
    items = (entries,) if entries and isinstance(entries[0], int) else entries
    return any(len(item) >= 4 and all(isinstance(x, int) for x in item) for item in items)
