"""(b) End-to-end pipeline rate: spool rows → tickets + outbox rows, 1 and 2 worker processes.

The corpus is spooled first (not timed), then N worker processes are released
together and drain the spool; the figure is spool items finished per second
of wall time. Each worker is a separate process running the real
``SpoolWorker.run_once`` loop, as several daemon instances (PostgreSQL) or a
multi-worker daemon would. A time limit keeps a slow run inside the budget;
the figure is then the rate over the items finished in time.
"""

from __future__ import annotations

import pstats
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import SUPPORT, Mail, Results
from procs import first_line, release, result, spawn
from sqlalchemy import func, insert, select

from mailticket.store.db import make_engine, make_sessionmaker
from mailticket.store.schema import Article, OutboxItem, SpoolItem, Ticket


def spool_all(url: str, mails: list[Mail] | Any, batch: int = 500) -> int:
    """Insert every mail as a queued spool row (ids in corpus order); returns the count.

    Core ``executemany`` in transactions of ``batch`` rows: setting up is not
    what is measured, so it should not eat the time budget.
    """
    engine = make_engine(url)
    table = SpoolItem.__table__
    now = datetime.now(UTC)
    count = 0
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        with engine.begin() as conn:
            conn.execute(insert(table), pending)
        pending.clear()

    for mail in mails:
        pending.append({
            "source": "smtp", "mail_from": mail.sender, "rcpt_tos": [SUPPORT],
            "peer": "192.0.2.1:25", "raw": mail.raw, "size": len(mail.raw),
            "next_attempt_at": now, "created_at": now,
        })
        count += 1
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    engine.dispose()
    return count


def outcome_counts(url: str, mails: list[Mail] | None = None) -> dict[str, int]:
    """What the run stored: tickets, customer articles, outbox rows, unfinished spool rows.

    With ``mails`` (spooled in order, so spool id i is ``mails[i - 1]``) it also
    counts the finished mails that start a new thread in the corpus: more
    tickets than that means replies that failed to thread.
    """
    engine = make_engine(url)
    with make_sessionmaker(engine)() as s:
        done = s.scalars(select(SpoolItem.id).where(SpoolItem.state == "done")).all()
        figures = {
            "expected_tickets": sum(1 for i in done if mails and mails[i - 1].kind == "new"),
            "tickets": s.scalar(select(func.count()).select_from(Ticket)),
            "customer_articles": s.scalar(
                select(func.count()).select_from(Article).where(Article.kind == "customer")),
            "outbox": s.scalar(select(func.count()).select_from(OutboxItem)),
            "unfinished": s.scalar(
                select(func.count()).select_from(SpoolItem)
                .where(SpoolItem.state.in_(["queued", "claimed"]))),
            "not_done": s.scalar(
                select(func.count()).select_from(SpoolItem)
                .where(SpoolItem.state.not_in(["queued", "claimed", "done"]))),
        }
    engine.dispose()
    return {k: int(v or 0) for k, v in figures.items()}


def drain(url: str, tmp: Path, domains: list[str], workers: int, limit_s: float,
          profile: Path | None = None) -> dict[str, Any]:
    """Release ``workers`` drain children on ``url``; wall time and totals of the run."""
    args = [url, str(tmp), ",".join(domains), str(limit_s)]
    procs = [spawn("drain", *args, *([str(profile)] if profile and i == 0 else []))
             for i in range(workers)]
    for proc in procs:
        first_line(proc)
    started = time.perf_counter()
    release(procs)
    outs = [result(proc) for proc in procs]
    seconds = time.perf_counter() - started
    count = sum(o["count"] for o in outs)
    return {"count": count, "seconds": seconds, "rate": count / seconds,
            "failed": sum(o["failed"] for o in outs),
            "hwm_kb": max(o["hwm_kb"] for o in outs), "per_worker": [o["count"] for o in outs]}


def run(res: Results, db: Any, tmp: Path, mails: list[Mail], domains: list[str],
        limit_s: float) -> dict[str, float]:
    """Measure every backend × worker count; returns msg/s keyed ``sqlite-1`` etc."""
    rates: dict[str, float] = {}
    for backend in ("sqlite", "postgresql"):
        for workers in (1, 2):
            with db(backend, tmp) as url:
                spool_all(url, mails)
                out = drain(url, tmp, domains, workers, limit_s)
                stored = outcome_counts(url, mails)
            key = f"{backend}-{workers}"
            rates[key] = out["rate"]
            # A worker stops at the limit, or when nothing is due: a reply that overtook
            # its original (another worker still had it) waits a second, deferred.
            partial = ("" if not stored["unfinished"] else
                       f", stopped at the {limit_s:.0f} s limit" if out["seconds"] >= limit_s else
                       f", {stored['unfinished']} left waiting (deferred), counted once more "
                       "for each deferral")
            res.add(
                "b pipeline", f"{backend} {workers} worker{'s' * (workers > 1)}",
                f"{out['rate']:.1f} msg/s",
                f"{out['count']} msgs in {out['seconds']:.1f} s{partial}; tickets="
                f"{stored['tickets']} (threads started by these mails: "
                f"{stored['expected_tickets']}) customer articles="
                f"{stored['customer_articles']} outbox={stored['outbox']} "
                f"errors={out['failed']} per worker={out['per_worker']}",
            )
    return rates


def profile(db: Any, tmp: Path, mails: list[Mail], domains: list[str], top: int = 25) -> None:
    """An extra, profiled one-worker SQLite run: where the pipeline spends its time."""
    path = tmp / "pipeline.prof"
    with db("sqlite", tmp) as url:
        spool_all(url, mails)
        out = drain(url, tmp, domains, 1, 300, path)
    print(f"\n  profile: {out['count']} msgs, sqlite, 1 worker, under cProfile "
          f"({out['rate']:.1f} msg/s with profiling overhead)")
    stats = pstats.Stats(str(path))
    print("  top functions by own time:")
    stats.sort_stats("tottime").print_stats(top)
    print("  mailticket functions by cumulative time:")
    stats.sort_stats("cumulative").print_stats(r"mailticket/", top)
