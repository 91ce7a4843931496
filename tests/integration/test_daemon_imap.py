"""IMAP end to end through the real daemon: Dovecot mailbox → spool → ticket → ack, mail moved."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_proc import Daemon, cli, free_port, tickets, wait_until, write_config
from support.dovecot import DovecotServer
from support.mails import build, new_id
from test_daemon import outgoing


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with DovecotServer(users={"support": "imap-secret"}) as server:
        yield server


def imap_section(srv: DovecotServer, password: str = "imap-secret") -> str:
    return f"""
[[imap]]
name = "office"
host = "127.0.0.1"
port = {srv.port}
tls = "none"
user = "support"
password = "{password}"
address = "support@provider.example"
folder = "INBOX"
processed_folder = "Processed"
poll_interval = 30
"""


def test_appended_mail_becomes_a_ticket_within_two_seconds(dovecot: DovecotServer,
                                                            tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), extra=imap_section(dovecot))
    # DEBUG, so the log says when the poller has drained the folder and sits in IDLE.
    config.write_text(config.read_text().replace('log_level = "INFO"', 'log_level = "DEBUG"'))
    daemon = Daemon(config).start()
    try:
        mid = new_id("acme.example")
        wait_until(lambda: "imap idle" in daemon.read_log(), timeout=10)
        appended = time.monotonic()
        dovecot.append("support", "INBOX", build(from_="ivan@acme.example", message_id=mid,
                                                  subject="Письмо через IMAP"))
        db = sqlite3.connect(tmp_path / "mt.db")
        wait_until(lambda: db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1,
                   timeout=10, interval=0.02)
        latency = time.monotonic() - appended
        db.close()
        print(f"\nIMAP append -> ticket committed: {latency:.2f} s")
        assert latency < 2.0
        [ticket] = tickets(config)
        assert ticket["subject"] == "Письмо через IMAP"
        acks = wait_until(lambda: [m for m in outgoing(tmp_path) if m["In-Reply-To"] == f"<{mid}>"])
        assert f"[#{ticket['ref']}]" in str(acks[0]["Subject"])
        wait_until(lambda: dovecot.uids("support", "INBOX") == [], timeout=5)
        assert len(dovecot.uids("support", "Processed")) == 1
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_check_config_connect_reports_each_account(dovecot: DovecotServer, tmp_path: Path) -> None:
    good = write_config(tmp_path, port=free_port(), extra=imap_section(dovecot))
    result = cli(good, "check-config", "--connect")
    assert "imap office: ok" in result.stdout
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = write_config(bad_dir, port=free_port(), extra=imap_section(dovecot, password="wrong"))
    result = cli(bad, "check-config", "--connect", check=False)
    assert result.returncode == 2
    assert "imap office: FAILED" in result.stdout
    assert "Traceback" not in result.stderr
