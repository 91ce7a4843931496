"""The hot write path in statements: what one mail costs the database, pinned.

Issue 17: rows nobody reads back as objects (audit events, the Message-ID
index, the auto-reply log) are buffered on the unit of work and written in one
``executemany`` per table; the suppression of everyone a mail reaches and the
caps of its acknowledgement are one query. These tests count the statements the
real worker sends for one mail, on SQLite and PostgreSQL, and check that the
buffer keeps savepoint semantics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from harness import Harness
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from support.configs import make_config
from support.mails import build, new_id

from mailticket.store import after_flush
from mailticket.store.db import transaction
from mailticket.store.schema import AuditEvent, Ticket
from mailticket.tickets import service as tickets

NOW = datetime(2026, 11, 18, 9, 30, tzinfo=UTC)


@pytest.fixture
def h(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(make_config(tmp_path, db_url))
    yield harness
    harness.close()


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every statement sent while the block runs (an ``executemany`` counts once)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _inserts(seen: list[str]) -> Counter[str]:
    return Counter(s.split()[2] for s in seen if s.startswith("INSERT INTO"))


def test_a_new_ticket_reads_suppression_and_caps_once_for_all_its_recipients(h: Harness) -> None:
    spool_id = h.spool(build(from_="ivan@acme.example", message_id=new_id()))
    with statements(h.engine) as seen:
        h.worker.drain()
    assert h.spool_row(spool_id).outcome == "new"
    # The requester and both L1 engineers: one query for all three, with the ack's caps.
    assert len(h.outbox("engineer_new")) == 2 and len(h.outbox("ack")) == 1
    gates = [s for s in seen if "address_suppressions" in s]
    assert len(gates) == 1, gates
    assert "auto_reply_log" in gates[0]
    assert not [s for s in seen if "auto_reply_log" in s and s.startswith("SELECT")
                and "address_suppressions" not in s]
    # Audit rows, Message-ID index rows and the auto-reply log: one INSERT each.
    counted = _inserts(seen)
    for table in ("audit_events", "message_ids", "auto_reply_log"):
        assert counted[table] == 1, (table, counted)


def test_buffered_rows_are_written_before_a_read_and_dropped_with_their_savepoint(
    h: Harness,
) -> None:
    with transaction(h.factory) as session:
        ticket = tickets.open_ticket(session, subject="x", contract=None,
                                     requester="ivan@acme.example",
                                     priority=tickets.Priority.MINOR, now=NOW)
        tickets.audit(session, ticket.id, "a", "kept", {}, NOW)
        savepoint = session.begin_nested()
        tickets.audit(session, ticket.id, "a", "dropped", {}, NOW)
        savepoint.rollback()
        # A savepoint that is released keeps its rows.
        with session.begin_nested():
            tickets.audit(session, ticket.id, "a", "released", {}, NOW)
        tickets.audit(session, ticket.id, "a", "buffered", {}, NOW)
        assert after_flush.unit_of_work(session).buffered
        # Any statement through the session writes the buffer first.
        actions = session.scalars(select(AuditEvent.action).where(
            AuditEvent.ticket_id == ticket.id).order_by(AuditEvent.id)).all()
        assert actions == ["kept", "released", "buffered"]
        assert not after_flush.unit_of_work(session).buffered
        tickets.audit(session, ticket.id, "a", "at commit", {}, NOW)
    with transaction(h.factory) as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 4
        assert session.scalar(select(func.count()).select_from(Ticket)) == 1
    # A rolled-back transaction writes nothing it buffered.
    with pytest.raises(RuntimeError), transaction(h.factory) as session:
        tickets.audit(session, None, "a", "lost", {}, NOW)
        raise RuntimeError
    with transaction(h.factory) as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 4
