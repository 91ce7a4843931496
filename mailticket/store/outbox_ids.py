"""Outbox row ids handed out before the INSERT, so a row is written once and in a batch.

An outbox row's VERP envelope sender names the row's id (a bounce finds its
row by it), so the ORM path wrote each row, got its id back, then UPDATEd the
sender: two statements and a flush per mail. With the id known in advance the
sender is computed before the INSERT, and a mail's rows, with their
Message-ID index rows, go out in one buffered ``executemany``
(:mod:`mailticket.store.after_flush`).

Where the ids come from:

* PostgreSQL: the table's own sequence, a block of :data:`BLOCK` at a time per
  session factory (one query per block, shared by the factory's threads).
  Sequences never roll back, so an id given to a transaction that rolls back
  is a gap, exactly as with the ORM's INSERT.
* SQLite: one instance, and every writing transaction holds the write lock
  from ``BEGIN IMMEDIATE``; the first id a transaction needs is read as
  ``max(id) + 1`` (what SQLite itself would assign) and the next ones counted
  on from there, forgotten at commit or rollback.

Every outbox row must then come through :func:`take` within a transaction:
an ORM insert beside reserved ids could take one of them on SQLite.
"""

from __future__ import annotations

import threading

from sqlalchemy import text
from sqlalchemy.orm import Session

from mailticket.store import after_flush

BLOCK = 64

_NEXT_PG = text("SELECT nextval(pg_get_serial_sequence('outbox', 'id')) "
                "FROM generate_series(1, :n)")
_MAX_SQLITE = text("SELECT coalesce(max(id), 0) FROM outbox")


class OutboxIds:
    """A session factory's supply of PostgreSQL outbox ids (thread-safe)."""

    def __init__(self, block: int = BLOCK) -> None:
        self._block = block
        self._free: list[int] = []
        self._lock = threading.Lock()

    def take(self, session: Session) -> int:
        """One new outbox id for a row this transaction will insert."""
        uow = after_flush.unit_of_work(session)
        if session.get_bind().dialect.name == "sqlite":
            if uow.next_outbox_id is None:
                uow.next_outbox_id = int(session.connection().execute(_MAX_SQLITE).scalar_one()) + 1
            taken = uow.next_outbox_id
            uow.next_outbox_id += 1
            return taken
        with self._lock:
            if not self._free:
                rows = session.connection().execute(_NEXT_PG, {"n": self._block}).scalars()
                self._free = sorted(rows, reverse=True)
            return self._free.pop()


def take(session: Session) -> int:
    """One new outbox id from the supply of the factory that made ``session``."""
    supply = after_flush.unit_of_work(session).outbox_ids
    if supply is None:
        raise TypeError("sessions must come from store.db.make_sessionmaker (outbox ids)")
    return supply.take(session)
