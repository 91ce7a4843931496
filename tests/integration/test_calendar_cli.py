"""``mailticket calendar show``, and the missing-decree warning of check-config and status."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import holidays
import pytest

from mailticket.cli import main
from mailticket.sla.production_calendar import decree_missing, has_decree, package_version

EIGHT = '["09:00-13:00", "14:00-18:00"]'
SEVEN = '["09:00-13:00", "14:00-17:00"]'


def write_config(tmp_path: Path, country: str = "RU") -> Path:
    """Two calendars: a Russian 40-hour week with 2026's shortened days, and a 24/7 one."""
    week = "".join(f"{day} = {EIGHT}\n" for day in ("mon", "tue", "wed", "thu", "fri"))
    shortened = "".join(
        f'"{day}" = {SEVEN}\n' for day in ("2026-04-30", "2026-05-08", "2026-06-11", "2026-11-03")
    )
    path = tmp_path / "mt.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "mt.db"}"\n\n'
        f'[calendars.ru]\ntimezone = "Europe/Moscow"\ncountry = "{country}"\n{week}\n'
        f"[calendars.ru.days]\n{shortened}\n"
        '[calendars.always]\nalways_open = true\ntimezone = "Asia/Vladivostok"\n',
        encoding="utf-8",
    )
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_show_prints_each_month_against_the_official_calendar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path))
    code, out, err = run(capsys, "-c", config, "calendar", "show", "ru", "--year", "2026")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"ru 2026 (Europe/Moscow; production calendar RU from holidays {package_version()})",
        "month     days   hours  days off, worked days, other hours",
        "2026-01     15     120  off 1, 2, 5, 6, 7, 8, 9",
        "2026-02     19     152  off 23",
        "2026-03     21     168  off 9",
        "2026-04     22     175  hours 30 09:00-13:00, 14:00-17:00",
        "2026-05     19     151  off 1, 11; hours 8 09:00-13:00, 14:00-17:00",
        "2026-06     21     167  off 12; hours 11 09:00-13:00, 14:00-17:00",
        "2026-07     23     184",
        "2026-08     21     168",
        "2026-09     22     176",
        "2026-10     22     176",
        "2026-11     20     159  off 4; hours 3 09:00-13:00, 14:00-17:00",
        "2026-12     22     176  off 31",
        "total      247    1972",
    ]


def test_show_json_is_twelve_months(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path))
    code, out, _ = run(capsys, "-c", config, "calendar", "show", "ru", "--year", "2024", "--json")
    assert code == 0
    months = json.loads(out)
    assert [m["month"] for m in months] == [f"2024-{m:02d}" for m in range(1, 13)]
    assert [m["working_days"] for m in months] == [17, 20, 20, 21, 20, 19, 23, 22, 21, 23, 21, 21]
    assert sum(m["working_hours"] for m in months) == 248 * 8
    assert months[3]["holidays"] == ["2024-04-29", "2024-04-30"]
    assert [m["moved_working_days"] for m in months if m["moved_working_days"]] == [
        ["2024-04-27"], ["2024-11-02"], ["2024-12-28"]
    ]
    assert months[10] == {
        "month": "2024-11",
        "working_days": 21,
        "working_hours": 168,
        "holidays": ["2024-11-04"],
        "moved_working_days": ["2024-11-02"],
        "changed_hours": [],
    }
    code, out, _ = run(capsys, "-c", config, "calendar", "show", "ru", "--year", "2026", "--json")
    months = json.loads(out)
    assert months[3]["changed_hours"] == [
        {"date": "2026-04-30", "hours": ["09:00-13:00", "14:00-17:00"]}
    ]
    assert [m["working_hours"] for m in months] == [
        120, 152, 168, 175, 151, 167, 184, 168, 176, 176, 159, 176
    ]


def test_show_a_24x7_calendar_counts_every_hour(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path))
    code, out, _ = run(capsys, "-c", config, "calendar", "show", "always", "--year", "2024")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "always 2024 (Asia/Vladivostok; 24/7)"
    assert lines[2] == "2024-01     31     744"
    assert lines[3] == "2024-02     29     696"
    assert lines[-1] == "total      366    8784"


def test_show_refuses_an_unknown_calendar_or_year(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path))
    code, out, err = run(capsys, "-c", config, "calendar", "show", "business")
    assert (code, out) == (4, "")
    assert err == f"mailticket: no calendar 'business' in {config} (calendars: always, ru)\n"
    code, _, err = run(capsys, "-c", config, "calendar", "show", "ru", "--year", "1812")
    assert code == 1
    assert err == "mailticket: --year must be between 1900 and 2200, not 1812\n"


def test_show_warns_about_a_year_without_its_decree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path))
    year = max(y for y in range(2026, 2101) if has_decree("RU", y)) + 1
    code, out, err = run(capsys, "-c", config, "calendar", "show", "ru", "--year", str(year))
    assert code == 0 and out
    assert err.startswith(
        f"warning: holidays {package_version()} has no RU decree of moved days off for {year}: "
    )


def _country_missing_a_decree_now() -> str:
    """A country whose decree of this (or, late in the year, next) year the package lacks.

    check-config and status read the real date, so the test looks for a country the
    warning applies to today (there is nearly always one; the decrees come late).
    """
    today = date.today()
    years = (today.year, today.year + 1) if today.month >= 10 else (today.year,)
    for country in sorted(holidays.list_supported_countries()):
        if len(country) == 2 and any(decree_missing(country, year) for year in years):
            return country
    pytest.skip("the holidays package knows every decree due today")


def test_check_config_and_status_warn_about_a_missing_decree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    country = _country_missing_a_decree_now()
    config = str(write_config(tmp_path, country))
    code, out, err = run(capsys, "-c", config, "check-config")
    assert code == 0
    assert out == f"{config}: ok\n"
    (warning,) = err.splitlines()
    assert warning.startswith(f"warning: {config}:6: calendars.ru.country: holidays ")
    assert f"has no {country} decree of moved days off for " in warning

    assert run(capsys, "-c", config, "db", "upgrade")[0] == 0
    code, out, _ = run(capsys, "-c", config, "status")
    assert code == 0
    assert out.splitlines()[1] == warning
    code, out, _ = run(capsys, "-c", config, "status", "--json")
    assert json.loads(out)["warnings"] == [warning.removeprefix("warning: ")]


def test_check_config_is_quiet_when_the_decrees_are_known(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path, "DE"))
    assert run(capsys, "-c", config, "check-config") == (0, f"{config}: ok\n", "")
