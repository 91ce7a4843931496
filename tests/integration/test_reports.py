"""Monthly reports from a month of generated tickets: files, the mail, the scheduled run."""

from __future__ import annotations

import asyncio
import csv
import email
import email.policy
import io
import struct
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session, sessionmaker
from support.configs import REPO, make_config

from mailticket import cli, report_delivery, reports
from mailticket import config as config_mod
from mailticket.notify import Notifier
from mailticket.render import Renderer
from mailticket.scheduler import Scheduler
from mailticket.store.db import make_engine, make_sessionmaker, transaction
from mailticket.store.schema import OutboxItem, Ticket

MSK = ZoneInfo("Europe/Moscow")


def local(day: int, hour: int, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, 0, tzinfo=MSK)


def add(session: Session, created: datetime, priority: str, subject: str, *, line: str = "L1",
        first: timedelta | None = None, resolved: timedelta | None = None,
        contract: str = "acme") -> None:
    session.add(Ticket(
        subject=subject, status="resolved" if resolved else "open", priority=priority, line=line,
        contract_id=contract, requester="ivan@acme.example", locale="ru", created_at=created,
        updated_at=created, first_response_at=created + first if first else None,
        resolved_at=created + resolved if resolved else None))


def generate_october(factory: sessionmaker[Session]) -> None:
    """20 tickets of acme in October 2026 (MSK), and some that must not count.

    * 10 critical (24/7: 30 min / 4 h) on weekdays at 10:00: 8 answered in 20 min,
      2 in 40 min; all resolved in 3 h. Three were on line L2.
    * 6 major (business hours: 2 h / 12 h) at 09:00 on Tuesdays and Wednesdays,
      answered in 1 h, never resolved.
    * 4 minor (8 h / 36 h) at 15:00 on Thursdays and Fridays, never answered.
    """
    with transaction(factory) as s:
        days = (5, 6, 7, 8, 9, 12, 13, 14, 15, 16)
        subjects = ("Не работает сайт", "RE: не работает  сайт", "Re: Fwd: Не работает сайт")
        for i, day in enumerate(days):
            add(s, local(day, 10), "critical", subjects[i % 3], line="L2" if i < 3 else "L1",
                first=timedelta(minutes=40 if i >= 8 else 20), resolved=timedelta(hours=3))
        for day in (6, 13, 20, 27, 7, 14):
            add(s, local(day, 9), "major", "VPN", first=timedelta(hours=1))
        for day in (1, 2, 8, 9):
            add(s, local(day, 15), "minor", "Вопрос по счёту")
        # Not in the report: September, November, another contract.
        add(s, local(30, 23, month=9), "minor", "Сентябрь")
        add(s, local(1, 0, month=11), "minor", "Ноябрь")
        add(s, local(15, 12), "minor", "Чужой", contract="globex")


def example_config(tmp_path: Path, db_url: str) -> Path:
    """The shipped example, pointed at the test database and the repository's files."""
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    text = text.replace('url = "sqlite:///var/mailticket.db"', f'url = "{db_url}"')
    text = text.replace('templates_dir = "templates"', f'templates_dir = "{REPO / "templates"}"')
    text = text.replace('dir = "kb"', f'dir = "{REPO / "kb"}"')
    path = tmp_path / "mailticket.toml"
    path.write_text(text, encoding="utf-8")
    return path


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR, after checking the signature and the chunk CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29])
    assert data.endswith(b"IEND\xaeB`\x82")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


EXPECTED_ROWS = {
    ("summary", "tickets"): "20",
    ("priority", "critical"): "10", ("priority", "major"): "6", ("priority", "minor"): "4",
    ("priority", "technical"): "0",
    ("line", "L1"): "17", ("line", "L2"): "3", ("line", "L3"): "0", ("line", "L4"): "0",
    ("sla_first_response", "in_time"): "14", ("sla_first_response", "breached"): "6",
    ("sla_first_response", "running"): "0", ("sla_first_response", "percent"): "70.0",
    ("sla_resolution", "in_time"): "10", ("sla_resolution", "breached"): "10",
    ("sla_resolution", "percent"): "50.0",
    # Response: 8 × 20, 2 × 40 (24/7) and 6 × 60 (business) minutes.
    ("response_minutes", "count"): "16", ("response_minutes", "median"): "30.0",
    ("response_minutes", "p90"): "60",
    ("resolution_minutes", "count"): "10", ("resolution_minutes", "median"): "180.0",
    ("resolution_minutes", "p90"): "180",
    ("hour", "09"): "6", ("hour", "10"): "10", ("hour", "15"): "4", ("hour", "11"): "0",
    ("weekday", "Mon"): "2", ("weekday", "Tue"): "6", ("weekday", "Wed"): "4",
    ("weekday", "Thu"): "4", ("weekday", "Fri"): "4", ("weekday", "Sat"): "0",
    ("weekday", "Sun"): "0",
    ("subject", "Не работает сайт"): "10", ("subject", "VPN"): "6",
    ("subject", "Вопрос по счёту"): "4",
}


