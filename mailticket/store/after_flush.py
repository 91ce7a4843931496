"""Rows buffered on the unit of work and written in one batch per statement.

Rows nobody reads back as objects (articles and outbox rows with reserved
ids, audit events, the Message-ID index, the auto-reply log) are *buffered*
instead of written one statement each: :func:`buffer` keeps them on the
unit of work and :func:`write_buffered` sends each statement once with all
its rows (one ``executemany``, one round trip). They are written at the unit
of work's flush points, before anything could read them: before every ORM
read or write through the session (``do_orm_execute``, after its autoflush),
and before commit, after the last flush. They may reference rows the ORM
writes, never the other way round: objects still pending (a ticket opened in
this transaction, whose id is reserved) are flushed before any buffered row
is sent. A reader that goes around the session (``session.connection()``)
calls :func:`write_buffered` first, naming the tables it reads. A
rolled-back savepoint drops the rows buffered inside it, and rows buffered
before it but sent inside it are buffered again (the database rolled them
back).

The queue is a typed attribute of :class:`UnitOfWork`, the session class the
factory makes, not an entry in ``session.info``, and no listener is registered
on the global ``Session`` class, so a session made elsewhere (Alembic, a test's
bare ``Session``) never runs our hooks.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.sql import Executable


class IdSupply(Protocol):
    """Hands out ids before the INSERT (``store.row_ids.RowIds``)."""

    def take(self, session: Session, table: str) -> int: ...


@dataclass
class _Buffered:
    seq: int
    statement: Executable
    row: dict[str, Any]


class UnitOfWork(Session):
    """The session our factory makes: a Session plus typed per-transaction scratch state.

    ``buffered`` holds the rows waiting for a flush point; ``fresh_ids`` holds the ids
    of rows inserted in this transaction whose state is still known from memory
    (the tickets service records tickets opened and untouched since, so the SLA
    stamp needs no read back), forgotten at commit and at any rollback.
    """

    def __init__(self, *args: Any, row_ids: IdSupply | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The factory's supply of reserved row ids (store.row_ids), shared by its sessions.
        self.row_ids = row_ids
        self.fresh_ids: set[int] = set()
        self.buffered: list[_Buffered] = []
        # Tickets whose row this transaction has locked (tickets.get_for_update).
        self.locked: set[int] = set()
        # SQLite: the next id of each table this transaction may use (store.row_ids).
        self.next_ids: dict[str, int] = {}
        self.buffer_seq = 0
        # Rows already sent in this transaction, in order: a savepoint that rolls
        # back takes with it those sent inside it, and the ones buffered before
        # it began go back into the buffer.
        self.written: list[_Buffered] = []
        # Where each savepoint began: (buffer position, len(written)). Weak: a
        # savepoint's rollback event comes after its end, so nothing pops it.
        self.savepoints: WeakKeyDictionary[SessionTransaction, tuple[int, int]] = (
            WeakKeyDictionary())


def unit_of_work(session: Session) -> UnitOfWork:
    """``session`` as our :class:`UnitOfWork`; a bare Session is a programming error."""
    if not isinstance(session, UnitOfWork):
        raise TypeError("sessions must come from store.db.make_sessionmaker (UnitOfWork)")
    return session


def buffer(session: Session, statement: Executable, row: dict[str, Any]) -> None:
    """Queue one row of ``statement`` (a prebuilt Core INSERT) for the next flush point.

    Every key the statement's rows use must be in every row (one ``executemany``).
    """
    uow = unit_of_work(session)
    uow.buffered.append(_Buffered(uow.buffer_seq, statement, row))
    uow.buffer_seq += 1


def write_buffered(session: Session, tables: Collection[str] | None = None) -> None:
    """Send the buffered rows: each statement once, with its rows, in first-queued order.

    ``tables``: a reader that goes around the session names the tables it
    reads, and only their rows are sent now; the rest wait for the next flush
    point and join its batch (a mail's articles and index rows stay one
    ``executemany`` each although the cap lookup reads between them).
    """
    uow = unit_of_work(session)
    if not uow.buffered:
        return
    if tables is None:
        sending, uow.buffered = uow.buffered, []
    else:
        sending = [item for item in uow.buffered if _table_of(item.statement) in tables]
        if not sending:
            return
        uow.buffered = [item for item in uow.buffered if _table_of(item.statement) not in tables]
    if uow.new:
        # A ticket opened in this transaction is written when first needed (its
        # id is reserved): the rows sent now may name it.
        uow.flush()
    batches: dict[Executable, list[dict[str, Any]]] = {}
    for item in sending:
        batches.setdefault(item.statement, []).append(item.row)
    uow.written.extend(sending)
    connection = session.connection()
    for statement, rows in batches.items():
        connection.execute(statement, rows)


def _table_of(statement: Executable) -> str:
    """The table a buffered INSERT writes."""
    return str(statement.table.name)  # type: ignore[attr-defined]


def before_read(state: ORMExecuteState) -> None:
    """``do_orm_execute``: buffered rows reach the database before any statement that might read them."""
    write_buffered(state.session)


def before_commit(session: Session) -> None:
    """``before_commit``: nothing buffered is left behind.

    The flush comes first: buffered rows may reference the rows it writes.
    """
    session.flush()
    write_buffered(session)


def transaction_begun(session: Session, transaction: SessionTransaction) -> None:
    """``after_transaction_create``: remember where a savepoint's buffered rows begin."""
    if transaction.nested:
        uow = unit_of_work(session)
        uow.savepoints[transaction] = (uow.buffer_seq, len(uow.written))


def forget(session: Session, previous: SessionTransaction | None = None) -> None:
    """``after_commit`` / ``after_soft_rollback``: forget rows known from memory.

    A rollback (even of a savepoint) may take opened rows back, so their ids
    are not trusted after it, and the rows buffered since the rolled-back
    transaction began are dropped with it; rows buffered before a savepoint
    but sent inside it are buffered again.
    """
    uow = unit_of_work(session)
    uow.fresh_ids.clear()
    if previous is None or not previous.nested:
        uow.locked.clear()
        uow.next_ids = {}
        uow.buffered = []
        uow.written = []
        return
    start, sent = uow.savepoints.get(previous, (0, 0))
    # Rows buffered before the savepoint but sent inside it were rolled back with it.
    again = [item for item in uow.written[sent:] if item.seq < start]
    del uow.written[sent:]
    kept = [item for item in uow.buffered if item.seq < start]
    uow.buffered = sorted(again + kept, key=lambda item: item.seq)
