"""The rows one customer mail writes besides the ticket: outbox, Message-ID index, rate-limit log.

notify and tickets write some of them after the session's next flush (the VERP
envelope sender needs the outbox row's id, an index row its article's id) and
some with one Core statement; these tests read them all back, exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness import Harness, as_message
from sqlalchemy import select
from support.configs import make_config
from support.mails import build, new_id

from mailticket.mail.addresses import verp_return_path
from mailticket.model import ArticleKind, Direction, Priority
from mailticket.store.db import transaction
from mailticket.store.schema import AutoReplyLog, MessageIdIndex
from mailticket.tickets import service as tickets

NOW = datetime(2026, 11, 20, 16, 50, tzinfo=UTC)


@pytest.fixture
def h(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(make_config(tmp_path, db_url))
    yield harness
    harness.close()


def index(h: Harness) -> list[tuple[str, int, int | None, str]]:
    with transaction(h.factory) as s:
        rows = s.scalars(select(MessageIdIndex)).all()
        return sorted((r.message_id, r.ticket_id, r.article_id, r.direction) for r in rows)


def test_every_row_of_a_new_ticket_and_a_reply(h: Harness) -> None:
    first = new_id("acme.example")
    h.deliver(build(from_="ivan@acme.example", message_id=first))
    [ticket] = h.tickets()
    reply = new_id("acme.example")
    h.deliver(build(from_="ivan@acme.example", message_id=reply, in_reply_to=first,
                    subject=f"Re: [#MT-{ticket.id}] Принтер не печатает"))
    [ticket] = h.tickets()
    outbox = h.outbox()
    # An ack, then a notice per L1 engineer for each of the two mails.
    assert [(o.kind, o.rcpt_tos) for o in outbox] == [
        ("ack", ["ivan@acme.example"]),
        ("engineer_new", ["anna@provider.example"]),
        ("engineer_new", ["boris@provider.example"]),
        ("engineer_reply", ["anna@provider.example"]),
        ("engineer_reply", ["boris@provider.example"]),
    ]
    secret = h.config.mail.reply_token_secret
    assert [o.envelope_from for o in outbox] == [
        verp_return_path("support@provider.example", o.id, secret) for o in outbox
    ]
    assert [as_message(o)["Message-ID"] for o in outbox] == [f"<{o.message_id}>" for o in outbox]
    customer = [a for a in ticket.articles if a.kind == ArticleKind.CUSTOMER.value]
    assert index(h) == sorted([
        (first, ticket.id, customer[0].id, "in"),
        (reply, ticket.id, customer[1].id, "in"),
        *[(o.message_id, ticket.id, None, "out") for o in outbox],
    ])
    with transaction(h.factory) as s:
        log = s.execute(select(AutoReplyLog.recipient, AutoReplyLog.kind, AutoReplyLog.ticket_id)
                        .order_by(AutoReplyLog.id)).all()
    assert [tuple(r) for r in log] == [(o.rcpt_tos[0], o.kind, ticket.id) for o in outbox]


def test_an_article_id_indexed_twice_in_one_transaction_is_stored_once(h: Harness) -> None:
    mid = new_id()
    with transaction(h.factory) as s:
        ticket = tickets.open_ticket(s, subject="x", contract=None, requester="a@b.example",
                                     priority=Priority.MINOR, now=NOW)
        args = {"direction": Direction.IN, "kind": ArticleKind.CUSTOMER,
                "from_addr": "a@b.example", "to_addrs": [], "subject": "x", "text": "t",
                "now": NOW, "message_id": mid}
        tickets.add_article(s, ticket, **args)
        # Not flushed yet; the lookup writes the waiting index row first.
        assert tickets.is_known_message_id(s, mid)
        tickets.add_article(s, ticket, **args)
        assert tickets.known_message_ids(s, [mid, "other@x"]) == {mid: ticket.id}
        ticket_id = ticket.id
    [(stored, owner, article_id, direction)] = index(h)
    first_article = min(a.id for a in h.tickets()[0].articles)
    assert (stored, owner, article_id, direction) == (mid, ticket_id, first_article, "in")


def test_an_article_of_a_rolled_back_savepoint_leaves_no_index_row(h: Harness) -> None:
    with transaction(h.factory) as s:
        ticket = tickets.open_ticket(s, subject="x", contract=None, requester="a@b.example",
                                     priority=Priority.MINOR, now=NOW)
        savepoint = s.begin_nested()
        tickets.add_article(s, ticket, direction=Direction.IN, kind=ArticleKind.NOTE,
                            from_addr="a@b.example", to_addrs=[], subject="x", text="t",
                            now=NOW, message_id="gone@x")
        s.flush()
        savepoint.rollback()
        tickets.add_article(s, ticket, direction=Direction.IN, kind=ArticleKind.NOTE,
                            from_addr="a@b.example", to_addrs=[], subject="y", text="t",
                            now=NOW, message_id="kept@x")
    assert [m for m, *_ in index(h)] == ["kept@x"]
