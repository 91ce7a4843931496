"""National production calendars: which weekdays are off and which weekend days are worked.

Russia (like several other countries) moves days off by decree every year: a
holiday that falls on a weekend becomes a weekday off, and a Saturday may become
a working day so that a bridge day can be taken off (2025-11-01 was worked so
that 2025-11-03 was free). Admins should not type these lists by hand, so a
calendar with ``country = "RU"`` merges them from the maintained ``holidays``
package. This module is the only place that talks to that package; the config
loader turns its answer into plain date sets on :class:`mailticket.model.Calendar`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import date

import holidays


def is_supported(country: str) -> bool:
    """Whether the ``holidays`` package has a calendar for this ISO 3166-1 alpha-2 code."""
    return country in _supported_countries()


def national_days(country: str, years: Iterable[int]) -> tuple[frozenset[date], frozenset[date]]:
    """Return (weekdays off, weekend days worked) of ``country`` in ``years``.

    The first set holds every public holiday and transferred day off that falls
    on Monday–Friday; holidays on a Saturday or Sunday are left out because a
    weekly calendar already treats those as days off. The second set holds the
    Saturdays and Sundays that a decree made working days. Both are limited to
    the requested years. Raises ``ValueError`` for a country the package lacks.
    """
    return _national_days(country, tuple(sorted(set(years))))


@functools.cache
def _supported_countries() -> frozenset[str]:
    # The package computes this list by importing its registry; it never changes
    # while the process runs, so ask once.
    return frozenset(holidays.list_supported_countries())


@functools.cache
def _national_days(country: str, years: tuple[int, ...]) -> tuple[frozenset[date], frozenset[date]]:
    # Building a year of Russian holidays costs a few milliseconds, and the
    # config loader asks for the same years for every calendar, so the answer
    # is memoised (the inputs fully determine it).
    if not is_supported(country):
        raise ValueError(f"no national calendar for country {country!r}")
    if not years:
        return frozenset(), frozenset()
    calendar = holidays.country_holidays(country, years=years)
    wanted = set(years)
    days_off = frozenset(d for d in calendar if d.year in wanted and d.weekday() < 5)
    # ``weekend_workdays`` is the package's public record of worked Saturdays and
    # Sundays. Holidays on weekends that were merely moved (e.g. 2026-01-03 moved
    # to 2026-01-09) are not in it, because they never become working days.
    worked = frozenset(
        d
        for d in getattr(calendar, "weekend_workdays", set())
        if d.year in wanted and d.weekday() >= 5 and d not in calendar
    )
    return days_off, worked
