"""Group commit for the listeners: one durable transaction for every mail waiting to be spooled.

The rule of the mail path is that ``250`` is said only after the raw message
and its envelope are committed (SQLite WAL with ``synchronous=FULL``, or a
PostgreSQL commit). One transaction per mail makes the accept rate the fsync
rate, and on SQLite a hundred sessions then queue on the write lock by
sleeping in ``busy_timeout`` — seconds of p99 latency (issue 9 measured
1.9 s at 100 clients). Here a single writer owns the spool writes of a
listener: mail that arrives while a commit is in flight waits for the next
one, which carries all of it, and each waiting session is told its own
outcome once that commit is done.

Failures keep their scope. A row the database refuses (a constraint, a value
it cannot store) is written under its own savepoint, so only that mail gets
an error and the others in the batch are still committed. A failed commit
(disk full, lock timeout, lost connection) fails every mail of the batch,
and each session answers ``451`` so that the sending MTA retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, configure_mappers, sessionmaker

from mailticket import log
from mailticket.errors import StoreError
from mailticket.store.db import transaction
from mailticket.store.schema import SpoolItem
from mailticket.store.workqueue import put_spool

SpoolTable = cast(Table, SpoolItem.__table__)
_log = log.get("smtp")
# One batch stops growing at this many mails or bytes (whichever comes first),
# so a burst of large mail never becomes one huge transaction.
MAX_BATCH_ITEMS = 512
# SQLite holds two copies of every body while it inserts the row (the bound
# value and the record it builds), so big mail is better written alone.
MAX_BATCH_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class SpoolRequest:
    """One received mail and its envelope, as the spool row will hold them."""

    source: str
    mail_from: str
    rcpt_tos: list[str]
    peer: str
    auth_user: str | None
    raw: bytes
    received_at: datetime
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Spooled:
    """The committed row for a request: its id, and False when the idempotency key existed."""

    id: int
    new: bool


def write_batch(
    factory: sessionmaker[Session], requests: Sequence[SpoolRequest]
) -> list[Spooled | Exception]:
    """Insert ``requests`` in one transaction; per-row results in order, raise if the commit fails.

    A row the database refuses yields its exception in the result list (its
    savepoint is rolled back, the rest go on); any failure of the transaction
    itself raises :class:`StoreError` and nothing of the batch is committed.
    """
    with transaction(factory, error="spool commit failed") as session:
        results = _insert_all(session, requests)
        if results is None:
            results = [_insert_one(session, request) for request in requests]
    return results


def _insert_all(
    session: Session, requests: Sequence[SpoolRequest]
) -> list[Spooled | Exception] | None:
    """The common case, one multi-row INSERT … RETURNING; None when it cannot be used.

    It is the transaction's first statement and a statement fails as a whole,
    so when the database refuses a row the transaction is rolled back (nothing
    else is in it) and the caller writes row by row, each under a savepoint,
    to find out which one it was. A savepoint around every batch would cost
    SQLite a statement journal of every page written.
    """
    if any(request.idempotency_key is not None for request in requests):
        return None
    statement = insert(SpoolTable).returning(SpoolTable.c.id, sort_by_parameter_order=True)
    try:
        ids = session.execute(statement, [_values(request) for request in requests]).scalars()
        results: list[Spooled | Exception] = [Spooled(int(spool_id), True) for spool_id in ids]
    except (IntegrityError, DataError):
        session.rollback()
        return None
    return results


def _insert_one(session: Session, request: SpoolRequest) -> Spooled | Exception:
    """One row under its own savepoint (put_spool), honouring its idempotency key."""
    try:
        row, new = put_spool(session, SpoolItem(**_values(request)))
    except (IntegrityError, DataError) as exc:
        # put_spool wraps the insert in a savepoint: only this row is undone.
        return StoreError(f"spool row refused: {exc.__class__.__name__}: {exc}")
    return Spooled(row.id, new)


def _values(request: SpoolRequest) -> dict[str, Any]:
    return {
        "source": request.source,
        "idempotency_key": request.idempotency_key,
        "mail_from": request.mail_from,
        "rcpt_tos": request.rcpt_tos,
        "peer": request.peer,
        "auth_user": request.auth_user,
        "raw": request.raw,
        "size": len(request.raw),
        "next_attempt_at": request.received_at,
        "created_at": request.received_at,
    }


def warm(factory: sessionmaker[Session]) -> None:
    """Do the first-use work of the write path now: mappers, a pooled connection, a read.

    Without it the first mails after start wait for it (configuring every ORM
    mapper, connecting, SQLite's pragmas): tens of milliseconds that the first
    burst of sessions all pay, and with them the tail of the accept latency.
    """
    configure_mappers()
    with factory() as session:
        session.execute(select(SpoolTable.c.id).limit(0)).all()
        session.rollback()


_Pending = tuple[SpoolRequest, "asyncio.Future[Spooled]"]


class SpoolWriter:
    """The single writer of one listener's spool rows; :meth:`put` returns after the commit.

    Used from one event loop. The database work runs on a thread of its own
    (so the loop keeps serving sessions during the fsync); a batch is every
    request that arrived while the previous batch was being written, capped by
    ``max_items`` and ``max_bytes``. No task or thread is left running while
    the listener is idle.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        max_items: int = MAX_BATCH_ITEMS,
        max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self._factory = factory
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._pending: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0
        self.largest_batch = 0

    async def warm(self) -> None:
        """Start the writer's thread and connect on it, before the first mail arrives.

        A database that cannot be reached is only logged here: each mail then
        gets its ``451`` from :meth:`put`, as it would have without this.
        """
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="spool-writer")
        try:
            await loop.run_in_executor(self._executor, warm, self._factory)
        except SQLAlchemyError as exc:
            _log.warning("spool writer could not reach the database at start",
                         extra={"error": f"{exc.__class__.__name__}: {exc}"})

    async def put(self, request: SpoolRequest) -> Spooled:
        """Spool ``request``; returns once its row is committed, raises when it is not."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Spooled] = loop.create_future()
        self._pending.append((request, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain(), name="spool-writer")
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="spool-writer")
        while self._pending:
            batch = self._take()
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(batch))
            requests = [request for request, _ in batch]
            try:
                results = await loop.run_in_executor(
                    self._executor, write_batch, self._factory, requests
                )
            except asyncio.CancelledError:
                # The loop is shutting down: nobody will answer these sessions.
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    # The session was cancelled (client gone); the row stands, unanswered.
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _take(self) -> list[_Pending]:
        """The next batch: the oldest pending requests within the item and byte caps."""
        size = 0
        count = 0
        for request, _ in self._pending:
            if count and (count >= self._max_items or size + len(request.raw) > self._max_bytes):
                break
            count += 1
            size += len(request.raw)
        batch, self._pending = self._pending[:count], self._pending[count:]
        return batch
