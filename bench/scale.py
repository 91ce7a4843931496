"""(f) Scale with stored history: the pipeline rate over 1M articles / 200k tickets, and its plans.

Issue 17 point 4. For each backend the same corpus is drained by one worker
process three times on an empty database and three times on one that already holds
the history (``BENCH_SCALE_TICKETS`` tickets with ``BENCH_SCALE_ARTICLES``
articles, their Message-ID index rows and contacts, done spool and outbox rows,
audit events, auto-reply log, SLA record rows, delivery failures and
suppressions), bulk-inserted in SQL the way ``sla_scan.py`` does it (one INSERT …
SELECT per table, that table's indexes dropped for it and built again after).
Each pass gets its own Message-IDs (``common.copies``); the passes alternate
between the two databases and each keeps its best, so a burst of other work on
the machine costs one pass, not the ratio. The ratio is history / empty,
target ≥ 0.9; the worker's CPU per mail is printed beside it.

Then the statements themselves: a drain child with a ``before_cursor_execute``
listener (here, in the bench, never in the product) records every distinct
statement the worker issues for a sample of mails on the full database, and
this process adds the outbox claim and the SLA scan's queries the same way.
Each is EXPLAINed with the parameters it was first run with, and printed with
``seek`` (every table reached through an index), ``SCAN`` (a full pass over a
table or an index) or ``write`` (a plain INSERT, nothing looked up).
PostgreSQL may plan a sequential scan over a table of a few rows whatever its
indexes; such tables are named with their row count.
"""

from __future__ import annotations

import os
import pickle
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import Mail, Results, copies
from procs import first_line, release, result, spawn
from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine
from throughput import outcome_counts, spool_all

from mailticket.escalation.scan import _due_ids, _lock_batch
from mailticket.store import workqueue
from mailticket.store.db import make_engine, make_sessionmaker
from mailticket.store.schema import OutboxItem

TICKETS = int(os.environ.get("BENCH_SCALE_TICKETS", 200_000))
ARTICLES = int(os.environ.get("BENCH_SCALE_ARTICLES", 1_000_000))
# History the queues keep: one finished spool row per two articles, as many outbox rows.
QUEUE_ROWS = ARTICLES // 2
SAMPLE = 80  # mails whose statements are captured and EXPLAINed
PASSES = 3  # drains of the corpus per database, alternating empty and history
CREATED = "2026-06-01 09:00:00.000000"


class Dialect:
    """The few expressions that differ between the two bulk fills."""

    def __init__(self, name: str) -> None:
        self.pg = name == "postgresql"

    def source(self, count: int) -> str:
        """A row source of ``i`` = 1 … count."""
        if self.pg:
            return f"FROM generate_series(1, {count}) AS i"
        return (f"FROM (WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq "
                f"WHERE i < {count}) SELECT i FROM seq)")

    def ts(self, literal: str = CREATED) -> str:
        return f"CAST('{literal}' AS timestamp)" if self.pg else f"'{literal}'"

    def json(self, literal: str) -> str:
        return f"CAST('{literal}' AS json)" if self.pg else f"'{literal}'"

    def blob(self) -> str:
        return "CAST('x' AS bytea)" if self.pg else "CAST('x' AS blob)"

    def true(self) -> str:
        return "true" if self.pg else "1"


