"""Real databases for tests: a SQLite file per test, and a fresh PostgreSQL database per test.

PostgreSQL is the one on the machine (127.0.0.1:5432, trust auth) or
``$MAILTICKET_PG_URL``. A migrated template database is built once per session;
each test gets ``CREATE DATABASE … TEMPLATE`` copy (fast) and drops it after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from mailticket.store import migrate
from mailticket.store.db import make_engine

PG_ADMIN_URL = os.environ.get("MAILTICKET_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_TEMPLATE = f"mt_template_{os.getpid()}"
_template_ready = False


def _admin() -> Engine:
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def pg_url(name: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _ensure_template() -> None:
    global _template_ready
    if _template_ready:
        return
    admin = _admin()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{_TEMPLATE}"'))
            conn.execute(text(f'CREATE DATABASE "{_TEMPLATE}"'))
    except Exception as exc:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc.__class__.__name__}: {exc}). "
            "The tests need it: start it (pg_ctlcluster 15 main start) or set MAILTICKET_PG_URL."
        ) from exc
    finally:
        admin.dispose()
    engine = make_engine(pg_url(_TEMPLATE))
    migrate.upgrade(engine)
    engine.dispose()
    _template_ready = True


def drop_template() -> None:
    if not _template_ready:
        return
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{_TEMPLATE}" WITH (FORCE)'))
    admin.dispose()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database URL, dropped afterwards."""
    _ensure_template()
    name = f"mt_{uuid.uuid4().hex[:12]}"
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{_TEMPLATE}"'))
    try:
        yield pg_url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def sqlite_database(tmp: Path) -> Iterator[str]:
    """A migrated SQLite database file in ``tmp``."""
    url = f"sqlite:///{tmp / 'mailticket.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url


def downgrade(engine: Engine, revision: str) -> None:
    """Alembic downgrade to ``revision`` (tests only; the daemon never downgrades)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrate.MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
