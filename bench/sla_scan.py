"""(c) SLA scan time at 10k, 100k and 1M open tickets: the indexed "what is due now" query.

The scheduler's scan (``mailticket.escalation.scan``) starts from this query
(ARCHITECTURE §2.4): ``SELECT … FROM tickets WHERE next_sla_check_at <= now``
on the indexed column, so its cost over many open tickets is this query's
cost plus the work on the due ones. Tickets are bulk-inserted in SQL (not
timed); 1 % of them are due, as in a per-minute scan; the figure is the
median of five runs, fetching every row. The whole scan, due tickets and all,
is timed by ``bench/sla_scan_100k.py`` (not part of ``bench/run``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import Results, median
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from mailticket.store.db import make_engine, make_sessionmaker
from mailticket.store.schema import Ticket

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
COLUMNS = (
    "subject, status, priority, line, contract_id, requester, locale, created_at, updated_at, "
    "time_spent_minutes, first_response_due, resolution_due, next_sla_check_at"
)
# Seconds from NOW for ticket i: spread over -1 h … +99 h, so 1 % are due.
OFFSET = "(((i * 7919) % 10000) * 36 - 3600)"

SQLITE_FILL = f"""
INSERT INTO tickets ({COLUMNS})
WITH RECURSIVE seq(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM seq WHERE i < :stop - 1)
SELECT 'Bench ticket ' || i, 'open', 'major', 'L1', 'acme', 'user' || (i % 500) || '@acme.test',
       'ru', :created, :created, 0, :created, :created,
       strftime('%Y-%m-%d %H:%M:%S', :now, {OFFSET} || ' seconds') || '.000000'
FROM seq
"""
PG_FILL = f"""
INSERT INTO tickets ({COLUMNS})
SELECT 'Bench ticket ' || i, 'open', 'major', 'L1', 'acme', 'user' || (i % 500) || '@acme.test',
       'ru', CAST(:created AS timestamp), CAST(:created AS timestamp), 0,
       CAST(:created AS timestamp), CAST(:created AS timestamp),
       CAST(:now AS timestamp) + make_interval(secs => {OFFSET})
FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint) - 1) AS i
"""
SIZES = (10_000, 100_000, 1_000_000)


def _fill(engine: Engine, start: int, stop: int) -> None:
    """Add tickets ``start`` … ``stop - 1`` in one INSERT … SELECT, the way a bulk load is done.

    The ticket indexes are dropped for the insert and built again after it
    (sorting once beats a million random B-tree inserts), and SQLite gets a big
    page cache for the connection; the schema measured is the same.
    """
    params = {"start": start, "stop": stop, "now": NOW.strftime("%Y-%m-%d %H:%M:%S"),
              "created": "2026-11-01 09:00:00.000000"}
    sql = SQLITE_FILL if engine.dialect.name == "sqlite" else PG_FILL
    indexes = list(Ticket.__table__.indexes)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA cache_size=-262144")
        for index in indexes:
            index.drop(conn)
        conn.execute(text(sql), params)
        for index in indexes:
            index.create(conn)
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def _plan(engine: Engine) -> str:
    """The database's own plan for the scan, to show the index is used."""
    literal = NOW.strftime("%Y-%m-%d %H:%M:%S.%f")
    query = f"SELECT id FROM tickets WHERE next_sla_check_at <= '{literal}'"
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}").all()
            return "; ".join(str(r[-1]) for r in rows)
        rows = conn.exec_driver_sql(f"EXPLAIN {query}").all()
        return "; ".join(" ".join(str(r[0]).split()) for r in rows[:2])


def scan(engine: Engine) -> tuple[float, int]:
    """Median seconds of the due-ticket query (five runs) and the number of rows it returns."""
    factory = make_sessionmaker(engine)
    query = select(
        Ticket.id, Ticket.status, Ticket.priority, Ticket.first_response_due,
        Ticket.resolution_due, Ticket.sla_paused_since, Ticket.next_sla_check_at,
    ).where(Ticket.next_sla_check_at <= NOW)
    times, count = [], 0
    for _ in range(5):
        with factory() as session:
            t0 = time.perf_counter()
            count = len(session.execute(query).all())
            times.append(time.perf_counter() - t0)
    return median(times), count


def run(res: Results, db: Any, tmp: Path, sizes: tuple[int, ...] = SIZES) -> dict[str, float]:
    """Grow the ticket table through ``sizes`` on each backend; returns ms keyed by backend-size."""
    out: dict[str, float] = {}
    for backend in ("sqlite", "postgresql"):
        with db(backend, tmp) as url:
            engine = make_engine(url)
            have = 0
            for size in sizes:
                t0 = time.perf_counter()
                _fill(engine, have, size)
                fill_s = time.perf_counter() - t0
                have = size
                seconds, due = scan(engine)
                out[f"{backend}-{size}"] = seconds * 1000
                plan = _plan(engine) if size == sizes[-1] else ""
                res.add("c sla scan (indexed query only)", f"{backend} {size:,} open tickets",
                        f"{seconds * 1000:.1f} ms",
                        f"{due:,} due rows fetched; bulk insert {fill_s:.1f} s"
                        + (f"; plan: {plan}" if plan else ""))
            engine.dispose()
    return out
