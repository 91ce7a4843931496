"""Row ids handed out before the INSERT, so a hot row is written once and in a batch.

An outbox row's VERP envelope sender names the row's id (a bounce finds its
row by it), an article's id goes into its Message-ID index row, and a new
ticket's id into everything written about it (its number, audit rows, the
acknowledgement's subject). The ORM path wrote each such row, got its id
back, then wrote what needed it: a flush per mail, and an UPDATE of the
ticket for what was known only later (its SLA due times). With the id known in advance, what
needs it is computed before the INSERT, and a mail's rows go out in one
buffered ``executemany`` per table (:mod:`mailticket.store.after_flush`).

Where the ids come from:

* PostgreSQL: the table's own sequence, a block of :data:`BLOCK` at a time per
  session factory and table (one query per block, shared by the factory's
  threads). Sequences never roll back, so an id given to a transaction that
  rolls back is a gap, exactly as with the ORM's INSERT. Ticket ids are
  customer-visible numbers and several instances may share the work, so they
  are taken one at a time (in the order tickets are opened, as before).
* SQLite: one instance, and every writing transaction holds the write lock
  from ``BEGIN IMMEDIATE``; when a transaction first needs an id, the next id
  of every table here is read as ``max(id) + 1`` (what SQLite itself would
  assign; one statement, three index lookups) and counted on from there,
  forgotten at commit or rollback.

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
# The tables whose ids are reserved, and how many a PostgreSQL supply takes at once.
BLOCKS = {"outbox": BLOCK, "articles": BLOCK, "tickets": 1}
TABLES = tuple(BLOCKS)

_NEXT_PG: dict[str, TextClause] = {
    table: text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                "FROM generate_series(1, :n)")
    for table in TABLES
}
_MAX_SQLITE = text("SELECT " + ", ".join(
    f"(SELECT coalesce(max(id), 0) FROM {table})" for table in TABLES))


class RowIds:
    """A session factory's supply of PostgreSQL row ids, per table (thread-safe)."""

    def __init__(self) -> None:
        self._free: dict[str, list[int]] = {table: [] for table in TABLES}
        self._lock = threading.Lock()

    def take(self, session: Session, table: str) -> int:
        """One new id of ``table`` for a row this transaction will insert."""
        uow = after_flush.unit_of_work(session)
        if session.get_bind().dialect.name == "sqlite":
            if not uow.next_ids:
                highest = session.connection().execute(_MAX_SQLITE).one()
                uow.next_ids = {name: int(top) + 1 for name, top in zip(TABLES, highest, strict=True)}
            following = uow.next_ids[table]
            uow.next_ids[table] = following + 1
            return following
        with self._lock:
            free = self._free[table]
            if not free:
                rows = session.connection().execute(_NEXT_PG[table], {"n": BLOCKS[table]}).scalars()
                free.extend(sorted(rows, reverse=True))
            return free.pop()


def take(session: Session, table: str) -> int:
    """One new id of ``table`` from the supply of the factory that made ``session``."""
    supply = after_flush.unit_of_work(session).row_ids
    if supply is None:
        raise TypeError("sessions must come from store.db.make_sessionmaker (row ids)")
    return supply.take(session, table)
