"""The queue claims are index seeks that stop at their first row, with history in the table.

Issue 17 point 4: with a spool holding many finished rows, the old claim (one
``OR`` over due and expired rows) was a full scan of the spool on SQLite and a
sort of the whole backlog on PostgreSQL. The claim's real statements are
recorded as ``workqueue.claim`` runs them (a ``before_cursor_execute``
listener) and each is EXPLAINed, with its parameters, on a table of
thousands of finished rows and a backlog, on both backends. Revision 0013's
index must be the one the model declares, and go back on downgrade, as must
its uncompressed storage of spool bodies on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, inspect
from sqlalchemy.engine import Engine
from support.databases import downgrade

from mailticket.model import utc_now
from mailticket.store import migrate, workqueue
from mailticket.store.db import make_engine, make_sessionmaker
from mailticket.store.schema import OutboxItem, QueueState, SpoolItem

FINISHED = 5000
BACKLOG = 300


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def _fill(engine: Engine, model: type[SpoolItem] | type[OutboxItem]) -> None:
    """Many finished rows, a backlog all due at the same instant, one expired lease."""
    now = utc_now()
    old = now - timedelta(days=30)
    if model is SpoolItem:
        common: dict[str, Any] = {"source": "smtp", "mail_from": "a@b.example",
                                  "rcpt_tos": ["support@example.com"], "raw": b"x", "size": 1}
    else:
        common = {"kind": "ack", "envelope_from": "support@example.com",
                  "rcpt_tos": ["a@b.example"], "message_id": "<m@x>", "raw": b"x"}
    # executemany needs every row to name the same columns
    common.update(finished_at=None, lease_until=None, claim_token=None)
    rows = [{**common, "state": QueueState.DONE, "next_attempt_at": old, "created_at": old,
             "finished_at": old} for _ in range(FINISHED)]
    rows += [{**common, "state": QueueState.QUEUED, "next_attempt_at": now, "created_at": now}
             for _ in range(BACKLOG)]
    rows.append({**common, "state": QueueState.CLAIMED, "next_attempt_at": now,
                 "created_at": now, "lease_until": now - timedelta(minutes=1),
                 "claim_token": "t" * 32})
    with engine.begin() as conn:
        conn.execute(insert(model), rows)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"ANALYZE {model.__tablename__}")


def _claim_plans(engine: Engine, model: type[SpoolItem] | type[OutboxItem]) -> list[str]:
    """The plan of every SELECT the claim ran, as one line each."""
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with make_sessionmaker(engine)() as session:
            held = workqueue.claim(session, model, utc_now(), 60.0)
            session.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert held is not None
    assert len(seen) == 2
    plans = []
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        for statement, params in seen:
            rows = conn.exec_driver_sql(prefix + statement, params).all()
            plans.append(" | ".join(str(r[-1] if engine.dialect.name == "sqlite" else r[0])
                                    for r in rows))
    return plans


@pytest.mark.parametrize("model", [SpoolItem, OutboxItem], ids=["spool", "outbox"])
def test_claim_is_two_index_seeks_without_a_sort(
    engine: Engine, model: type[SpoolItem] | type[OutboxItem]
) -> None:
    _fill(engine, model)
    index = f"ix_{model.__tablename__}_due"
    for plan in _claim_plans(engine, model):
        if engine.dialect.name == "sqlite":
            assert f"SEARCH {model.__tablename__} USING INDEX {index}" in plan, plan
            assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan
        else:
            assert f"Index Scan using {index}" in plan, plan
            assert "Seq Scan" not in plan and "Sort" not in plan, plan


def test_an_expired_lease_older_than_the_backlog_is_claimed_first(engine: Engine) -> None:
    _fill(engine, SpoolItem)
    factory = make_sessionmaker(engine)
    with factory() as session:
        expired = session.query(SpoolItem.id).filter_by(state=QueueState.CLAIMED).scalar()
        first_queued = (session.query(SpoolItem.id).filter_by(state=QueueState.QUEUED)
                        .order_by(SpoolItem.id).limit(1).scalar())
        # Same next_attempt_at: the id breaks the tie, and the queued rows came first.
        held = workqueue.claim(session, SpoolItem, utc_now(), 60.0)
        assert held is not None and held.id == first_queued
        session.rollback()
        session.query(SpoolItem).filter_by(id=expired).update(
            {"next_attempt_at": utc_now() - timedelta(hours=1)})
        session.commit()
        held = workqueue.claim(session, SpoolItem, utc_now(), 60.0)
        assert held is not None and held.id == expired and held.attempts == 1
        session.rollback()


def _indexes(engine: Engine, table: str) -> dict[str, list[str]]:
    return {str(ix["name"]): [str(c) for c in ix["column_names"]]
            for ix in inspect(engine).get_indexes(table) if ix["name"].endswith("_due")}


def _raw_storage(engine: Engine) -> str | None:
    """PostgreSQL's storage mode of spool.raw (``e`` external, ``x`` extended); None on SQLite."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        return str(conn.exec_driver_sql(
            "SELECT attstorage FROM pg_attribute "
            "WHERE attrelid = 'spool'::regclass AND attname = 'raw'").scalar())


def test_migration_0013_builds_the_model_index_and_takes_it_back(engine: Engine) -> None:
    assert migrate.current_revision(engine) == migrate.head_revision()
    pg = engine.dialect.name == "postgresql"
    # The accept path's bodies are not compressed by PostgreSQL (0013).
    assert _raw_storage(engine) == ("e" if pg else None)
    for model in (SpoolItem, OutboxItem):
        table = model.__tablename__
        declared = {str(ix.name): [c.name for c in ix.columns]
                    for ix in model.__table__.indexes if str(ix.name).endswith("_due")}
        assert declared == {f"ix_{table}_due": ["state", "next_attempt_at", "id"]}
        assert _indexes(engine, table) == declared
    downgrade(engine, "0012")
    assert _indexes(engine, "spool") == {"ix_spool_due": ["state", "next_attempt_at"]}
    assert _raw_storage(engine) == ("x" if pg else None)
    migrate.upgrade(engine)
    assert _raw_storage(engine) == ("e" if pg else None)
    assert _indexes(engine, "outbox") == {"ix_outbox_due": ["state", "next_attempt_at", "id"]}
