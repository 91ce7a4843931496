"""The real daemon process: SMTP in, ticket and acknowledgement out, crash and restart.

Kills land where a test-only gate holds the daemon (``daemon_proc.Gates``),
never after a race with the clock.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_proc import (
    Daemon,
    Gates,
    cli,
    free_port,
    query,
    states,
    tickets,
    wait_until,
    write_config,
)
from sqlalchemy import text
from support.mails import build, new_id

from mailticket.store.db import make_engine
from mailticket.store.migrate import upgrade


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def outgoing(directory: Path) -> list[email.message.EmailMessage]:
    new = directory / "outgoing" / "new"
    msgs = []
    for path in sorted(new.glob("*")) if new.is_dir() else []:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        msgs.append(msg)
    return msgs


def send(port: int, raw: bytes, rcpt: str = "support@provider.example") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("ivan@acme.example", [rcpt], raw)


def test_mail_becomes_ticket_and_ack_lands_in_maildir(workdir: Path) -> None:
    port = free_port()
    config = write_config(workdir, port=port)
    daemon = Daemon(config).start()
    try:
        mid = new_id("acme.example")
        send(port, build(from_="Иван <ivan@acme.example>", to="support@provider.example",
                         subject="Не работает принтер", message_id=mid))
        [ticket] = wait_until(lambda: tickets(config))
        assert (ticket["subject"], ticket["contract"], ticket["requester"]) == (
            "Не работает принтер", "acme", "ivan@acme.example")
        acks = wait_until(lambda: [m for m in outgoing(workdir) if m["In-Reply-To"] == f"<{mid}>"])
        assert f"[#{ticket['ref']}]" in str(acks[0]["Subject"])
        assert acks[0]["To"] == "ivan@acme.example"
        shown = cli(config, "tickets", "show", ticket["ref"], "--json").stdout
        assert mid in shown and '"direction": "in"' in shown
        assert daemon.stop() == 0
    finally:
        daemon.close()
    assert "mailticket ready" in daemon.read_log()


def test_kill9_between_250_and_processing_loses_and_duplicates_nothing(workdir: Path) -> None:
    port = free_port()
    config = write_config(workdir, port=port)
    # The worker is held before its first claim: it never touches the spool before the kill.
    gates = Gates(workdir / "gates", "worker.before_claim@1")
    daemon = Daemon(config, gates=gates).start()
    ids = [new_id("acme.example") for _ in range(10)]
    try:
        for mid in ids:
            send(port, build(from_="ivan@acme.example", message_id=mid, subject=f"case {mid[:6]}"))
        daemon.kill9()
    finally:
        daemon.close()
    queued = cli(config, "spool", "list", "--state", "queued", "--json").stdout
    assert queued.count('"state": "queued"') == 10
    assert query(workdir, "SELECT DISTINCT state, attempts FROM spool") == [("queued", 0)]
    assert tickets(config) == []

    daemon = Daemon(config).start()
    try:
        found = wait_until(lambda: len(tickets(config)) == 10 and tickets(config))
        assert sorted(t["subject"] for t in found) == sorted(f"case {m[:6]}" for m in ids)
        acks = wait_until(lambda: len(outgoing(workdir)) >= 20 and outgoing(workdir))
        replies_to = [str(m["In-Reply-To"]) for m in acks if m["Auto-Submitted"] == "auto-replied"]
        assert sorted(replies_to) == sorted(f"<{m}>" for m in ids)
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_kill9_during_processing_keeps_exactly_once(workdir: Path) -> None:
    port = free_port()
    config = write_config(workdir, port=port)
    ids = [new_id("acme.example") for _ in range(40)]
    # Once all forty are spooled the worker runs until it has committed the 20th
    # (holding the claim on the 21st); the drainer stops with the 5th outgoing
    # mail written to the maildir but not yet marked sent. Neither holds the
    # database while it waits, so both points are reached; then the kill.
    gates = Gates(workdir / "gates", "worker.before_claim@1", "worker.after_commit@20",
                  "outbox.after_send@5")
    daemon = Daemon(config, gates=gates).start()
    try:
        for mid in ids:
            send(port, build(from_="ivan@acme.example", message_id=mid))
        gates.release("worker.before_claim@1")
        gates.wait("worker.after_commit@20", daemon)
        gates.wait("outbox.after_send@5", daemon)
        daemon.kill9()
    finally:
        daemon.close()
    assert states(workdir, "spool") == {"done": 20, "claimed": 1, "queued": 19}
    assert states(workdir, "outbox") == {"done": 4, "claimed": 1, "queued": 35}
    [(unrecorded,)] = query(workdir, "SELECT message_id FROM outbox WHERE state = 'claimed'")
    assert len(outgoing(workdir)) == 5
    daemon = Daemon(config).start()
    try:
        # The killed claims run out (worker.lease_seconds, 5 s here) before they are taken again.
        wait_until(lambda: len(tickets(config)) == 40, timeout=40, interval=0.2)
        wait_until(lambda: states(workdir, "outbox") == {"done": 80}, timeout=40, interval=0.2)
        assert daemon.stop() == 0
    finally:
        daemon.close()
    stored = [mid for (mid,) in query(workdir, "SELECT message_id FROM articles WHERE direction = 'in'")]
    assert sorted(stored) == sorted(ids)  # type: ignore[type-var]
    # An ack and a notice for each mail; only the one written but not marked sent
    # when the daemon died is written again, with the same Message-ID (at least once).
    written = Counter(str(m["Message-ID"]).strip("<>") for m in outgoing(workdir))
    assert len(written) == 80
    assert {mid: n for mid, n in written.items() if n > 1} == {unrecorded: 2}
    acks = [m for m in outgoing(workdir) if m["Auto-Submitted"] == "auto-replied"]
    assert sorted({str(m["In-Reply-To"]) for m in acks}) == sorted(f"<{m}>" for m in ids)


def test_second_sqlite_instance_is_refused(workdir: Path) -> None:
    port = free_port()
    config = write_config(workdir, port=port)
    daemon = Daemon(config).start()
    try:
        other = write_config(workdir / ".." / workdir.name, port=free_port())
        result = cli(other, "serve", check=False)
        assert result.returncode == 1
        assert "another mailticket instance already uses" in result.stderr
        assert "use PostgreSQL" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        daemon.stop()
        daemon.close()


def test_daemon_refuses_an_old_schema(workdir: Path) -> None:
    db = workdir / "old.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine, "0001")
    engine.dispose()
    config = write_config(workdir, port=free_port(), db_url=f"sqlite:///{db}")
    from mailticket.store.migrate import head_revision

    if head_revision() == "0001":
        # Only one migration exists: simulate an old database by stamping an unknown
        # revision, which the daemon must refuse just the same.
        engine = make_engine(f"sqlite:///{db}")
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
        engine.dispose()
    result = cli(config, "serve", check=False)
    assert result.returncode == 3
    assert "mailticket db upgrade" in result.stderr
    assert "Traceback" not in result.stderr
