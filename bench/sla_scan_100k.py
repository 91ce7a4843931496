"""Issue 6's closing figure: one real SLA scan over 100,000 open tickets, SQLite and PostgreSQL.

Unlike ``sla_scan.py`` (the indexed query alone), this times the scheduler's whole
job, ``mailticket.escalation.scan.scan``: select the due tickets, lock them, rebuild each
one's clock from the database, evaluate it, record its events under the unique
key and queue every mail through the outbox.

The tickets (not timed) belong to the shipped ``config.example.toml`` contract
``acme`` and are in the state the per-minute scan leaves them in at ``NOW - 1 min``:

* 100,000 open tickets opened over the 14 days before ``NOW`` (Wednesday
  2026-11-18 12:00 MSK, a working day), 5 % critical (24/7), 25 % major, 50 %
  minor, 20 % technical (Moscow business hours with the RU production calendar);
* each has its customer article and its "opened" audit event; 60 % had a first
  reply (a reply article at a random share of the first-response target), and a
  tenth of those are waiting on the customer (a status audit event; paused);
* every SLA event that had fired by ``NOW - 1 min`` is already in ``sla_events``,
  and ``next_sla_check_at``/``first_response_due``/``resolution_due`` are the
  stamps ``sla.evaluate`` gives at that instant, exactly as the scan writes them.

Rows go in with multi-row bulk INSERTs in batches of 5,000, then ANALYZE. Three
scans are timed, in this order, each on a fresh sessionmaker:

1. **idle** at ``NOW - 1 min``: nothing is due; the indexed query over 100k rows
   (median of five);
2. **per minute** at ``NOW``: the tickets whose next threshold fell in the last
   minute: the steady state of a daemon scanning every minute;
3. **catch-up** at ``NOW + 60 min``: a daemon that was down for an hour.

Usage: ``.venv/bin/python bench/sla_scan_100k.py [--tickets N] [--backend sqlite|postgresql]``
(both backends by default; PostgreSQL at ``$MAILTICKET_PG_URL`` or the test server).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from common import REPO, database
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Engine

from mailticket import config as config_mod
from mailticket.escalation import scan as sla_scan
from mailticket.model import Priority
from mailticket.outbound.notify import Notifier
from mailticket.outbound.render import Renderer
from mailticket.sla.clock import TicketClock, Timer, evaluate
from mailticket.store.db import make_engine, make_sessionmaker
from mailticket.store.schema import Article, AuditEvent, OutboxItem, SlaEvent, Ticket

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=ZoneInfo("Europe/Moscow")).astimezone(UTC)
SPAN = timedelta(days=14)
MIX = ((Priority.CRITICAL, 0.05), (Priority.MAJOR, 0.25), (Priority.MINOR, 0.50),
       (Priority.TECHNICAL, 0.20))
BATCH = 5000
CUSTOMER, ENGINEER = "it@acme.example", "anna@example.com"


def shipped_config(url: str) -> config_mod.Config:
    cfg = config_mod.load(REPO / "config.example.toml", today=NOW.date())
    return dataclasses.replace(cfg, database=dataclasses.replace(cfg.database, url=url))


@dataclasses.dataclass
class Generated:
    tickets: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    articles: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    audit: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def generate(cfg: config_mod.Config, count: int, seed: int = 6) -> Generated:
    """Rows for ``count`` tickets, stamped as the scan at ``NOW - 1 min`` left them."""
    rng = random.Random(seed)
    plan = cfg.sla_plans["standard"]
    before = NOW - timedelta(minutes=1)
    priorities = [p for p, _ in MIX]
    weights = [w for _, w in MIX]
    out = Generated()
    for number in range(1, count + 1):
        priority = rng.choices(priorities, weights)[0]
        created = NOW - SPAN * rng.random()
        targets = plan.targets[priority]
        first_at = None
        pauses: tuple[tuple[datetime, datetime | None], ...] = ()
        status = "open"
        if rng.random() < 0.6:
            # Answered within 0.2–1.5 × the target, counted in wall-clock minutes (so
            # business-hours tickets are mostly answered "late" the next day: realistic).
            first_at = created + timedelta(minutes=targets.first_response_minutes
                                           * rng.uniform(0.2, 1.5))
            if first_at >= before:
                first_at = None
        if first_at is not None and rng.random() < 0.1:
            status = "waiting"
            pauses = ((first_at, None),)
        clock = TicketClock(created_at=created, priority=priority, first_response_at=first_at,
                            pauses=pauses)
        result = evaluate(clock, plan, cfg.calendars, before)
        timers = result.timers
        first = timers.get(Timer.FIRST_RESPONSE)
        resolution = timers.get(Timer.RESOLUTION)
        out.tickets.append({
            "id": number, "subject": f"Обращение {number}", "status": status,
            "priority": priority.value, "line": "L1", "contract_id": "acme",
            "requester": CUSTOMER, "assignee": ENGINEER, "locale": "ru", "created_at": created,
            "updated_at": first_at or created, "first_response_at": first_at,
            "time_spent_minutes": 0, "contract_type": "complex",
            "first_response_due": first.deadline.due_at if first else None,
            "resolution_due": resolution.deadline.due_at if resolution else None,
            "next_sla_check_at": result.next_check_at,
            "sla_paused_since": pauses[0][0] if pauses else None,
            "alert_count": 0, "alert_flaps": 0,
        })
        out.articles.append({"ticket_id": number, "direction": "in", "kind": "customer",
                             "from_addr": CUSTOMER, "to_addrs": ["support@example.com"],
                             "subject": f"Обращение {number}", "text": "Не работает.",
                             "defects": [], "created_at": created})
        out.audit.append({"ticket_id": number, "at": created, "actor": CUSTOMER,
                          "action": "opened", "detail": {}})
        if first_at is not None:
            out.articles.append({"ticket_id": number, "direction": "out", "kind": "reply",
                                 "from_addr": ENGINEER, "to_addrs": [CUSTOMER],
                                 "subject": f"Re: Обращение {number}", "text": "Смотрим.",
                                 "defects": [], "created_at": first_at})
        if status == "waiting":
            out.audit.append({"ticket_id": number, "at": first_at, "actor": ENGINEER,
                              "action": "status", "detail": {"from": "open", "to": "waiting"}})
        for event in result.events_due:
            out.events.append({"ticket_id": number, "timer": str(event.timer),
                               "kind": str(event.kind), "deadline": event.deadline,
                               "created_at": event.deadline})
    return out


def _batches(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), BATCH):
        yield rows[start : start + BATCH]


def load(engine: Engine, data: Generated) -> None:
    """Bulk-insert everything (multi-row INSERTs through SQLAlchemy's insertmanyvalues)."""
    with engine.begin() as conn:
        for model, rows in ((Ticket, data.tickets), (Article, data.articles),
                            (AuditEvent, data.audit), (SlaEvent, data.events)):
            for batch in _batches(rows):
                conn.execute(insert(model), batch)
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval(pg_get_serial_sequence('tickets', 'id'), "
                              "(SELECT max(id) FROM tickets))"))
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def timed_scan(
    engine: Engine, notifier: Notifier, at: datetime
) -> tuple[float, float, sla_scan.ScanResult]:
    """Wall-clock and this process's CPU seconds of one scan (CPU is steadier on a busy box)."""
    factory = make_sessionmaker(engine)
    t0, c0 = time.perf_counter(), time.process_time()
    result = sla_scan.scan(factory, notifier, at)
    return time.perf_counter() - t0, time.process_time() - c0, result


