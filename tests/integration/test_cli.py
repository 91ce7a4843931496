"""The admin's command line: exit codes, messages, and the spool/outbox/ticket commands."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from daemon_proc import cli, free_port, write_config
from support.mails import build

from mailticket.store import workqueue
from mailticket.store.db import make_engine, make_sessionmaker, transaction
from mailticket.store.migrate import upgrade
from mailticket.store.schema import SpoolItem

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
