"""kill -9 of the real daemon at each stage of the mail path: nothing lost, nothing doubled.

The daemon runs as a subprocess with its relay pointed at an ``SmtpSink`` in
this process. Every kill lands at a chosen point, never after a race with the
clock: the sink's ``on_data`` hook holds the relay inside DATA, or kills the
daemon right after it has recorded the mail but before its 250 reaches the
daemon; the worker is caught mid-transaction by a test-only gate
(``daemon_proc.Gates``, ``mailticket.runners.gates``) that holds it there.

After each restart the invariants of the mail path are checked:

* every inbound Message-ID is stored as exactly one article;
* every outbox row reached the sink at least once (and is marked done);
* duplicates at the sink happen only in the "relay said 250, we had not yet
  recorded it" window, and then carry the same Message-ID.

Also here: a poison message (a database trigger refuses to store that one
mail) is quarantined after ``worker.max_attempts`` without holding up the mail
behind it, and ``mailticket spool retry`` brings it back once the fault is
fixed; and a full disk (SQLite's own SQLITE_FULL, from a page cap) answers
``451`` so the sending MTA keeps the mail and retries.

Covered elsewhere, not repeated here: a kill right after the spool write,
between 250 and processing
(``test_daemon.py::test_kill9_between_250_and_processing_loses_and_duplicates_nothing``)
and a locked database answering 451
(``test_smtp_listener.py::test_locked_database_gives_451_then_the_retry_is_queued``).
"""

from __future__ import annotations

import base64
import os
import smtplib
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_proc import (
    Daemon,
    Gates,
    free_port,
    query,
    settled,
    states,
    wait_until,
    write_config,
)
from sqlalchemy import event, text
from stack import Stack
from support.mails import build, new_id
from support.smtp_sink import Received, SmtpSink

from mailticket.cli import main as cli_main


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


def relay_config(directory: Path, sink: SmtpSink, *, poll_interval: float = 0.05) -> Path:
    """The daemon's config with the relay pointed at ``sink``."""
    path = write_config(directory, port=free_port(), poll_interval=poll_interval)
    path.write_text(path.read_text().replace(
        "[relay]\n",
        f'[relay]\nhost = "127.0.0.1"\nport = {sink.port}\n'
        "retry_base_seconds = 0.1\nretry_max_seconds = 0.5\n",
    ))
    return path


def port_of(config: Path) -> int:
    line = next(x for x in config.read_text().splitlines() if x.startswith("port = "))
    return int(line.split("=")[1])


def send_all(config: Path, ids: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port_of(config), timeout=10) as client:
        for mid in ids:
            client.sendmail("ivan@acme.example", ["support@provider.example"],
                            build(from_="ivan@acme.example", message_id=mid,
                                  subject=f"case {mid[:8]}"))


def message_ids(received: list[Received]) -> Counter[str]:
    return Counter(str(r.message["Message-ID"]).strip("<>") for r in received)


def check_invariants(directory: Path, sink: SmtpSink, inbound: list[str],
                     *, may_repeat: int = 0) -> Counter[str]:
    """The three invariants; returns the Message-IDs that reached the sink more than once."""
    stored = Counter(mid for (mid,) in query(
        directory, "SELECT message_id FROM articles WHERE direction = 'in'"))
    assert stored == Counter(inbound), "each inbound mail is stored exactly once"
    outbox = dict(query(directory, "SELECT message_id, state FROM outbox"))
    assert set(outbox.values()) == {"done"}
    seen = message_ids(sink.messages)
    assert set(outbox) == set(seen), "every outbox row reached the relay, nothing else did"
    repeated = Counter({mid: n for mid, n in seen.items() if n > 1})
    assert sum(repeated.values()) - len(repeated) <= may_repeat
    return repeated


