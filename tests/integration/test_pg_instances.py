"""Several daemons on one PostgreSQL share the spool and outbox; a killed one's work is taken over.

Which instance does what is fixed by test-only gates (``daemon_proc.Gates``),
not left to the scheduler: instance A holds a row mid-transaction while B
works around it, and A is killed mid-transaction while B waits.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import time
from collections import Counter
from pathlib import Path

from daemon_proc import Daemon, Gates, free_port, wait_until, write_config
from sqlalchemy import text
from support.databases import postgres_database
from support.mails import build, new_id

from mailticket.store.db import make_engine


def send_all(port: int, ids: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        for mid in ids:
            # One sender per mail: the per-recipient cap on automatic mail (40 a day)
            # would otherwise, rightly, stop acknowledgements to a single address.
            sender = f"user-{mid[:8]}@acme.example"
            client.sendmail(sender, ["support@provider.example"],
                            build(from_=sender, message_id=mid, subject=mid[:8]))


def acks(*dirs: Path) -> list[str]:
    """In-Reply-To of every acknowledgement written by any instance."""
    found = []
    for directory in dirs:
        for path in (directory / "outgoing" / "new").glob("*"):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if msg["Auto-Submitted"] == "auto-replied":
                found.append(str(msg["In-Reply-To"]).strip("<>"))
    return found


def counts(url: str) -> tuple[int, Counter[str]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        tickets = conn.execute(text("SELECT count(*) FROM tickets")).scalar_one()
        ids = Counter(r[0] for r in conn.execute(
            text("SELECT message_id FROM articles WHERE direction = 'in'")))
    engine.dispose()
    return int(tickets), ids


def states(url: str, table: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {str(state): int(n) for state, n in conn.execute(
                text(f"SELECT state, count(*) FROM {table} GROUP BY state"))}
    finally:
        engine.dispose()


def settled(url: str) -> bool:
    return set(states(url, "spool")) | set(states(url, "outbox")) <= {"done"}


def test_two_instances_share_work_and_take_over_a_killed_one(tmp_path: Path) -> None:
    with postgres_database() as url:
        dirs = [tmp_path / "a", tmp_path / "b"]
        ports = [free_port(), free_port()]
        # A: holds its first mail mid-transaction, and later is killed in the middle
        # of its second. B: starts once A holds its row, pauses after its 59th mail.
        gates = [
            Gates(tmp_path / "gates-a", "worker.after_pipeline@1", "worker.after_pipeline@2"),
            Gates(tmp_path / "gates-b", "worker.before_claim@1", "worker.after_commit@59"),
        ]
        daemons = []
        for directory, port, gate in zip(dirs, ports, gates, strict=True):
            directory.mkdir()
            daemons.append(Daemon(write_config(directory, port=port, db_url=url),
                                  gates=gate).start())
        a, b = gates
        try:
            first = [new_id("acme.example") for _ in range(30)]
            second = [new_id("acme.example") for _ in range(30)]
            send_all(ports[0], first[:15] + second[:15])
            send_all(ports[1], first[15:] + second[15:])
            a.wait("worker.after_pipeline@1", daemons[0])
            # B takes every other row: A's is locked, so B skips it, lease or not.
            b.release("worker.before_claim@1")
            b.wait("worker.after_commit@59", daemons[1])
            assert states(url, "spool") == {"done": 59, "claimed": 1}
            a.release("worker.after_pipeline@1")
            wait_until(lambda: settled(url), timeout=30, interval=0.2)
            tickets, ids = counts(url)
            assert (tickets, Counter(ids.values())) == (60, Counter({1: 60}))

            # A is killed mid-transaction; its claimed row comes back when the lease (5 s)
            # expires, and B (released) takes it over with the other 39.
            third = [new_id("acme.example") for _ in range(40)]
            send_all(ports[0], third)
            a.wait("worker.after_pipeline@2", daemons[0])
            daemons[0].kill9()
            assert states(url, "spool") == {"done": 60, "claimed": 1, "queued": 39}
            b.release("worker.after_commit@59")
            wait_until(lambda: settled(url), timeout=60, interval=0.2)
            tickets, ids = counts(url)
            assert tickets == 100
            assert ids == Counter(first + second + third)  # every mail stored exactly once
            # Nobody was killed mid-send: every acknowledgement went out exactly once.
            assert Counter(acks(*dirs)) == Counter(first + second + third)
            assert daemons[1].stop() == 0
        finally:
            for daemon in daemons:
                daemon.close()


def instance_config(directory: Path, url: str, instance_id: str, grace: float) -> tuple[Path, int]:
    """An instance's config: its own id and port, a five-minute lease, ``grace`` seconds."""
    directory.mkdir()
    port = free_port()
    path = write_config(directory, port=port, db_url=url)
    text = path.read_text().replace('instance_id = "mt-e2e"',
                                    f'instance_id = "{instance_id}"\ninstance_grace = {grace}')
    path.write_text(text.replace("lease_seconds = 5", "lease_seconds = 300"))
    return path, port


