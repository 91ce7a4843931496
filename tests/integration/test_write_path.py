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

from mailticket.errors import StoreError
from mailticket.mail import addresses
from mailticket.model import ArticleKind, Direction, Priority
from mailticket.store import after_flush
from mailticket.store.db import make_sessionmaker, transaction
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


def verp_outbox_id(envelope_from: str, config: Any) -> int | None:
    """The outbox id a VERP sender names, checked with the site's secret."""
    return addresses.parse_verp(config.mail.reply_token_secret, envelope_from)


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
    # The customer's article and the ack's (ids reserved, so their Message-IDs are
    # indexed in the same batch), audit rows, Message-ID index rows, the auto-reply
    # log and the three outbox rows (the VERP sender is in the INSERT): one INSERT each.
    counted = _inserts(seen)
    for table in ("articles", "audit_events", "message_ids", "auto_reply_log", "outbox"):
        assert counted[table] == 1, (table, counted)
    assert not [s for s in seen if s.startswith("UPDATE outbox")]
    # The ticket's id is reserved too, so it is written once, at the end, with its
    # SLA due times and its requester: no flush to learn the id, no UPDATE after.
    assert counted["tickets"] == 1 and counted["ticket_contacts"] == 1, counted
    assert not [s for s in seen if s.startswith("UPDATE tickets")]
    [ticket] = h.tickets()
    assert ticket.first_response_due is not None and ticket.next_sla_check_at is not None
    if h.engine.dialect.name == "sqlite":
        # Every id the mail needs (ticket, articles, outbox) from one max(id) statement.
        assert len([s for s in seen if "max(id)" in s]) == 1
    for row in h.outbox():
        assert row.envelope_from.startswith("support+")
        assert verp_outbox_id(row.envelope_from, h.config) == row.id


def test_buffered_rows_are_written_before_a_read_and_dropped_with_their_savepoint(
    h: Harness,
) -> None:
    with transaction(h.factory) as session:
        ticket = tickets.open_ticket(session, subject="x", contract=None,
                                     requester="ivan@acme.example",
                                     priority=Priority.MINOR, now=NOW)
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
        # Buffered before a savepoint, sent by a read inside it, rolled back with it:
        # the row goes back into the buffer and is written at commit.
        tickets.audit(session, ticket.id, "a", "sent inside", {}, NOW)
        savepoint = session.begin_nested()
        session.execute(select(Ticket.id))
        tickets.audit(session, ticket.id, "a", "dropped too", {}, NOW)
        session.execute(select(Ticket.id))
        savepoint.rollback()
    with transaction(h.factory) as session:
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
        assert actions == ["kept", "released", "buffered", "at commit", "sent inside"]
        assert session.scalar(select(func.count()).select_from(Ticket)) == 1
    # A rolled-back transaction writes nothing it buffered.
    with pytest.raises(RuntimeError), transaction(h.factory) as session:
        tickets.audit(session, None, "a", "lost", {}, NOW)
        raise RuntimeError
    with transaction(h.factory) as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 5