def test_kill9_mid_transaction_processes_every_mail_once(tmp_path: Path, sink: SmtpSink) -> None:
    config = relay_config(tmp_path, sink)
    ids = [new_id("acme.example") for _ in range(40)]
    # The worker starts once all forty are spooled and is killed inside the
    # transaction of the 21st; the drainer is held before its first claim, so
    # no send is cut short and every outbox row waits for the restart.
    gates = Gates(tmp_path / "gates", "worker.before_claim@1", "worker.after_pipeline@21",
                  "outbox.before_claim@1")
    daemon = Daemon(config, gates=gates).start()
    try:
        send_all(config, ids)
        gates.release("worker.before_claim@1")
        gates.wait("worker.after_pipeline@21", daemon)
        daemon.kill9()
    finally:
        daemon.close()
    # The 21st was claimed (its attempt counted) by the 20th's committed transaction.
    assert states(tmp_path, "spool") == {"done": 20, "claimed": 1, "queued": 19}
    [(in_flight, attempts)] = query(tmp_path, "SELECT id, attempts FROM spool WHERE state = 'claimed'")
    assert attempts == 1
    assert states(tmp_path, "outbox") == {"queued": 40}  # an ack and a notice for each of 20
    assert sink.messages == []
    daemon = Daemon(config).start()
    try:
        # The restarted daemon takes back the killed one's claim at once (runners.recovery).
        wait_until(lambda: settled(tmp_path), timeout=40, interval=0.2)
        assert check_invariants(tmp_path, sink, ids) == Counter()
        # Each of the forty got one ack and the L1 engineer one notice, once.
        assert len(sink.messages) == 80
        assert query(tmp_path, f"SELECT attempts FROM spool WHERE id = {in_flight}") == [(2,)]
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_kill9_after_outbox_commit_and_mid_relay_sends_every_mail(
    tmp_path: Path, sink: SmtpSink
) -> None:
    config = relay_config(tmp_path, sink)
    ids = [new_id("acme.example") for _ in range(5)]
    in_data = threading.Event()
    killed = threading.Event()

    def hold_then_fail(got: Received) -> None:
        # The relay is inside DATA; the daemon is killed before any answer.
        in_data.set()
        killed.wait(10)
        raise ConnectionAbortedError("daemon died mid-DATA")

    sink.on_data(hold_then_fail)
    daemon = Daemon(config).start()
    try:
        send_all(config, ids)
        assert in_data.wait(20)
        wait_until(lambda: query(tmp_path, "SELECT count(*) FROM spool WHERE state = 'done'")
                   [0][0] == 5, timeout=20)
        daemon.kill9()
    finally:
        killed.set()
        daemon.close()
    sink.on_data(None)
    assert sink.messages == []
    pending = query(tmp_path, "SELECT state, count(*) FROM outbox GROUP BY state")
    assert dict(pending) == {"claimed": 1, "queued": 9}  # type: ignore[arg-type]
    daemon = Daemon(config).start()
    try:
        # The restarted daemon takes back the killed one's claim at once (runners.recovery).
        wait_until(lambda: settled(tmp_path), timeout=20, interval=0.2)
        assert check_invariants(tmp_path, sink, ids) == Counter()
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_kill9_after_relay_250_before_marking_sent_resends_with_the_same_message_id(
    tmp_path: Path, sink: SmtpSink
) -> None:
    config = relay_config(tmp_path, sink)
    ids = [new_id("acme.example")]
    daemon = Daemon(config).start()
    first: list[Received] = []

    def kill_before_the_250_arrives(got: Received) -> None:
        # The sink has the mail (it records it when this returns); the daemon dies
        # before it can read the 250 and mark the row sent.
        if not first:
            first.append(got)
            daemon.kill9()

    sink.on_data(kill_before_the_250_arrives)
    try:
        send_all(config, ids)
        # The sink records the mail only after the hook returns, i.e. after the kill.
        sink.wait_for(1, timeout=20)
    finally:
        daemon.close()
    sink.on_data(None)
    assert len(sink.messages) == 1
    daemon = Daemon(config).start()
    try:
        # The restarted daemon takes back the killed one's claim at once (runners.recovery).
        wait_until(lambda: settled(tmp_path), timeout=20, interval=0.2)
        repeated = check_invariants(tmp_path, sink, ids, may_repeat=1)
        assert repeated == Counter({str(first[0].message["Message-ID"]).strip("<>"): 2})
        twice = [r.data for r in sink.messages if r.message["Message-ID"] == first[0].message["Message-ID"]]
        assert twice[0] == twice[1]  # the very same bytes
        assert daemon.stop() == 0
    finally:
        daemon.close()


