"""Writes that need a new row's id, queued on the unit of work and done right after its flush.

The outbox's VERP envelope sender and the Message-ID index of a new article
both need an id the database assigns at flush. Forcing a flush per mail
costs a round trip each; instead the caller queues the object with the
function that writes it, and one ``after_flush_postexec`` listener, registered
on the session factory by :func:`mailticket.store.db.make_sessionmaker`, hands
each writer the objects that got an id, in one call. An object dropped by a
rolled-back savepoint is forgotten; one not yet flushed waits for the next flush.

The queue is a typed attribute of :class:`UnitOfWork`, the session class the
factory makes, not an entry in ``session.info``, and no listener is registered
on the global ``Session`` class, so a session made elsewhere (Alembic, a test's
bare ``Session``) never runs our hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session

Flushed = Sequence[tuple[Any, tuple[Any, ...]]]
"""What a writer receives: ``(object, payload)`` pairs whose object now has its id."""
Writer = Callable[[Session, Flushed], None]


@dataclass
class _Deferred:
    obj: object
    writer: Writer
    payload: tuple[Any, ...]


class UnitOfWork(Session):
    """The session our factory makes: a Session plus typed per-transaction scratch state.

    ``deferred`` holds the writes waiting for a flush; ``fresh_ids`` holds the ids
    of rows inserted in this transaction whose state is still known from memory
    (the tickets service records tickets opened and untouched since, so the SLA
    stamp needs no read back), forgotten at commit and at any rollback.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deferred: list[_Deferred] = []
        self.fresh_ids: set[int] = set()


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


def forget(session: Session, _previous: object = None) -> None:
    """``after_commit`` / ``after_soft_rollback``: forget rows known from memory.

    A rollback (even of a savepoint) may take opened rows back, so their ids
    are not trusted after it. Deferred writes need no reset: an object that a
    rollback dropped is neither pending nor persistent and is skipped.
    """
    unit_of_work(session).fresh_ids.clear()
