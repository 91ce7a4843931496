"""Writes that need a new row's id, queued in the session and done right after the flush.

The outbox's VERP envelope sender and the Message-ID index of a new article
both need an id the database assigns at flush. Forcing a flush per mail
costs a round trip each; instead the caller queues the object here, and its
``after_flush_postexec`` listener takes the ones that got an id and writes
them all in one statement. An object dropped by a rolled-back savepoint is
forgotten; one not yet flushed waits for the next flush.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session


def defer(session: Session, key: str, obj: object, *payload: Any) -> None:
    """Queue ``obj`` (with ``payload``) under ``key`` until a flush gives it an id."""
    session.info.setdefault(key, []).append((obj, payload))


def waiting(session: Session, key: str) -> bool:
    """Whether anything queued under ``key`` still waits for its flush."""
    return bool(session.info.get(key))


def take_flushed(session: Session, key: str) -> list[tuple[Any, tuple[Any, ...]]]:
    """The queued objects that now have their id, removed from the queue, in order."""
    queued = session.info.get(key)
    if not queued:
        return []
    flushed, still_pending = [], []
    for obj, payload in queued:
        state = inspect(obj)
        if state.persistent:
            flushed.append((obj, payload))
        elif state.pending:
            still_pending.append((obj, payload))
        # else: dropped with a rolled-back savepoint.
    session.info[key] = still_pending
    return flushed
