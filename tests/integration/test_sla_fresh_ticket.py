"""A ticket opened in the same transaction is stamped from memory, exactly as from the database.

``sla_service.restamp`` skips its reads for a ticket ``tickets.open_ticket``
made in this session and nothing has touched since (no status change, no
reply). These tests hold the shortcut to the answer of the full read, and show
that a status change or a reply in the same transaction takes it away.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from support.configs import make_config

from mailticket.config import Config
from mailticket.model import ArticleKind, Direction, Priority, Status
from mailticket.store.db import make_engine, make_sessionmaker, transaction
from mailticket.store.schema import Ticket
from mailticket.tickets import service as tickets
from mailticket.tickets import sla_stamp as sla_service

NOW = datetime(2026, 11, 18, 9, 30, tzinfo=UTC)  # a Wednesday, 12:30 in Moscow
CUSTOMER = "ivan@acme.example"


@pytest.fixture
def setup(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[Config, sessionmaker[Session]]]:
    config = make_config(tmp_path, sqlite_url)
    engine = make_engine(sqlite_url)
    yield config, make_sessionmaker(engine)
    engine.dispose()


def _open(session: Session, config: Config, priority: Priority) -> Ticket:
    ticket = tickets.open_ticket(session, subject="Принтер", contract=config.contracts["acme"],
                                 requester=CUSTOMER, priority=priority, now=NOW)
    tickets.add_article(session, ticket, direction=Direction.IN, kind=ArticleKind.CUSTOMER,
                        from_addr=CUSTOMER, to_addrs=["support@provider.example"],
                        subject="Принтер", text="не печатает", now=NOW)
    return ticket


def _stamps(ticket: Ticket) -> tuple[datetime | None, datetime | None, datetime | None]:
    return ticket.first_response_due, ticket.resolution_due, ticket.next_sla_check_at


@pytest.mark.parametrize("priority", [Priority.CRITICAL, Priority.MINOR])
def test_new_ticket_stamp_from_memory_equals_the_stamp_from_the_database(
    setup: tuple[Config, sessionmaker[Session]], priority: Priority
) -> None:
    config, factory = setup
    with transaction(factory) as session:
        ticket = _open(session, config, priority)
        assert tickets.untouched_since_open(session, ticket)
        sla_service.restamp(session, config, ticket, NOW)
        fresh, number = _stamps(ticket), ticket.id
    with transaction(factory) as session:
        stored = session.get(Ticket, number)
        assert stored is not None and not tickets.untouched_since_open(session, stored)
        assert _stamps(stored) == fresh
        sla_service.restamp(session, config, stored, NOW)
        assert _stamps(stored) == fresh
    assert fresh[0] is not None and fresh[1] is not None and fresh[2] is not None


def test_status_change_or_reply_in_the_same_transaction_reads_the_database(
    setup: tuple[Config, sessionmaker[Session]],
) -> None:
    config, factory = setup
    with transaction(factory) as session:
        waiting = _open(session, config, Priority.MAJOR)
        assert tickets.change_status(session, waiting, Status.WAITING, actor="anna@provider.example",
                                     now=NOW)
        assert not tickets.untouched_since_open(session, waiting)
        replied = _open(session, config, Priority.MAJOR)
        tickets.add_article(session, replied, direction=Direction.OUT, kind=ArticleKind.REPLY,
                            from_addr="support@provider.example", to_addrs=[CUSTOMER],
                            subject="Re: Принтер", text="Перезагрузите", now=NOW)
        assert not tickets.untouched_since_open(session, replied)
        clock, counted, _ = sla_service.clock_of(session, waiting)
        assert counted == ((NOW, None),)
        assert clock.pauses == ((NOW, None),)
        sla_service.restamp(session, config, waiting, NOW)
        sla_service.restamp(session, config, replied, NOW)
        assert sla_service.clock_of(session, replied)[0].unanswered_since is None
