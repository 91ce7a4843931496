"""Alembic migrations on both backends, from an empty database: up to head, down a step, up again.

Issue 9 asks that the migrations run on SQLite and PostgreSQL alike. Each
test starts from a really empty database (no template), upgrades to head,
checks that the newest table (``imap_poll_state``, revision 0006) matches the
ORM model, takes that revision back and applies it again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine
from support.databases import PG_ADMIN_URL, downgrade, pg_url

from mailticket.store import migrate
from mailticket.store.db import make_engine
from mailticket.store.schema import ImapPollState

REVISION = "0006"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield engine
        engine.dispose()
        return
    name = f"mt_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(pg_url(name))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _previous(revision: str) -> str:
    path = next(migrate.MIGRATIONS.glob(f"versions/{revision}_*.py"))
    for line in path.read_text().splitlines():
        if line.startswith("down_revision = "):
            return line.split("=", 1)[1].strip().strip("'\"")
    raise AssertionError(f"{path} has no down_revision")


def _poll_state_columns(engine: Engine) -> dict[str, tuple[str, bool]] | None:
    inspector = inspect(engine)
    if "imap_poll_state" not in inspector.get_table_names():
        return None
    return {
        c["name"]: (type(c["type"]).__name__.lower(), bool(c["nullable"]))
        for c in inspector.get_columns("imap_poll_state")
    }


def test_upgrade_downgrade_upgrade_on_an_empty_database(empty_engine: Engine) -> None:
    assert migrate.current_revision(empty_engine) is None
    migrate.upgrade(empty_engine)
    migrate.require_current(empty_engine)
    assert migrate.head_revision() >= REVISION
    columns = _poll_state_columns(empty_engine)
    assert columns is not None
    model = {c.name: c.nullable for c in ImapPollState.__table__.columns}
    assert {name: nullable for name, (_, nullable) in columns.items()} == model
    assert set(model) == {"account", "polled_at", "outcome", "error", "fetched", "spooled",
                          "last_ok_at"}
    assert inspect(empty_engine).get_pk_constraint("imap_poll_state")["constrained_columns"] == [
        "account"
    ]

    previous = _previous(REVISION)
    downgrade(empty_engine, previous)
    assert migrate.current_revision(empty_engine) == previous
    assert _poll_state_columns(empty_engine) is None

    migrate.upgrade(empty_engine)
    migrate.require_current(empty_engine)
    assert _poll_state_columns(empty_engine) == columns
