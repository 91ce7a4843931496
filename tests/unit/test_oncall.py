"""The on-call rota: whose week it is, handovers at wall-clock time, DST, config reading."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailticket import config as config_mod
from mailticket.config import OncallConfig
from mailticket.policy.oncall import current_pair, shift_at, upcoming, week_index

MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
A, B, C, D = "a@x.example", "b@x.example", "c@x.example", "d@x.example"
ROTA = OncallConfig(rota=((A, B), (C, D)), start=date(2026, 11, 16), handover=time(10, 0),
                    timezone="Europe/Moscow")


def msk(*args: int) -> datetime:
    return datetime(*args, tzinfo=MSK)


@pytest.mark.parametrize(
    ("now", "pair", "weeks"),
    [
        (msk(2026, 11, 16, 10, 0), (A, B), 0),  # the first handover itself
        (msk(2026, 11, 20, 19, 50), (A, B), 0),  # Friday evening of week 0
        (msk(2026, 11, 23, 9, 59), (A, B), 0),  # a minute before the next handover
        (msk(2026, 11, 23, 10, 0), (C, D), 1),
        (msk(2026, 11, 30, 10, 0), (A, B), 2),  # the rota wraps around
        (msk(2026, 11, 16, 9, 59), (C, D), -1),  # before the start it runs backwards
    ],
)
def test_pair_by_week(now: datetime, pair: tuple[str, str], weeks: int) -> None:
    assert current_pair(ROTA, now) == pair
    assert week_index(ROTA, now) == weeks


def test_the_same_instant_in_another_zone_gives_the_same_pair() -> None:
    instant = msk(2026, 11, 23, 10, 0).astimezone(UTC)
    assert current_pair(ROTA, instant) == (C, D)
    assert current_pair(ROTA, datetime(2026, 11, 23, 6, 59, 59, tzinfo=UTC)) == (A, B)


def test_shift_bounds_and_upcoming() -> None:
    shift = shift_at(ROTA, msk(2026, 11, 25, 3, 0))
    assert shift is not None
    assert (shift.index, shift.pair) == (1, (C, D))
    assert shift.starts_at == msk(2026, 11, 23, 10, 0)
    assert shift.ends_at == msk(2026, 11, 30, 10, 0)
    assert [s.pair for s in upcoming(ROTA, msk(2026, 11, 17, 0, 0), 3)] == [(A, B), (C, D), (A, B)]


def test_handover_keeps_local_time_across_dst() -> None:
    # Berlin springs forward on Sunday 2026-03-29: the Monday handover stays at 09:00 local.
    rota = OncallConfig(rota=((A, B), (C, D)), start=date(2026, 3, 23), handover=time(9, 0),
                        timezone="Europe/Berlin")
    shift = shift_at(rota, datetime(2026, 3, 30, 9, 0, tzinfo=BERLIN))
    assert shift is not None and shift.pair == (C, D)
    assert shift.starts_at == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # 09:00 CEST
    assert current_pair(rota, datetime(2026, 3, 30, 6, 59, tzinfo=UTC)) == (A, B)  # 08:59 CEST
    # The week before, in winter time, the same 09:00 was 08:00 UTC.
    before = shift_at(rota, datetime(2026, 3, 25, 12, 0, tzinfo=UTC))
    assert before is not None and before.starts_at == datetime(2026, 3, 23, 8, 0, tzinfo=UTC)
    assert before.ends_at == shift.starts_at


def test_no_rota_pages_nobody() -> None:
    assert current_pair(OncallConfig(), msk(2026, 11, 20, 20, 0)) == ()
    assert shift_at(OncallConfig(), msk(2026, 11, 20, 20, 0)) is None


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        current_pair(ROTA, datetime(2026, 11, 20, 20, 0))


BASE = """
[engineers."a@x.example"]
name = "A"
line = "L1"
[engineers."b@x.example"]
name = "B"
line = "L2"
"""


def test_config_reads_oncall_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE + """
[oncall]
rota = [["A@x.example", "b@x.example"]]
start = 2026-01-05
handover = "09:30"
timezone = "Europe/Berlin"

[reports]
monthly = true
day = 3
time = "07:15"
recipients = ["boss@x.example"]
incident_recipients = ["NOC@x.example", "boss@x.example"]
""")
    cfg = config_mod.load(path, today=date(2026, 11, 20))
    assert cfg.oncall == OncallConfig(rota=((A, B),), start=date(2026, 1, 5),
                                      handover=time(9, 30), timezone="Europe/Berlin")
    assert (cfg.reports.monthly, cfg.reports.day, cfg.reports.at) == (True, 3, time(7, 15))
    assert cfg.reports.recipients == ("boss@x.example",)
    assert cfg.reports.incident_recipients == ("noc@x.example", "boss@x.example")
    assert cfg.reports.timezone == "Europe/Moscow"


def test_config_problems_are_located(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE + """
[oncall]
rota = [["a@x.example", "nobody@x.example"], ["a@x.example"]]
handover = "25:00"
timezone = "Mars/Base"

[reports]
day = 31
when = 1
incident_recipients = ["not an address"]
""")
    problems = [(p.key, p.reason.split(" (")[0].split(";")[0])
                for p in config_mod.check(path, today=date(2026, 11, 20))]
    # In file order; the missing start is reported at the [oncall] header.
    assert problems == [
        ("oncall.start", "missing required key"),
        ("oncall.rota[0]", "unknown engineer 'nobody@x.example'"),
        ("oncall.rota[1]", "expected a pair of engineer addresses, got a list"),
        ("oncall.handover", 'expected a time of day like "10:00", got \'25:00\''),
        ("oncall.timezone", "time zone 'Mars/Base' not found"),
        ("reports.day", "must be between 1 and 28, so every month has it"),
        ("reports.when", "unknown key"),
        ("reports.incident_recipients[0]", "invalid address 'not an address'"),
    ]


def test_shipped_example_has_a_rota_and_monthly_reports() -> None:
    cfg = config_mod.load(Path(__file__).resolve().parents[2] / "config.example.toml",
                          today=date(2026, 11, 20))
    assert len(cfg.oncall.rota) == 2 and all(len(pair) == 2 for pair in cfg.oncall.rota)
    assert cfg.reports.monthly is True
    assert cfg.reports.incident_recipients == ("service-manager@example.com",)
    assert cfg.sla_plans["standard"].warn_ratio == 0.75
