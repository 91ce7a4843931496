"""Writes queued on the unit of work: rows that need a new row's id, and rows buffered for one batch.

The outbox's VERP envelope sender and the Message-ID index of a new article
both need an id the database assigns at flush. Forcing a flush per mail
costs a round trip each; instead the caller queues the object with the
function that writes it, and one ``after_flush_postexec`` listener, registered
on the session factory by :func:`mailticket.store.db.make_sessionmaker`, hands
each writer the objects that got an id, in one call. An object dropped by a
rolled-back savepoint is forgotten; one not yet flushed waits for the next flush.

Rows nobody reads back as objects (audit events, the Message-ID index, the
auto-reply log, outbox rows with reserved ids) are *buffered* instead of
written one statement each: :func:`buffer` keeps them on the unit of work and
:func:`write_buffered` sends each statement once with all its rows (one
``executemany``, one round trip). They are written at the unit of work's flush
points, before anything could read them: after every flush, before every ORM
read or write through the session (``do_orm_execute``, as autoflush does), and
before commit. A reader that goes around the session (``session.connection()``)
calls :func:`write_buffered` first. A rolled-back savepoint drops the rows
buffered inside it, and rows buffered before it but sent inside it are
buffered again (the database rolled them back).

The queue is a typed attribute of :class:`UnitOfWork`, the session class the
factory makes, not an entry in ``session.info``, and no listener is registered
on the global ``Session`` class, so a session made elsewhere (Alembic, a test's
bare ``Session``) never runs our hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from sqlalchemy import inspect
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.sql import Executable

Flushed = Sequence[tuple[Any, tuple[Any, ...]]]
"""What a writer receives: ``(object, payload)`` pairs whose object now has its id."""
Writer = Callable[[Session, Flushed], None]


@dataclass
class _Deferred:
    obj: object
    writer: Writer
    payload: tuple[Any, ...]


class IdSupply(Protocol):
    """Hands out ids before the INSERT (``store.outbox_ids.OutboxIds``)."""

    def take(self, session: Session) -> int: ...


@dataclass
class _Buffered:
    seq: int
    statement: Executable
    row: dict[str, Any]


class UnitOfWork(Session):
    """The session our factory makes: a Session plus typed per-transaction scratch state.

    ``deferred`` holds the writes waiting for a flush; ``fresh_ids`` holds the ids
    of rows inserted in this transaction whose state is still known from memory
    (the tickets service records tickets opened and untouched since, so the SLA
    stamp needs no read back), forgotten at commit and at any rollback.
    """

    def __init__(self, *args: Any, outbox_ids: IdSupply | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The factory's supply of outbox ids (store.outbox_ids), shared by its sessions.
        self.outbox_ids = outbox_ids
        self.deferred: list[_Deferred] = []
        self.fresh_ids: set[int] = set()
        self.buffered: list[_Buffered] = []
        # Tickets whose row this transaction has locked (tickets.get_for_update).
        self.locked: set[int] = set()
        # SQLite: the next outbox id this transaction may use (store.outbox_ids).
        self.next_outbox_id: int | None = None
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


def defer(session: Session, writer: Writer, obj: object, *payload: Any) -> None:
    """Queue ``obj`` (with ``payload``) for ``writer`` until a flush gives it an id."""
    unit_of_work(session).deferred.append(_Deferred(obj, writer, payload))


def waiting(session: Session, writer: Writer) -> bool:
    """Whether anything queued for ``writer`` still waits for its flush."""
    return any(d.writer is writer for d in unit_of_work(session).deferred)


def run_deferred(session: Session, _flush_context: object = None) -> None:
    """``after_flush_postexec``: give each writer, in queue order, its objects that have ids."""
    uow = unit_of_work(session)
    if not uow.deferred:
        return
    ready: dict[Writer, list[tuple[Any, tuple[Any, ...]]]] = {}
    still_pending: list[_Deferred] = []
    for item in uow.deferred:
        state = inspect(item.obj)
        if state.persistent:
            ready.setdefault(item.writer, []).append((item.obj, item.payload))
        elif state.pending:
            still_pending.append(item)
        # else: dropped with a rolled-back savepoint.
    uow.deferred = still_pending
    for writer, flushed in ready.items():
        writer(session, flushed)
    write_buffered(session)


def buffer(session: Session, statement: Executable, row: dict[str, Any]) -> None:
    """Queue one row of ``statement`` (a prebuilt Core INSERT) for the next flush point.

    Every key the statement's rows use must be in every row (one ``executemany``).
    """
    uow = unit_of_work(session)
    uow.buffered.append(_Buffered(uow.buffer_seq, statement, row))
    uow.buffer_seq += 1


def write_buffered(session: Session) -> None:
    """Send the buffered rows: each statement once, with its rows, in first-queued order."""
    uow = unit_of_work(session)
    if not uow.buffered:
        return
    batches: dict[Executable, list[dict[str, Any]]] = {}
    for item in uow.buffered:
        batches.setdefault(item.statement, []).append(item.row)
    uow.written.extend(uow.buffered)
    uow.buffered = []
    connection = session.connection()
    for statement, rows in batches.items():
        connection.execute(statement, rows)


def before_read(state: ORMExecuteState) -> None:
    """``do_orm_execute``: buffered rows reach the database before any statement that might read them."""
    write_buffered(state.session)


def before_commit(session: Session) -> None:
    """``before_commit``: nothing buffered is left behind.

    The flush comes first, so the rows it makes ready (the Message-ID index of
    new articles) go out in the same batch as those buffered before.
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
    but sent inside it are buffered again. Deferred writes need no reset: an
    object that a rollback dropped is neither pending nor persistent and is skipped.
    """
    uow = unit_of_work(session)
    uow.fresh_ids.clear()
    if previous is None or not previous.nested:
        uow.locked.clear()
        uow.next_outbox_id = None
        uow.buffered = []
        uow.written = []
        return
    start, sent = uow.savepoints.get(previous, (0, 0))
    # Rows buffered before the savepoint but sent inside it were rolled back with it.
    again = [item for item in uow.written[sent:] if item.seq < start]
    del uow.written[sent:]
    kept = [item for item in uow.buffered if item.seq < start]
    uow.buffered = sorted(again + kept, key=lambda item: item.seq)
