"""Row ids handed out before the INSERT, so a hot row is written once and in a batch.

An outbox row's VERP envelope sender names the row's id (a bounce finds its
row by it), and an article's id goes into its Message-ID index row. The ORM
path wrote each such row, got its id back, then wrote what needed it: a
flush per mail and a second statement. With the id known in advance, what
needs it is computed before the INSERT, and a mail's rows go out in one
buffered ``executemany`` per table (:mod:`mailticket.store.after_flush`).

Where the ids come from:

* PostgreSQL: the table's own sequence, a block of :data:`BLOCK` at a time per
  session factory and table (one query per block, shared by the factory's
  threads). Sequences never roll back, so an id given to a transaction that
  rolls back is a gap, exactly as with the ORM's INSERT.
* SQLite: one instance, and every writing transaction holds the write lock
  from ``BEGIN IMMEDIATE``; the first id a transaction needs from a table is
  read as ``max(id) + 1`` (what SQLite itself would assign) and the next ones
  counted on from there, forgotten at commit or rollback.

Every row of a table in :data:`TABLES` must then come through :func:`take`
within a transaction: an insert that lets the database choose beside
reserved ids could take one of them on SQLite.
"""

from __future__ import annotations

import threading

from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session

from mailticket.store import after_flush

BLOCK = 64
# The tables whose ids are reserved (outbox: VERP sender; articles: Message-ID index).
TABLES = ("outbox", "articles")

_NEXT_PG: dict[str, TextClause] = {
    table: text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                "FROM generate_series(1, :n)")
    for table in TABLES
}
_MAX_SQLITE: dict[str, TextClause] = {
    table: text(f"SELECT coalesce(max(id), 0) FROM {table}") for table in TABLES
}


class RowIds:
    """A session factory's supply of PostgreSQL row ids, per table (thread-safe)."""

    def __init__(self, block: int = BLOCK) -> None:
        self._block = block
        self._free: dict[str, list[int]] = {table: [] for table in TABLES}
        self._lock = threading.Lock()

    def take(self, session: Session, table: str) -> int:
        """One new id of ``table`` for a row this transaction will insert."""
        uow = after_flush.unit_of_work(session)
        if session.get_bind().dialect.name == "sqlite":
            following = uow.next_ids.get(table)
            if following is None:
                following = int(
                    session.connection().execute(_MAX_SQLITE[table]).scalar_one()) + 1
            uow.next_ids[table] = following + 1
            return following
        with self._lock:
            free = self._free[table]
            if not free:
                rows = session.connection().execute(_NEXT_PG[table], {"n": self._block}).scalars()
                free.extend(sorted(rows, reverse=True))
            return free.pop()


def take(session: Session, table: str) -> int:
    """One new id of ``table`` from the supply of the factory that made ``session``."""
    supply = after_flush.unit_of_work(session).row_ids
    if supply is None:
        raise TypeError("sessions must come from store.db.make_sessionmaker (row ids)")
    return supply.take(session, table)