def _fills(d: Dialect, domains: list[str]) -> list[tuple[str, str, int]]:
    """(table, INSERT … SELECT, rows) for every history table, in foreign-key order."""
    n_dom = len(domains)
    # requester i of the history: one of 5,000 people per run, in the corpus' own domains
    dom_case = "CASE " + " ".join(
        f"WHEN i % {n_dom} = {k} THEN '{dom}'" for k, dom in enumerate(domains)) + " END"
    contract_case = "CASE " + " ".join(
        f"WHEN i % {n_dom} = {k} THEN '{dom.split('.')[0]}'"
        for k, dom in enumerate(domains)) + " END"
    person = f"'hist' || (i % 5000) || '@' || {dom_case}"
    ticket_of = f"((i - 1) % {TICKETS}) + 1"
    to = d.json('["support@support.test"]')
    return [
        ("tickets",
         "INSERT INTO tickets (subject, status, priority, line, contract_id, requester, locale, "
         "created_at, updated_at, time_spent_minutes, first_response_due, resolution_due, "
         "next_sla_check_at, alert_count, alert_flaps) "
         f"SELECT 'History ticket ' || i, CASE WHEN i % 50 = 0 THEN 'open' ELSE 'closed' END, "
         f"'major', 'L1', {contract_case}, {person}, 'ru', {d.ts()}, {d.ts()}, 0, {d.ts()}, "
         f"{d.ts()}, CASE WHEN i % 50 = 0 THEN {d.ts('2027-06-01 09:00:00.000000')} END, 0, 0 "
         + d.source(TICKETS), TICKETS),
        ("ticket_contacts",
         f"INSERT INTO ticket_contacts (ticket_id, address, role) SELECT i, {person}, "
         f"'requester' " + d.source(TICKETS), TICKETS),
        ("articles",
         "INSERT INTO articles (ticket_id, direction, kind, message_id, from_addr, to_addrs, "
         "subject, text, spool_id, defects, created_at) "
         f"SELECT {ticket_of}, CASE WHEN i % 2 = 0 THEN 'out' ELSE 'in' END, "
         f"CASE WHEN i % 2 = 0 THEN 'reply' ELSE 'customer' END, "
         f"'<hist' || i || '@history.test>', {person}, {to}, 'History ticket ' || i, "
         "'Добрый день! Принтер в бухгалтерии снова не печатает, очередь заданий стоит. ' || "
         "'Перезагрузка не помогла, драйвер переустановили вчера. Article ' || i, "
         f"i, {d.json('[]')}, {d.ts()} " + d.source(ARTICLES), ARTICLES),
        ("message_ids",
         "INSERT INTO message_ids (message_id, ticket_id, article_id, direction) "
         f"SELECT '<hist' || i || '@history.test>', {ticket_of}, i, "
         "CASE WHEN i % 2 = 0 THEN 'out' ELSE 'in' END " + d.source(ARTICLES), ARTICLES),
        ("spool",
         "INSERT INTO spool (state, attempts, next_attempt_at, created_at, finished_at, source, "
         "mail_from, rcpt_tos, peer, raw, size, outcome, ticket_id) "
         f"SELECT 'done', 1, {d.ts()}, {d.ts()}, {d.ts()}, 'smtp', {person}, {to}, "
         f"'192.0.2.1:25', {d.blob()}, 1, 'article', {ticket_of} " + d.source(QUEUE_ROWS),
         QUEUE_ROWS),
        ("outbox",
         "INSERT INTO outbox (state, attempts, next_attempt_at, created_at, finished_at, "
         "ticket_id, kind, envelope_from, rcpt_tos, message_id, raw) "
         f"SELECT 'done', 1, {d.ts()}, {d.ts()}, {d.ts()}, {ticket_of}, 'ack', "
         f"'support@support.test', {to}, '<out' || i || '@support.test>', {d.blob()} "
         + d.source(QUEUE_ROWS), QUEUE_ROWS),
        ("audit_events",
         "INSERT INTO audit_events (ticket_id, at, actor, action, detail) "
         f"SELECT {ticket_of}, {d.ts()}, {person}, 'article_added', {d.json('{}')} "
         + d.source(TICKETS), TICKETS),
        ("auto_reply_log",
         "INSERT INTO auto_reply_log (recipient, kind, ticket_id, sent_at) "
         f"SELECT {person}, 'ack', {ticket_of}, {d.ts()} " + d.source(TICKETS), TICKETS),
        ("sla_events",
         "INSERT INTO sla_events (ticket_id, timer, kind, deadline, created_at, period, "
         "reason, notified) "
         f"SELECT i, 'first_response', 'met', {d.ts()}, {d.ts()}, 0, '', {d.true()} "
         + d.source(TICKETS), TICKETS),
        ("delivery_failures",
         "INSERT INTO delivery_failures (address, source, permanent, detail, at) "
         f"SELECT 'gone' || i || '@bounce.test', 'dsn', {d.true()}, '', {d.ts()} "
         + d.source(TICKETS // 20), TICKETS // 20),
        ("blobs",
         f"INSERT INTO blobs (sha256, data) SELECT 'history-blob-' || i, {d.blob()} "
         + d.source(TICKETS // 4), TICKETS // 4),
        ("address_suppressions",
         "INSERT INTO address_suppressions (address, reason, permanent_failures, suppressed_at) "
         f"SELECT 'gone' || i || '@bounce.test', '3 permanent failures', 3, {d.ts()} "
         + d.source(TICKETS // 200), TICKETS // 200),
    ]


def _plain_indexes(engine: Engine, table: str) -> list[dict[str, Any]]:
    """The table's secondary indexes that are plain column lists (those dropped for the fill)."""
    return [ix for ix in inspect(engine).get_indexes(table)
            if not ix.get("duplicates_constraint") and all(ix["column_names"])]


def fill(engine: Engine, domains: list[str]) -> float:
    """Insert the history; returns the seconds it took (indexes rebuilt and statistics taken)."""
    d = Dialect(engine.dialect.name)
    t0 = time.perf_counter()
    for table, sql, _rows in _fills(d, domains):
        indexes = _plain_indexes(engine, table)
        with engine.begin() as conn:
            if not d.pg:
                conn.exec_driver_sql("PRAGMA cache_size=-262144")
            for ix in indexes:
                conn.exec_driver_sql(f'DROP INDEX "{ix["name"]}"')
            conn.exec_driver_sql(sql.replace("%", "%%") if d.pg else sql)
            for ix in indexes:
                unique = "UNIQUE " if ix["unique"] else ""
                cols = ", ".join(f'"{c}"' for c in ix["column_names"])
                conn.exec_driver_sql(f'CREATE {unique}INDEX "{ix["name"]}" ON "{table}" ({cols})')
    if d.pg:
        # What autovacuum does after a bulk load; SQLite gets no ANALYZE, as the daemon runs none.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - t0


def _pass(mails: list[Mail], k: int) -> list[Mail]:
    """Pass ``k`` of the corpus: the same mail with Message-IDs of its own."""
    n = len(mails)
    return list(copies(mails, n * (k + 1)))[n * k:]


def _drain(url: str, tmp: Path, domains: list[str], mails: list[Mail], limit_s: float,
           capture: Path | None = None) -> dict[str, Any]:
    spool_all(url, mails)
    proc = spawn("drain", url, str(tmp), ",".join(domains), str(limit_s), "",
                 *([str(capture)] if capture else []))
    first_line(proc)
    started = time.perf_counter()
    release([proc])
    out = result(proc)
    out["seconds_wall"] = time.perf_counter() - started
    out["rate"] = out["count"] / out["seconds"] if out["seconds"] else 0.0
    return out


# --- query plans ---------------------------------------------------------------------------

SQLITE_SCAN = re.compile(r"^SCAN (?!CONSTANT)(\S+)")
PG_SEQ = re.compile(r"Seq Scan on (\S+)")


def _explain(engine: Engine, statement: str, params: Any) -> list[str]:
    with engine.connect() as conn:
        prefix = "EXPLAIN " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
        rows = conn.exec_driver_sql(prefix + statement, params).all()
        conn.rollback()
    if engine.dialect.name == "postgresql":
        return [" ".join(str(r[0]).split()) for r in rows]
    return [str(r[-1]) for r in rows]


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar() or 0)


def verdict(engine: Engine, statement: str, plan: list[str]) -> str:
    """``seek``, ``SCAN <table>`` or ``write`` for one statement's plan."""
    scans: list[str] = []
    for line in plan:
        match = (PG_SEQ.search(line) if engine.dialect.name == "postgresql"
                 else SQLITE_SCAN.match(line))
        if match:
            scans.append(match.group(1).strip('"'))
    # SQLite also says SCAN for the rows of a subquery it built (``anon_1``): that
    # reads what the subquery's own (listed) seeks found, not a table.
    tables = set(inspect(engine).get_table_names())
    if scanned := [t for t in scans if t in tables]:
        return "SCAN " + ", ".join(f"{t} ({_count(engine, t):,} rows)" for t in scanned)
    if any(("SEARCH" in line) or ("Index" in line) for line in plan):
        # A seek whose rows are then sorted reads every row the seek found, not one.
        sort = any(("TEMP B-TREE" in line) or re.match(r"(-> )?Sort\b", line) for line in plan)
        return "seek, then a sort of every row found" if sort else "seek"
    if statement.lstrip().upper().startswith("INSERT"):
        return "write"
    return "no table read"


def _picklable(params: Any) -> Any:
    """Parameters as plain values: the write path binds bodies as memoryviews."""
    if isinstance(params, memoryview):
        return params.tobytes()
    if isinstance(params, dict):
        return {key: _picklable(value) for key, value in params.items()}
    if isinstance(params, (list, tuple)):
        return type(params)(_picklable(value) for value in params)
    return params


class Capture:
    """Distinct statements run on an engine, with the parameters of their first run."""

    def __init__(self, engine: Engine) -> None:
        self.seen: dict[str, tuple[Any, int]] = {}
        self.engine = engine
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any,
                many: bool) -> None:
        first, count = self.seen.get(statement, (None, 0))
        if first is None:
            first = _picklable(params[0] if many and params else params)
        self.seen[statement] = (first, count + 1)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


def _product_statements(engine: Engine) -> dict[str, tuple[Any, int]]:
    """The outbox claim (the relay drainer's) and the SLA scan's two queries, as captured."""
    cap = Capture(engine)
    factory = make_sessionmaker(engine)
    now = datetime.now(UTC)
    with factory() as session:
        workqueue.claim(session, OutboxItem, now, 60.0, "bench")
        due = _due_ids(session, now) or [1]
        _lock_batch(session, due[:50], now)
        session.rollback()
    cap.close()
    return cap.seen


_SKIP = re.compile(r"^\s*(SAVEPOINT|RELEASE|ROLLBACK|BEGIN|COMMIT|PRAGMA|SET |SELECT pg_)", re.I)


def plans(res: Results, engine: Engine, captured: dict[str, tuple[Any, int]],
          backend: str) -> dict[str, int]:
    """EXPLAIN every captured statement, print its verdict and plan; counts per verdict."""
    tally = {"seek": 0, "sorted": 0, "SCAN": 0, "write": 0, "other": 0}
    for statement, (params, count) in sorted(captured.items(), key=lambda kv: -kv[1][1]):
        if _SKIP.match(statement):
            continue
        try:
            plan = _explain(engine, statement, params)
        except Exception as exc:  # a statement EXPLAIN refuses is printed, not fatal
            plan = [f"EXPLAIN failed: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"]
        what = verdict(engine, statement, plan)
        key = ("sorted" if what.startswith("seek, then") else
               what.split()[0] if what.split()[0] in tally else "other")
        tally[key] += 1
        if key == "write":
            continue
        short = " ".join(statement.split())
        short = short if len(short) <= 150 else short[:147] + "..."
        print(f"    [{what}] x{count}: {short}\n      plan: {' | '.join(plan)[:400]}", flush=True)
    writes = tally["write"]
    print(f"    ({writes} distinct INSERT statements with no lookup not shown)", flush=True)
    res.add("f scale plans", f"{backend} hot-path statements",
            f"{tally['seek'] + tally['sorted']} seek, {tally['SCAN']} SCAN",
            f"{tally['sorted']} of the seeks sort what they found; {writes} plain inserts, "
            f"{tally['other']} other; EXPLAIN at "
            f"{ARTICLES:,} articles / {TICKETS:,} tickets")
    return tally


def run(res: Results, db: Any, tmp: Path, mails: list[Mail], domains: list[str],
        limit_s: float) -> dict[str, float]:
    """Empty vs history rate on each backend; returns ratio keyed by backend, plus scans.

    The two databases exist side by side and their passes alternate (empty,
    history, empty, history …), so load from elsewhere on the machine falls on
    both alike; each keeps its best pass. The worker's CPU per mail, which
    does not depend on that load, is printed beside the ratio.
    """
    out: dict[str, float] = {}
    for backend in ("sqlite", "postgresql"):
        with db(backend, tmp) as empty_url, db(backend, tmp) as url:
            engine = make_engine(url)
            fill_s = fill(engine, domains)
            print(f"  {backend}: history filled in {fill_s:.0f} s ({ARTICLES:,} articles, "
                  f"{TICKETS:,} tickets, {QUEUE_ROWS:,} done spool and outbox rows)", flush=True)
            empty: list[dict[str, Any]] = []
            full: list[dict[str, Any]] = []
            for k in range(PASSES):
                empty.append(_drain(empty_url, tmp, domains, _pass(mails, k), limit_s))
                full.append(_drain(url, tmp, domains, _pass(mails, k), limit_s))
            stored = outcome_counts(url)
            capture = tmp / f"capture-{backend}.pickle"
            _drain(url, tmp, domains, _pass(mails, PASSES)[:SAMPLE], limit_s, capture)
            captured: dict[str, tuple[Any, int]] = pickle.loads(capture.read_bytes())
            captured.update(_product_statements(engine))
            print(f"  {backend}: query plans of every distinct statement the worker ran for "
                  f"{SAMPLE} mails, the outbox claim and the SLA scan", flush=True)
            tally = plans(res, engine, captured, backend)
            engine.dispose()
        best_e, best_f = max(p["rate"] for p in empty), max(p["rate"] for p in full)
        ratio = best_f / best_e if best_e else 0.0
        cpu_e = min(p["cpu_seconds"] / max(1, p["count"]) for p in empty) * 1000
        cpu_f = min(p["cpu_seconds"] / max(1, p["count"]) for p in full) * 1000
        out[backend] = ratio
        out[f"{backend}-scans"] = tally["SCAN"]
        res.add("f scale", f"{backend} 1 worker, history / empty", f"{ratio:.2f}x",
                f"best pass {best_f:.1f} msg/s with history ("
                + ", ".join(f"{p['rate']:.1f}" for p in full) + f") vs {best_e:.1f} empty ("
                + ", ".join(f"{p['rate']:.1f}" for p in empty) + "), passes alternating; "
                f"worker CPU {cpu_f:.2f} vs {cpu_e:.2f} ms/mail; target >= 0.9; "
                f"tickets now {stored['tickets']:,}")
    return out