def test_a_customer_reply_restamps_the_sla_clock_without_reading_the_history(
    h: Harness,
) -> None:
    first = new_id()
    h.deliver(build(from_="ivan@acme.example", message_id=first))
    # An engineer's answer, so the customer's next mail starts a next-response cycle.
    with transaction(h.factory) as session:
        stored = session.get(Ticket, h.tickets()[0].id)
        assert stored is not None
        tickets.add_article(session, stored, direction=Direction.OUT,
                            kind=ArticleKind.REPLY, from_addr="anna@provider.example",
                            to_addrs=["ivan@acme.example"], subject="Re", text="Перезагрузите",
                            now=h.clock.now)
    h.clock.advance(minutes=5)
    [ticket] = h.tickets()
    before = ticket.sla_facts
    assert before is not None and before["last_reply_at"] is not None
    spool_id = h.spool(build(from_="ivan@acme.example", subject="Re: Принтер не печатает",
                             body="Всё ещё не печатает", in_reply_to=first))
    with statements(h.engine) as seen:
        h.worker.drain()
    assert h.spool_row(spool_id).outcome == "reply"
    # The spool row, the cited Message-ID, the ticket (locked on PostgreSQL) and the
    # suppression of the engineers told: nothing of the audit log, articles or SLA record.
    # (SQLite reserves new ticket, article and outbox ids with one max(id) of each
    # table, in one statement: no history.)
    reserved = [s for s in seen if s.startswith("SELECT (SELECT coalesce(max(id), 0) FROM ")]
    assert len(reserved) <= 1
    reads = [s.split(" FROM ")[1].split()[0] for s in seen
             if s.startswith("SELECT") and s not in reserved]
    assert not {"audit_events", "articles", "sla_events"} & set(reads), reads
    ticket_reads = [s for s in seen if s.startswith("SELECT") and " FROM tickets " in s]
    assert len(ticket_reads) == 1
    if h.engine.dialect.name == "postgresql":
        assert ticket_reads[0].endswith("FOR NO KEY UPDATE")
    # The facts changed with the ticket's one UPDATE; a full read agrees (harness close).
    updates = [s for s in seen if s.startswith("UPDATE tickets")]
    assert len(updates) == 1 and "sla_facts" in updates[0]
    [ticket] = h.tickets()
    assert ticket.sla_facts is not None and ticket.sla_facts != before
    assert ticket.sla_facts["unanswered_since"] == h.clock.now.isoformat()
    # The suppression lookup of the engineers told is no ORM query, so it does not
    # send the reply's buffered rows early: its article's Message-ID and the
    # notices' go out in one INSERT with the notices themselves.
    assert any("address_suppressions" in s for s in seen)
    counted = _inserts(seen)
    assert counted["message_ids"] == 1 and counted["outbox"] == 1, counted


def test_a_buffered_row_the_database_refuses_fails_the_transaction_as_a_store_error(
    h: Harness,
) -> None:
    # Two tables in one batch (PostgreSQL sends them in one pipeline); one
    # Message-ID indexed twice by a caller that wrongly said it was fresh.
    mid = new_id()
    with pytest.raises(StoreError), transaction(h.factory) as session:
        ticket = tickets.open_ticket(session, subject="x", contract=None,
                                     requester="ivan@acme.example", priority=Priority.MINOR,
                                     now=NOW)
        tickets.audit(session, ticket.id, "a", "opened", {}, NOW)
        for _ in range(2):
            tickets.index_message_id(session, mid, ticket.id, None, Direction.IN, fresh=True)
    with transaction(h.factory) as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_a_ticket_without_facts_is_read_in_full_once_and_then_keeps_them(h: Harness) -> None:
    first = new_id()
    h.deliver(build(from_="ivan@acme.example", message_id=first))
    # As a ticket stored before migration 0012 would be.
    with transaction(h.factory) as session:
        stored = session.get(Ticket, h.tickets()[0].id)
        assert stored is not None
        stored.sla_facts = None
    h.clock.advance(minutes=5)
    spool_id = h.spool(build(from_="ivan@acme.example", subject="Re: Принтер не печатает",
                             body="Ещё вопрос", in_reply_to=first))
    with statements(h.engine) as seen:
        h.worker.drain()
    assert h.spool_row(spool_id).outcome == "reply"
    # The full read happened once (the audit log and the articles), and its result was kept.
    assert len([s for s in seen if s.startswith("SELECT") and " FROM audit_events " in s]) == 1
    [ticket] = h.tickets()
    assert ticket.sla_facts is not None


def test_ticket_numbers_follow_the_order_tickets_are_opened_in_across_instances(
    h: Harness,
) -> None:
    # Ticket ids are reserved before the INSERT, but they are the numbers customers
    # see: two instances (two session factories, each with its own id supply) that
    # open tickets in turn get consecutive numbers in that order, not blocks.
    other = make_sessionmaker(h.engine)
    opened: list[int] = []
    for factory in (h.factory, other, h.factory, other):
        with transaction(factory) as session:
            ticket = tickets.open_ticket(session, subject="x", contract=None,
                                         requester="ivan@acme.example",
                                         priority=Priority.MINOR, now=NOW)
            opened.append(ticket.id)
    assert opened == list(range(opened[0], opened[0] + 4)), opened
    stored = [t.id for t in h.tickets()]
    assert stored[-4:] == opened