def claimed(url: str) -> list[int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [int(i) for i in conn.execute(
                text("SELECT id FROM spool WHERE state = 'claimed' ORDER BY id")).scalars()]
    finally:
        engine.dispose()


def spool_state(url: str, row_id: int) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT state FROM spool WHERE id = :id"),
                                    {"id": row_id}).scalar_one())
    finally:
        engine.dispose()


def test_a_dead_instances_rows_are_taken_over_after_the_grace_not_the_lease(
    tmp_path: Path,
) -> None:
    # Issue 18.8: B used to wait out A's five-minute lease. With a heartbeat, B takes
    # A's row once A has been silent for instance_grace (1 s here).
    with postgres_database() as url:
        config_a, port_a = instance_config(tmp_path / "a", url, "mt-a", grace=1.0)
        config_b, _ = instance_config(tmp_path / "b", url, "mt-b", grace=1.0)
        gates = Gates(tmp_path / "gates-a", "worker.after_pipeline@1")
        a = Daemon(config_a, gates=gates).start()
        b: Daemon | None = None
        try:
            ids = [new_id("acme.example") for _ in range(3)]
            send_all(port_a, ids)
            gates.wait("worker.after_pipeline@1", a)
            [held] = claimed(url)
            b = Daemon(config_b).start()
            wait_until(lambda: states(url, "spool") == {"done": 2, "claimed": 1}, timeout=20)
            a.kill9()
            killed = time.monotonic()
            wait_until(lambda: spool_state(url, held) == "done", timeout=10, interval=0.02)
            taken = time.monotonic() - killed
            wait_until(lambda: settled(url), timeout=20, interval=0.1)
            assert counts(url)[1] == Counter(ids)
            assert Counter(acks(tmp_path / "a", tmp_path / "b")) == Counter(ids)
            assert "no heartbeat" in b.read_log()
            assert b.stop() == 0
        finally:
            a.close()
            if b is not None:
                b.close()
    print(f"\nPostgreSQL: a killed instance's row finished by another {taken:.2f} s after "
          "the kill (grace 1 s, lease 300 s)")
    assert taken < 5.0


def test_a_restarted_instance_takes_back_its_own_rows_at_once(tmp_path: Path) -> None:
    # The grace (60 s) and the lease (300 s) are both long: only the start-up check
    # (our instance id on this host, its pid gone) explains a prompt take-back.
    with postgres_database() as url:
        config, port = instance_config(tmp_path / "a", url, "mt-a", grace=60.0)
        gates = Gates(tmp_path / "gates", "worker.after_pipeline@1")
        daemon = Daemon(config, gates=gates).start()
        try:
            ids = [new_id("acme.example")]
            send_all(port, ids)
            gates.wait("worker.after_pipeline@1", daemon)
            [held] = claimed(url)
            daemon.kill9()
        finally:
            daemon.close()
        daemon = Daemon(config)
        started = time.monotonic()
        daemon.start()
        try:
            wait_until(lambda: spool_state(url, held) == "done", timeout=10, interval=0.02)
            taken = time.monotonic() - started
            wait_until(lambda: settled(url), timeout=20, interval=0.1)
            assert counts(url)[1] == Counter(ids)
            assert Counter(acks(tmp_path / "a")) == Counter(ids)
            assert daemon.stop() == 0
        finally:
            daemon.close()
    print(f"\nPostgreSQL: a restarted instance finished its own held row {taken:.2f} s after "
          "the restart (grace 60 s, lease 300 s)")
    assert taken < 5.0
