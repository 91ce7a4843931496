"""Back up a live SQLite database while the worker runs, restore it elsewhere, and carry on."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from harness import Harness
from sqlalchemy import select
from support.configs import make_config
from support.mails import build, new_id

from mailticket.daemon import InstanceLock
from mailticket.errors import MailticketError
from mailticket.store import migrate
from mailticket.store.backup import PG_HINT, backup, restore
from mailticket.store.db import transaction
from mailticket.store.schema import OutboxItem, QueueState, SpoolItem, Ticket


@pytest.fixture
def live(sqlite_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(make_config(tmp_path, sqlite_url))
    yield harness
    harness.close()


def _snapshot_is_consistent(h: Harness) -> None:
    """Every finished spool row has its ticket and its ack: no half-committed message."""
    with transaction(h.factory) as s:
        for row in s.scalars(select(SpoolItem).where(SpoolItem.state == QueueState.DONE)):
            assert row.ticket_id is not None and s.get(Ticket, row.ticket_id) is not None
            acks = s.scalars(select(OutboxItem).where(
                OutboxItem.ticket_id == row.ticket_id, OutboxItem.kind == "ack")).all()
            assert len(acks) == 1


def test_backup_of_a_busy_database_restores_and_processing_continues(
    live: Harness, tmp_path: Path
) -> None:
    first_id = new_id("acme.example")
    live.deliver(build(from_="ivan@acme.example", message_id=first_id, subject="Первая заявка"))
    [first] = live.tickets()
    # Due later than the live worker's clock: these stay queued through the backup.
    later = live.clock.now + timedelta(hours=1)
    waiting = [live.spool(build(from_=f"user{i}@acme.example", subject=f"Позже {i}",
                                body="Позже " * 20_000))
               for i in range(3)]
    with transaction(live.factory) as s:
        for spool_id in waiting:
            row = s.get(SpoolItem, spool_id)
            assert row is not None
            row.next_attempt_at = later
    # Traffic during the backup: a writer spools and the worker processes.
    stop = threading.Event()
    written: list[int] = []

    def traffic() -> None:
        i = 0
        while not stop.is_set() or i < 5:
            written.append(live.spool(build(from_=f"busy{i}@globex.example", subject=f"Busy {i}",
                                            body="x" * 20_000)))
            i += 1

    writer = threading.Thread(target=traffic)
    worker = threading.Thread(target=live.worker.run, args=(stop,))
    writer.start()
    worker.start()
    steps: list[tuple[int, int]] = []
    dest = tmp_path / "backups" / "mt.db"
    dest.parent.mkdir()
    try:
        result = backup(live.config.database.url, dest,
                        progress=lambda done, total: steps.append((done, total)),
                        pages_per_step=8)
    finally:
        stop.set()
        writer.join(30)
        worker.join(30)
    written.append(live.spool(build(from_="after@globex.example", subject="After the backup")))
    assert result.revision == migrate.head_revision()
    assert result.size == dest.stat().st_size and result.pages == steps[-1][1]
    assert len(steps) > 1 and steps[-1][0] == steps[-1][1]
    assert dest.stat().st_mode & 0o777 == 0o600
    assert not list(dest.parent.glob(".*partial"))

    restored_url = f"sqlite:///{tmp_path / 'restored' / 'mailticket.db'}"
    outcome = restore(dest, restored_url)
    assert (outcome.moved_aside, outcome.needs_upgrade) == (None, False)
    h = Harness(dataclasses.replace(live.config, database=dataclasses.replace(
        live.config.database, url=restored_url)))
    try:
        h.clock.now = live.clock.now
        _snapshot_is_consistent(h)
        with transaction(h.factory) as s:
            states = {row.id: row.state for row in s.scalars(select(SpoolItem))}
        assert all(states[i] == QueueState.QUEUED for i in waiting)
        # Rows spooled before the backup are all there; the traffic after it is not.
        assert set(states) <= {1, *waiting, *written} and len(states) < 1 + 3 + len(written)
        h.clock.advance(hours=2)
        h.worker.drain()
        with transaction(h.factory) as s:
            assert [r.state for r in s.scalars(select(SpoolItem))] == [QueueState.DONE] * len(states)
        _snapshot_is_consistent(h)
        # A reply to the pre-backup ticket threads onto it in the restored database.
        h.deliver(build(from_="ivan@acme.example", subject="Re: Первая заявка",
                        in_reply_to=first_id, body="Всё ещё не работает"))
        [again] = [t for t in h.tickets() if t.id == first.id]
        assert [a.kind for a in again.articles] == ["customer", "ack", "customer"]
        assert len(h.tickets()) == len(states)
    finally:
        h.close()


def test_restore_moves_the_old_database_aside(live: Harness, tmp_path: Path) -> None:
    live.deliver(build(from_="ivan@acme.example"))
    dest = tmp_path / "copy.db"
    backup(live.config.database.url, dest)
    live.deliver(build(from_="petr@acme.example", subject="после копии"))
    live.close()
    result = restore(dest, live.config.database.url)
    assert result.moved_aside is not None and result.moved_aside.is_file()
    assert result.moved_aside.name.startswith("mailticket.db.pre-restore-")
    with sqlite3.connect(result.path) as conn:
        assert conn.execute("SELECT count(*) FROM tickets").fetchone() == (1,)
    with sqlite3.connect(result.moved_aside) as conn:
        assert conn.execute("SELECT count(*) FROM tickets").fetchone() == (2,)


def test_restore_refuses_while_a_daemon_holds_the_database(live: Harness, tmp_path: Path) -> None:
    dest = tmp_path / "copy.db"
    backup(live.config.database.url, dest)
    lock = InstanceLock(live.config)
    lock.acquire()
    try:
        with pytest.raises(MailticketError, match=r"a mailticket daemon \(pid \d+\) is using .*"
                                                  r"mailticket\.db: stop it before restoring"):
            restore(dest, live.config.database.url)
    finally:
        assert lock.handle is not None
        lock.handle.close()
    assert not list(tmp_path.glob("mailticket.db.pre-restore-*"))


def test_restore_checks_the_source(tmp_path: Path, sqlite_url: str) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    with pytest.raises(MailticketError, match=r"notes\.txt is not a SQLite database"):
        restore(text_file, sqlite_url)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(MailticketError, match=r"other\.db is not a mailticket database"):
        restore(other, sqlite_url)
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        conn.execute("INSERT INTO alembic_version VALUES ('9999_future')")
    with pytest.raises(MailticketError, match="schema revision 9999_future, which this"):
        restore(other, sqlite_url)
    with pytest.raises(MailticketError, match="no backup file at"):
        restore(tmp_path / "missing.db", sqlite_url)


def test_backup_refuses_to_overwrite(sqlite_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "exists.db"
    dest.write_bytes(b"keep me")
    with pytest.raises(MailticketError, match=r"exists\.db already exists"):
        backup(sqlite_url, dest)
    assert dest.read_bytes() == b"keep me"


def test_postgresql_points_to_pg_dump(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres:secret@127.0.0.1:5432/test"
    with pytest.raises(MailticketError) as err:
        backup(url, tmp_path / "x.dump")
    message = str(err.value)
    assert "pg_dump --format=custom --file=BACKUP.dump 'postgresql://postgres@127.0.0.1:5432/test'" \
        in message
    assert "secret" not in message and "psycopg" not in message
    assert PG_HINT.startswith("PostgreSQL databases are backed up with pg_dump")
    with pytest.raises(MailticketError, match="pg_restore"):
        restore(tmp_path / "x.dump", url)
