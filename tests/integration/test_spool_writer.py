"""Group commit of spool rows on SQLite and PostgreSQL: batching, per-row and per-batch failure.

The writer is driven the way the listener drives it: many ``put`` calls
awaiting at once on one event loop, against the real database of ``db_url``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session, sessionmaker

from mailticket.errors import StoreError
from mailticket.intake.spool_writer import Spooled, SpoolRequest, SpoolWriter, write_batch
from mailticket.store.db import make_engine, make_sessionmaker
from mailticket.store.schema import SpoolItem

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def request(n: int, *, key: str | None = None, mail_from: str | None = "a@b.example") -> SpoolRequest:
    return SpoolRequest(
        source="smtp",
        mail_from=mail_from,  # type: ignore[arg-type]  # None: a row the database refuses
        rcpt_tos=["support@example.com"],
        peer=f"127.0.0.1:{1000 + n}",
        auth_user=None,
        raw=f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(),
        received_at=NOW,
        idempotency_key=key,
    )


def rows(factory: sessionmaker[Session]) -> list[SpoolItem]:
    with factory() as session:
        return list(session.scalars(select(SpoolItem).order_by(SpoolItem.id)))


async def put_all(writer: SpoolWriter, requests: list[SpoolRequest]) -> list[Spooled | Exception]:
    results = await asyncio.gather(*(writer.put(r) for r in requests), return_exceptions=True)
    return [r if isinstance(r, Spooled | Exception) else RuntimeError(repr(r)) for r in results]


def test_waiting_puts_share_one_transaction(factory: sessionmaker[Session]) -> None:
    commits: list[int] = []
    event.listen(factory.kw["bind"], "commit", lambda conn: commits.append(1))
    writer = SpoolWriter(factory)
    results = asyncio.run(put_all(writer, [request(n) for n in range(30)]))
    assert all(isinstance(r, Spooled) and r.new for r in results)
    stored = rows(factory)
    assert [r.id for r in results] == [row.id for row in stored]  # type: ignore[union-attr]
    assert [row.peer for row in stored] == [f"127.0.0.1:{1000 + n}" for n in range(30)]
    assert [row.raw for row in stored] == [request(n).raw for n in range(30)]
    assert all(row.size == len(row.raw) and row.state == "queued" for row in stored)
    # All 30 were waiting when the writer started: one batch, one commit.
    assert (writer.batches, writer.largest_batch, len(commits)) == (1, 30, 1)


def test_batches_are_capped_by_count(factory: sessionmaker[Session]) -> None:
    writer = SpoolWriter(factory, max_items=4)
    results = asyncio.run(put_all(writer, [request(n) for n in range(10)]))
    assert all(isinstance(r, Spooled) for r in results)
    assert (writer.batches, writer.largest_batch) == (3, 4)
    assert len(rows(factory)) == 10


def test_a_refused_row_fails_alone(factory: sessionmaker[Session]) -> None:
    writer = SpoolWriter(factory)
    batch = [request(0), request(1, mail_from=None), request(2)]
    first, refused, third = asyncio.run(put_all(writer, batch))
    assert isinstance(refused, StoreError)
    assert "spool row refused: IntegrityError" in str(refused)
    assert isinstance(first, Spooled) and isinstance(third, Spooled)
    assert [row.id for row in rows(factory)] == [first.id, third.id]
    assert writer.batches == 1


def test_a_known_idempotency_key_returns_the_first_row(factory: sessionmaker[Session]) -> None:
    writer = SpoolWriter(factory)
    batch = [request(0, key="imap:a:1:7"), request(1), request(2, key="imap:a:1:7")]
    first, other, again = asyncio.run(put_all(writer, batch))
    assert isinstance(first, Spooled) and isinstance(other, Spooled)
    assert again == Spooled(first.id, new=False)
    assert first.new and other.new
    assert [row.idempotency_key for row in rows(factory)] == ["imap:a:1:7", None]


def test_a_failed_transaction_fails_every_put(factory: sessionmaker[Session]) -> None:
    with factory() as session:
        session.execute(text("DROP TABLE spool"))
        session.commit()
    writer = SpoolWriter(factory)
    results = asyncio.run(put_all(writer, [request(n) for n in range(5)]))
    assert all(isinstance(r, StoreError) for r in results)
    assert all(str(r).startswith("spool commit failed:") for r in results)
    with pytest.raises(StoreError):
        write_batch(factory, [request(9)])


def test_warm_connects_before_the_first_put_and_writes_nothing(
    factory: sessionmaker[Session],
) -> None:
    checkouts: list[int] = []
    event.listen(factory.kw["bind"], "checkout", lambda *_: checkouts.append(1))
    writer = SpoolWriter(factory)

    async def warm_then_put() -> tuple[int, int, Spooled]:
        await writer.warm()
        warmed = (len(checkouts), len(rows(factory)))
        return (*warmed, await writer.put(request(1)))

    checked_out, stored, spooled = asyncio.run(warm_then_put())
    # warm() took a connection (counted before rows() took its own) and wrote no row.
    assert (checked_out, stored) == (1, 0)
    assert spooled.new and [row.id for row in rows(factory)] == [spooled.id]


def test_warm_only_logs_a_database_it_cannot_reach(caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens on port 1: a real, refused connection.
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    writer = SpoolWriter(make_sessionmaker(engine))

    async def warm_then_put() -> BaseException | Spooled:
        await writer.warm()
        try:
            return await writer.put(request(1))
        except StoreError as exc:
            return exc

    outcome = asyncio.run(warm_then_put())
    engine.dispose()
    assert isinstance(outcome, StoreError)  # the mail still gets its 451 from put()
    assert "spool writer could not reach the database at start" in caplog.text