def run(backend: str, count: int, tmp: Path) -> list[str]:
    lines = []
    with database(backend, tmp) as url:
        cfg = shipped_config(url)
        t0 = time.perf_counter()
        data = generate(cfg, count)
        gen_s = time.perf_counter() - t0
        engine = make_engine(url)
        t0 = time.perf_counter()
        load(engine, data)
        load_s = time.perf_counter() - t0
        lines.append(f"{backend}: {count:,} open tickets, {len(data.articles):,} articles, "
                     f"{len(data.audit):,} audit events, {len(data.events):,} SLA events already "
                     f"sent; generated in {gen_s:.1f} s, bulk-inserted in {load_s:.1f} s")
        notifier = Notifier(cfg, Renderer(cfg.templates_dir))
        idle = [timed_scan(engine, notifier, NOW - timedelta(minutes=1)) for _ in range(5)]
        assert all(r.tickets == 0 for _, _, r in idle)
        lines.append(f"  {'idle scan (nothing due, median of 5):':40}"
                     f"{statistics.median(s for s, _, _ in idle) * 1000:8.1f} ms wall, "
                     f"{statistics.median(c for _, c, _ in idle) * 1000:.1f} ms CPU")
        for name, at in (("per-minute scan at NOW", NOW),
                         ("catch-up scan, 1 h down", NOW + timedelta(minutes=60))):
            seconds, cpu, result = timed_scan(engine, notifier, at)
            per = f"; {seconds / result.tickets * 1000:.1f} ms/ticket" if result.tickets else ""
            lines.append(f"  {name + ':':40}{seconds * 1000:8.1f} ms wall, {cpu * 1000:.1f} ms CPU "
                         f"({result.tickets} tickets due, {result.events} events, "
                         f"{result.mails} mails, {result.failed} failed{per})")
        with engine.connect() as conn:
            open_count = conn.scalar(select(func.count()).select_from(Ticket))
            mails = conn.scalar(select(func.count()).select_from(OutboxItem))
        lines.append(f"  tickets in the table: {open_count:,}; mails queued by the scans: {mails:,}")
        engine.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), action="append")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="mt-sla100k-") as tmp:
        for backend in args.backend or ["sqlite", "postgresql"]:
            for line in run(backend, args.tickets, Path(tmp)):
                print(line, flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
