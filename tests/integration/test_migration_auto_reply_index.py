"""Revision 0007: the index that keeps the per-ticket hourly cap off a full scan of the log.

``auto_mail.auto_mail_allowed`` counts a ticket's automatic mail of the last
hour. The migration must create exactly the index the ORM model declares, on
both backends, and take it back on downgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from support.databases import downgrade

from mailticket.store import migrate
from mailticket.store.db import make_engine
from mailticket.store.schema import AutoReplyLog


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def _indexes(engine: Engine) -> dict[str, list[str]]:
    return {
        str(ix["name"]): [str(c) for c in ix["column_names"]]
        for ix in inspect(engine).get_indexes("auto_reply_log")
    }


def test_migration_creates_the_model_indexes_and_takes_the_new_one_back(engine: Engine) -> None:
    model = {str(ix.name): [c.name for c in ix.columns] for ix in AutoReplyLog.__table__.indexes}
    assert model == {"ix_auto_reply_recipient": ["recipient", "sent_at"],
                     "ix_auto_reply_ticket": ["ticket_id", "sent_at"]}
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert _indexes(engine) == model

    downgrade(engine, "0006")
    assert _indexes(engine) == {"ix_auto_reply_recipient": ["recipient", "sent_at"]}
    migrate.upgrade(engine)
    assert _indexes(engine) == model


def test_per_ticket_count_uses_the_index_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    migrate.upgrade(engine)
    with engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(text(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM auto_reply_log "
            "WHERE ticket_id = 7 AND sent_at >= '2026-01-01'")))
    engine.dispose()
    assert "ix_auto_reply_ticket" in plan
