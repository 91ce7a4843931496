"""The admin's command line: exit codes, messages, and the spool/outbox/ticket commands."""

from __future__ import annotations

import email
import email.policy
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from daemon_proc import cli, free_port, write_config
from harness import Harness
from sqlalchemy import select
from support.mails import build
from test_reports import example_config, generate_october

from mailticket import config as config_mod
from mailticket.cli import main as cli_main
from mailticket.mail.addresses import make_reply_token, reply_address
from mailticket.policy import oncall
from mailticket.runners.scheduler import Scheduler
from mailticket.store import workqueue
from mailticket.store.db import make_engine, make_sessionmaker, transaction
from mailticket.store.migrate import upgrade
from mailticket.store.schema import OutboxItem, SpoolItem

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_is_valid() -> None:
    result = cli(REPO / "config.example.toml", "check-config")
    assert result.stdout.strip().endswith("config.example.toml: ok")


def test_bad_config_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port())
    text = config.read_text().replace('line = "L1"', 'line = "L9"')
    text = text.replace('sla_plan = "standard"', 'sla_plan = "gold"')
    text += '\n[[listeners]]\nhost = "127.0.0.1"\nport = 70000\nprotocol = "smtpx"\n'
    config.write_text(text)
    result = cli(config, "check-config", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any(":engineers" in line and "line" in line and "L9" in line for line in lines) or any(
        "line" in line and "must be one of" in line for line in lines)
    assert any("sla_plan" in line and "gold" in line for line in lines)
    assert any("port" in line and "1-65535" in line for line in lines)
    assert any("protocol" in line and "smtp" in line for line in lines)
    for line in lines[:-1]:
        assert line.startswith(f"{config}:"), line
    assert "Traceback" not in result.stderr


def test_check_config_compiles_every_template_and_names_the_broken_ones(tmp_path: Path) -> None:
    # An admin's edit that breaks a template is found by check-config, with the
    # file and line, instead of failing the first mail that needs the template.
    templates = tmp_path / "templates"
    for locale in ("ru", "en"):
        (templates / locale).mkdir(parents=True)
        for source in (REPO / "templates" / locale).glob("*.j2"):
            (templates / locale / source.name).write_text(source.read_text(encoding="utf-8"),
                                                           encoding="utf-8")
    ack = templates / "ru" / "ack.j2"
    lines = ack.read_text(encoding="utf-8").splitlines()
    broken_at = next(i for i, line in enumerate(lines) if "{% block text %}" in line)
    lines[broken_at] = "{% block text %}{% if customer_name %}"  # an unclosed if
    ack.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (templates / "en" / "reply.j2").write_text('{% extends "_layout.j2" %}', encoding="utf-8")
    config = write_config(tmp_path, port=free_port())
    config.write_text(config.read_text().replace(str(REPO / "templates"), str(templates)))
    result = cli(config, "check-config", check=False)
    assert result.returncode == 2, result.stderr
    errors = result.stderr.strip().splitlines()
    assert errors[-1] == (f"2 template problem(s) in {templates} (templates_dir of {config})")
    assert any(line.startswith(f"{ack}:") and "endif" in line for line in errors), errors
    assert any(line.startswith(f"{templates / 'en' / 'reply.j2'}:") and "uses _layout.j2" in line
               for line in errors), errors
    assert "Traceback" not in result.stderr
    # The shipped templates all compile (test_shipped_config_is_valid runs the same check).


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[daemon\nworkers = 1\n")
    result = cli(config, "serve", check=False)
    assert result.returncode == 2
    assert "invalid TOML" in result.stderr and "Traceback" not in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = cli(tmp_path / "nope.toml", "check-config", check=False)
    assert result.returncode == 2
    assert "nope.toml" in result.stderr


def _spooled(config: Path, db: Path, raws: list[bytes]) -> list[int]:
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    factory = make_sessionmaker(engine)
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    ids = []
    with transaction(factory) as s:
        for raw in raws:
            row, _ = workqueue.put_spool(s, SpoolItem(
                source="smtp", mail_from="x@y", rcpt_tos=["support@provider.example"], raw=raw,
                size=len(raw), state="queued", attempts=0, next_attempt_at=now, created_at=now))
            ids.append(row.id)
    engine.dispose()
    return ids


def test_spool_tickets_and_outbox_commands(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port())
    db = tmp_path / "mt.db"
    ids = _spooled(config, db, [build(from_="ivan@acme.example", subject="Первая"),
                                build(from_="stranger@nowhere.example", subject="Чужое")])
    out = cli(config, "process", "--send").stdout
    assert "processed 2 spooled message(s)" in out

    rejected = json.loads(cli(config, "spool", "list", "--state", "rejected", "--json").stdout)
    assert [(r["id"], r["outcome"]) for r in rejected] == [(ids[1], "unknown_sender")]

    [ticket] = json.loads(cli(config, "tickets", "list", "--json").stdout)
    shown = json.loads(cli(config, "tickets", "show", ticket["ref"], "--json").stdout)
    assert set(shown) >= {"ref", "subject", "status", "priority", "contract", "requester",
                          "created_at", "articles", "events"}
    assert shown["articles"][0]["direction"] == "in" and shown["articles"][0]["kind"] == "customer"
    assert {"message_id", "from", "direction", "kind", "text", "created_at"} <= set(shown["articles"][0])

    missing = cli(config, "tickets", "show", "MT-999", check=False)
    assert missing.returncode == 4 and "no ticket MT-999" in missing.stderr

    # A rejected row can be replayed or dropped by the admin.
    assert "queued again" in cli(config, "spool", "retry", str(ids[1])).stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT state, attempts FROM spool WHERE id=?", (ids[1],)).fetchone() == (
            "queued", 0)
    assert "dropped" in cli(config, "spool", "drop", str(ids[1])).stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT state FROM spool WHERE id=?", (ids[1],)).fetchone() == ("dropped",)
    assert cli(config, "spool", "retry", "9999", check=False).returncode == 4

    outbox = json.loads(cli(config, "outbox", "list", "--json").stdout)
    assert {r["kind"] for r in outbox} >= {"ack", "unknown_sender"}
    assert all(r["state"] == "done" for r in outbox)
    assert "queued again" in cli(config, "outbox", "retry", str(outbox[0]["id"])).stdout


def test_old_schema_is_refused_by_cli(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port())
    result = cli(config, "tickets", "list", check=False)
    assert result.returncode == 3
    assert "mailticket db upgrade" in result.stderr
    assert "database upgraded" in cli(config, "db", "upgrade").stdout
    assert cli(config, "tickets", "list").returncode == 0


MSK = ZoneInfo("Europe/Moscow")


def _msk(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=MSK).astimezone(UTC)


def _shipped(tmp_path: Path, url: str) -> tuple[Path, Harness]:
    """The shipped config on the test's SQLite database, and a pipeline harness on it."""
    config = example_config(tmp_path, url)
    return config, Harness(config_mod.load(config))


def test_sla_show_explains_plan_intervals_pauses_and_each_event_sent(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, h = _shipped(tmp_path, sqlite_url)
    support = "support@example.com"
    try:
        def customer(when: datetime, subject: str, body: str) -> None:
            h.clock.now = when
            h.deliver(build(from_="it@acme.example", to=support, subject=subject, body=body),
                      mail_from="it@acme.example", rcpt=(support,))

        def anna(when: datetime, body: str) -> None:
            h.clock.now = when
            token = make_reply_token(h.config.mail.reply_token_secret, 1, "anna@example.com",
                                     when.date())
            to = reply_address(support, token)
            h.deliver(build(from_="anna@example.com", to=to, subject="Re: [#MT-1]", body=body),
                      mail_from="anna@example.com", rcpt=(to,))

        # A major ticket on Moscow business hours (2 h / 12 h), opened Wednesday 19:00.
        customer(_msk(11, 19, 0), "[СРОЧНО] Не приходит почта", "Почта не приходит.")
        for when in (_msk(12, 8, 30), _msk(12, 9, 0)):  # the scheduler's warning and breach
            h.clock.now = when
            Scheduler(h.app, clock=h.clock).sla_scan()
        anna(_msk(12, 9, 30), "#status waiting\n\nПришлите, пожалуйста, логи.")
        customer(_msk(12, 11, 0), "Re: [#MT-1] [СРОЧНО] Не приходит почта", "Логи во вложении.")
        anna(_msk(12, 15, 0), "#status resolved\n\nИсправили фильтр.")
    finally:
        h.close()
    out = cli(config, "sla", "show", "MT-1").stdout.splitlines()
    now = next(line for line in out if line.startswith("Times in "))
    assert out == [
        "MT-1  [СРОЧНО] Не приходит почта",
        "Plan: Standard (standard); priority major; warning at 75% of each target",
        "Rules: priority change from_start (a new priority's targets count from the ticket's "
        "start); pause on question (only status waiting set by a reply to the customer pauses)",
        "Calendar: business (Europe/Moscow; Mon–Fri 08:00–20:00; Sat–Sun off; "
        "production calendar RU; holidays: 0, extra working days: 0)",
        now,
        "Paused: 2026-11-12 Thu 09:30 MSK → 2026-11-12 Thu 11:00 MSK",
        "first_response: target 120 business min, counted from 2026-11-11 Wed 19:00 MSK "
        "(the ticket's start); state breached",
        "  due 2026-11-12 Thu 09:00 MSK (as it stood when met); "
        "warning at 2026-11-12 Thu 08:30 MSK",
        "  met at 2026-11-12 Thu 09:30 MSK: 30 min overdue; used 150 of 120 min",
        "  counted 2026-11-11 Wed 19:00 MSK → 2026-11-11 Wed 20:00 MSK (60 min)",
        "  counted 2026-11-12 Thu 08:00 MSK → 2026-11-12 Thu 09:30 MSK (90 min)",
        # The pause (09:30–11:00) does not count; the due instant moved by its 90 minutes.
        "resolution: target 720 business min, counted from 2026-11-11 Wed 19:00 MSK "
        "(the ticket's start); state met",
        "  due 2026-11-13 Fri 08:30 MSK (as it stood when met); "
        "warning at 2026-11-12 Thu 17:30 MSK",
        "  met at 2026-11-12 Thu 15:00 MSK: in time; used 390 of 720 min",
        "  counted 2026-11-11 Wed 19:00 MSK → 2026-11-11 Wed 20:00 MSK (60 min)",
        "  counted 2026-11-12 Thu 08:00 MSK → 2026-11-12 Thu 09:30 MSK (90 min)",
        "  counted 2026-11-12 Thu 11:00 MSK → 2026-11-12 Thu 15:00 MSK (240 min)",
        "Next check: none (nothing more can fire)",
        "Record:",
        # Each event once, with whom it was sent to, each address once.
        "  2026-11-12 Thu 08:30 MSK  first_response warning (due 2026-11-12 Thu 09:00 MSK; "
        "major); sent 2026-11-12 Thu 08:30 MSK to anna@example.com (assignee), "
        "boris@example.com (deputy)",
        "  2026-11-12 Thu 09:00 MSK  first_response breach (due 2026-11-12 Thu 09:00 MSK; "
        "major); sent 2026-11-12 Thu 09:00 MSK to anna@example.com (assignee), "
        "boris@example.com (deputy), clara@example.com (escalation)",
        "  2026-11-12 Thu 09:30 MSK  first_response met (due 2026-11-12 Thu 09:00 MSK; "
        "30 min overdue; major)",
        "  2026-11-12 Thu 09:30 MSK  pause (major)",
        "  2026-11-12 Thu 11:00 MSK  resume (major)",
        "  2026-11-12 Thu 15:00 MSK  resolution met (due 2026-11-13 Fri 08:30 MSK; in time; "
        "major)",
        # The customer's 11:00 message was answered at 15:00: the next response, in time.
        "  2026-11-12 Thu 15:00 MSK  next_response met (due 2026-11-12 Thu 15:00 MSK; in time; "
        "major)",
    ]
    assert cli_main(["-c", str(config), "sla", "show", "MT-99"]) == 4
    assert capsys.readouterr().err == "mailticket: no ticket MT-99\n"


def test_report_monthly_mails_through_the_outbox(tmp_path: Path, sqlite_url: str) -> None:
    config, h = _shipped(tmp_path, sqlite_url)
    try:
        generate_october(h.factory)
    finally:
        h.close()
    result = cli(config, "report", "monthly", "--contract", "acme", "--month", "2026-10")
    assert result.stdout == ("monthly report acme 2026-10: queued for it@acme.example, "
                             "ops@partner.example, account-manager@example.com\n")
    engine = make_engine(sqlite_url)
    with transaction(make_sessionmaker(engine)) as s:
        [row] = s.scalars(select(OutboxItem)).all()
        assert (row.kind, row.rcpt_tos) == ("monthly_report", [
            "it@acme.example", "ops@partner.example", "account-manager@example.com"])
        msg = email.message_from_bytes(row.raw, policy=email.policy.default)
    engine.dispose()
    assert str(msg["Subject"]) == "Отчёт о техподдержке за 2026-10: ACME Ltd"
    types = [part.get_content_type() for part in msg.walk()]
    # Four charts inline (compliance, response times, trend, hours), then the CSV.
    assert types == ["multipart/mixed", "multipart/alternative", "text/plain",
                     "multipart/related", "text/html", *["image/png"] * 4, "text/csv"]


def test_oncall_prints_the_rota_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = example_config(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}")
    before = datetime.now(UTC)
    out = cli(config, "oncall", "--weeks", "3").stdout.splitlines()
    cfg = config_mod.load(config)
    expected = [[s.starts_at, s.pair] for s in oncall.upcoming(cfg.oncall, before, 3)]
    assert len(out) == 3
    for line, (starts_at, pair) in zip(out, expected, strict=True):
        assert line.startswith(starts_at.astimezone(ZoneInfo("Europe/Moscow"))
                               .strftime("%Y-%m-%d %a 10:00 → "))
        names = {"anna@example.com": "Anna Petrova", "boris@example.com": "Boris Ivanov",
                 "clara@example.com": "Clara Smith", "dmitry@example.com": "Dmitry Sokolov"}
        assert line.endswith("\t" + ", ".join(f"{names[a]} <{a}>" for a in pair))
    text = config.read_text(encoding="utf-8")
    start = text.index("[oncall]\n")
    config.write_text(text[:start] + text[text.index("[reports]\n"):], encoding="utf-8")
    assert cli_main(["-c", str(config), "oncall"]) == 0
    assert capsys.readouterr().out == "no on-call rota configured: critical tickets page nobody\n"