POISON_ID = "poison.1@acme.example"


def test_poison_message_is_quarantined_without_blocking_the_queue_and_can_be_retried(
    tmp_path: Path, sink: SmtpSink, capsys: pytest.CaptureFixture[str]
) -> None:
    config = relay_config(tmp_path, sink)
    daemon = Daemon(config).start()
    # A fault tied to one mail only: the database refuses to store its article.
    db = sqlite3.connect(tmp_path / "mt.db")
    db.execute("CREATE TRIGGER poison BEFORE INSERT ON articles "
               f"WHEN NEW.message_id = '{POISON_ID}' "
               "BEGIN SELECT RAISE(ABORT, 'poisoned by the test trigger'); END")
    db.commit()
    healthy = [new_id("acme.example") for _ in range(4)]
    try:
        send_all(config, [POISON_ID, *healthy])  # the poison one is first in the queue
        wait_until(lambda: settled(tmp_path), timeout=30, interval=0.2)
        [(state, attempts, error)] = query(
            tmp_path, "SELECT state, attempts, last_error FROM spool WHERE state != 'done'")
        assert (state, attempts) == ("quarantined", 3)
        assert "poisoned by the test trigger" in str(error)
        check_invariants(tmp_path, sink, healthy)
        assert len(sink.messages) == 8  # an ack and a notice for each healthy mail
        # The admin fixes the fault and queues the mail again: nothing was lost.
        db.execute("DROP TRIGGER poison")
        db.commit()
        [(spool_id,)] = query(tmp_path, "SELECT id FROM spool WHERE state = 'quarantined'")
        assert cli_main(["-c", str(config), "spool", "retry", str(spool_id)]) == 0
        wait_until(lambda: settled(tmp_path), timeout=20, interval=0.2)
        check_invariants(tmp_path, sink, [POISON_ID, *healthy])
        assert len(sink.messages) == 10
        assert daemon.stop() == 0
    finally:
        db.close()
        daemon.close()


def test_disk_full_answers_451_and_the_retry_is_queued(sqlite_url: str, tmp_path: Path) -> None:
    with SmtpSink() as relay:
        stack = Stack(tmp_path, sqlite_url, relay)
        try:
            with stack.engine.connect() as conn:
                pages = int(conn.execute(text("PRAGMA page_count")).scalar_one())
            cap = {"pages": pages + 4}

            # SQLite's own "database or disk is full" (SQLITE_FULL), from a page cap.
            @event.listens_for(stack.engine, "connect")
            def _full_disk(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.execute(f"PRAGMA max_page_count = {cap['pages']}")

            stack.engine.dispose()
            raw = build(from_="ivan@acme.example",
                        body=base64.b64encode(os.urandom(150_000)).decode())
            with smtplib.SMTP("127.0.0.1", stack.port, timeout=10) as client:
                client.ehlo()
                client.mail("ivan@acme.example")
                client.rcpt("support@provider.example")
                assert client.data(raw) == (451, b"4.3.0 Temporary failure, please retry")
                assert stack.spool() == []
                cap["pages"] = 1 << 30  # the admin frees space; the MTA retries
                stack.engine.dispose()
                client.mail("ivan@acme.example")
                client.rcpt("support@provider.example")
                code, _ = client.data(raw)
            assert code == 250
            stack.settle()
            assert [(r.state, r.outcome) for r in stack.spool()] == [("done", "new")]
            assert len(stack.tickets()) == 1
        finally:
            stack.close()
