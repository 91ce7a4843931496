"""Engine and transactions, with SQLite set up for durability and PostgreSQL for sharing.

SQLite is the embedded default (one daemon instance); WAL with
``synchronous=FULL`` makes a commit as durable as fsync + rename, which is
what lets the SMTP listener say 250 only after the write. PostgreSQL is for
several instances sharing the spool and outbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailticket.errors import StoreError
from mailticket.store import after_flush, row_ids

SQLITE_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=FULL",
    "busy_timeout=15000",
    "foreign_keys=ON",
)


def is_sqlite(engine: Engine) -> bool:
    """Whether ``engine`` is SQLite (single instance, no SKIP LOCKED)."""
    return engine.dialect.name == "sqlite"


def make_engine(url: str) -> Engine:
    """Create an engine; for SQLite make the directory and set durable pragmas per connection."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Each thread gets its own connection; the listener writes from a worker thread.
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 15}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _set_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy issue BEGIN itself (see the "begin" hook below).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            # Take the write lock at BEGIN so read-then-write transactions never
            # deadlock on lock upgrade; busy_timeout makes the others wait.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """A factory of :class:`UnitOfWork` sessions whose objects stay readable after commit.

    The buffered-write and scratch-state hooks are registered on this factory
    only, so sessions made any other way carry none of them.
    """
    factory: sessionmaker[Session] = sessionmaker(
        engine, class_=after_flush.UnitOfWork, expire_on_commit=False,
        row_ids=row_ids.RowIds(),
    )
    event.listen(factory, "do_orm_execute", after_flush.before_read)
    event.listen(factory, "before_commit", after_flush.before_commit)
    event.listen(factory, "after_transaction_create", after_flush.transaction_begun)
    event.listen(factory, "after_commit", after_flush.forget)
    event.listen(factory, "after_soft_rollback", after_flush.forget)
    return factory


@contextmanager
def transaction(
    factory: sessionmaker[Session], *, error: str = "database error", **session_kw: Any
) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error; DB errors become StoreError.

    :param error: how a database failure is described in the StoreError.
    :param session_kw: passed to the factory, e.g. ``bind=`` a connection.
    """
    session = factory(**session_kw)
    try:
        yield session
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise StoreError(f"{error}: {exc.__class__.__name__}: {exc}") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