def test_report_monthly_out_writes_html_png_and_csv(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(sqlite_url)
    generate_october(make_sessionmaker(engine))
    engine.dispose()
    config = example_config(tmp_path, sqlite_url)
    out = tmp_path / "out"
    assert cli.main(["-c", str(config), "report", "monthly", "--contract", "acme",
                     "--month", "2026-10", "--out", str(out)]) == 0
    names = [Path(line).name for line in capsys.readouterr().out.splitlines()]
    assert names == ["report-acme-2026-10.html", "report-acme-2026-10.png",
                     "report-acme-2026-10.csv"]
    assert png_size((out / names[1]).read_bytes()) == (900, 600)
    rows = list(csv.reader(io.StringIO((out / names[2]).read_text(encoding="utf-8"))))
    assert rows[0] == ["section", "key", "value"]
    figures = {(section, key): value for section, key, value in rows[1:]}
    for key, value in EXPECTED_ROWS.items():
        assert figures[key] == value, key
    assert sum(int(v) for (section, _), v in figures.items() if section == "hour") == 20
    assert [k for (section, k) in figures if section == "subject"] == [
        "Не работает сайт", "VPN", "Вопрос по счёту"]
    html = (out / names[0]).read_text(encoding="utf-8")
    assert '<img src="report-acme-2026-10.png"' in html
    assert "Отчёт о техподдержке по договору с ACME Ltd" in html
    assert "<td>Первый ответ</td><td>14</td><td>6</td><td>0</td><td>70 %</td>" in html
    assert "<td>Первый ответ</td><td>16</td><td>30 мин</td><td>1 ч</td>" in html


def test_bad_month_and_unknown_contract_are_user_errors(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = example_config(tmp_path, sqlite_url)
    base = ["-c", str(config), "report", "monthly", "--out", str(tmp_path / "o")]
    assert cli.main([*base, "--contract", "acme", "--month", "2026-13"]) == 1
    assert cli.main([*base, "--contract", "nobody", "--month", "2026-10"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "mailticket: bad month '2026-13': expected YYYY-MM such as 2026-10",
        "mailticket: unknown contract 'nobody'",
    ]


def test_mailed_report_has_inline_chart_and_csv_and_scheduled_run_sends_once(
    db_url: str, tmp_path: Path
) -> None:
    cfg = make_config(tmp_path, db_url)
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    generate_october(factory)
    notifier = Notifier(cfg, Renderer(cfg.templates_dir))
    now = datetime(2026, 11, 1, 9, 0, tzinfo=MSK)
    assert report_delivery.monthly_run(factory, notifier, now) == len(cfg.contracts)
    assert report_delivery.monthly_run(factory, notifier, now + timedelta(minutes=1)) == 0
    with transaction(factory) as s:
        items = {tuple(i.rcpt_tos): i for i in s.query(OutboxItem).all()}
    engine.dispose()
    assert len(items) == len(cfg.contracts)
    msg = email.message_from_bytes(items[("ivan@gmail.example",)].raw, policy=email.policy.default)
    assert str(msg["Subject"]) == "Отчёт о техподдержке за 2026-10: ООО «Акме»"
    parts = {part.get_content_type(): part for part in msg.walk()}
    assert msg.get_content_type() == "multipart/mixed"
    assert "multipart/related" in parts
    image = parts["image/png"]
    cid = str(image["Content-ID"]).strip("<>")
    assert cid == "chart-acme-2026-10@mt.provider.example"
    assert f'<img src="cid:{cid}"' in parts["text/html"].get_content()
    assert png_size(image.get_content()) == (900, 600)
    attachment = parts["text/csv"]
    assert attachment.get_filename() == "report-acme-2026-10.csv"
    figures = {(r[0], r[1]): r[2] for r in csv.reader(io.StringIO(attachment.get_content()))}
    assert (figures[("summary", "tickets")], figures[("priority", "critical")]) == ("20", "10")
    assert "Зарегистрировано обращений: 20" in parts["text/plain"].get_content()


def test_scheduler_runs_the_monthly_reports_at_the_configured_day_and_time(
    sqlite_url: str, tmp_path: Path
) -> None:
    # The shipped config: monthly = true, day 1, 09:00 Europe/Moscow.
    cfg = config_mod.load(example_config(tmp_path, sqlite_url))
    notifier = Notifier(cfg, Renderer(cfg.templates_dir))

    engine = make_engine(sqlite_url)

    async def run() -> tuple[list[str], datetime | None]:
        scheduler = Scheduler(make_sessionmaker(engine), cfg, notifier)
        scheduler.start()
        try:
            return scheduler.job_ids(), scheduler.next_run_time("monthly_reports")
        finally:
            scheduler.shutdown()

    before = datetime.now(MSK)
    try:
        jobs, when = asyncio.run(run())
    finally:
        engine.dispose()
    assert jobs == ["sla_scan", "housekeeping", "monthly_reports"]
    first = before.replace(day=1, hour=9, minute=0, second=0, microsecond=0)
    if first <= before:
        first = (first + timedelta(days=32)).replace(day=1)
    assert when == first
    assert when is not None and when.tzinfo is not None and when.utcoffset() == timedelta(hours=3)


def test_percentile_and_month_bounds() -> None:
    assert reports.percentile([], 0.9) is None
    assert reports.percentile([5], 0.9) == 5
    assert reports.percentile(list(range(1, 11)), 0.9) == 9
    assert reports.percentile(list(range(1, 12)), 0.9) == 10
    start, end = reports.month_bounds("2026-12", "Europe/Moscow")
    assert (start.isoformat(), end.isoformat()) == ("2026-12-01T00:00:00+03:00",
                                                    "2027-01-01T00:00:00+03:00")
    assert reports.previous_month(datetime(2026, 11, 1, 0, 30, tzinfo=MSK), "Europe/Moscow") \
        == "2026-10"
