"""Exactly once across a real crash: a scanning process killed with SIGKILL, then a restart.

A child process runs the scheduler's SLA scan over five overdue critical
tickets (each has four events due, fourteen mails in all) under the shipped
config, one ticket per transaction. It is killed in the middle, a fresh scan
runs as the restarted daemon would on start-up, and every event must then be
recorded once with every one of its mails queued once: nothing lost with the
killed transaction, nothing repeated from the committed ones.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from support.configs import REPO
from test_sla_scenario import ANNA, BORIS, CLARA, CUSTOMER, DMITRY, shipped_config

from mailticket.escalation import scan as sla_scan
from mailticket.outbound.notify import Notifier
from mailticket.outbound.render import Renderer
from mailticket.store.db import make_engine, make_sessionmaker, transaction
from mailticket.store.schema import OutboxItem, SlaEvent, Ticket

TICKETS = 5
# Friday 2026-11-20 23:55 MSK, all four thresholds of tickets opened at 19:50 have passed;
# the on-call pair that week is Boris and Dmitry.
NOW = datetime(2026, 11, 20, 23, 55, tzinfo=ZoneInfo("Europe/Moscow")).astimezone(UTC)
OPENED = NOW - timedelta(hours=4, minutes=5)
PER_TICKET = sorted([
    ("sla_warning_assignee", ANNA), ("sla_warning_deputy", BORIS), ("sla_warning_oncall", DMITRY),
    ("sla_warning_assignee", ANNA), ("sla_warning_deputy", BORIS), ("sla_warning_oncall", DMITRY),
    ("sla_breach_assignee", ANNA), ("sla_breach_deputy", BORIS),
    ("sla_breach_escalation", CLARA), ("sla_breach_oncall", DMITRY),
    ("sla_breach_assignee", ANNA), ("sla_breach_deputy", BORIS),
    ("sla_breach_escalation", CLARA), ("sla_breach_oncall", DMITRY),
])

CHILD = """
import dataclasses, sys
from datetime import datetime
from pathlib import Path
from mailticket import config
from mailticket.escalation import scan as sla_scan
from mailticket.outbound.notify import Notifier
from mailticket.outbound.render import Renderer
from mailticket.store.db import make_engine, make_sessionmaker
cfg = config.load(Path(sys.argv[1]))
cfg = dataclasses.replace(cfg, database=dataclasses.replace(cfg.database, url=sys.argv[2]))
factory = make_sessionmaker(make_engine(sys.argv[2]))
notifier = Notifier(cfg, Renderer(cfg.templates_dir))
print("scanning", flush=True)
sla_scan.scan(factory, notifier, datetime.fromisoformat(sys.argv[3]), batch_size=1)
print("finished", flush=True)
"""


def events_recorded(db_url: str) -> int:
    """SLA events committed so far, read without taking the write lock (SQLite: a WAL reader)."""
    if db_url.startswith("sqlite"):
        with closing(sqlite3.connect(make_url(db_url).database or "")) as conn:
            return int(conn.execute("SELECT count(*) FROM sla_events").fetchone()[0])
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(SlaEvent)).scalar_one())
    finally:
        engine.dispose()


def per_ticket_state(factory) -> dict[int, tuple[int, list[tuple[str, str]]]]:  # type: ignore[no-untyped-def]
    """For each ticket: its recorded SLA events and its queued mails (kind, recipient)."""
    with transaction(factory) as s:
        events = Counter(s.scalars(select(SlaEvent.ticket_id)))
        mails: dict[int, list[tuple[str, str]]] = {}
        for ticket_id, kind, rcpt in s.execute(
            select(OutboxItem.ticket_id, OutboxItem.kind, OutboxItem.rcpt_tos)
        ):
            mails.setdefault(ticket_id, []).append((kind, rcpt[0]))
    return {i: (events.get(i, 0), sorted(mails.get(i, []))) for i in range(1, TICKETS + 1)}


def test_scan_killed_midway_then_restarted_sends_each_mail_once(db_url: str) -> None:
    cfg = shipped_config(db_url)
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    try:
        with transaction(factory) as s:
            for i in range(TICKETS):
                s.add(Ticket(subject=f"Авария {i}", status="open", priority="critical", line="L1",
                             contract_id="acme", requester=CUSTOMER, assignee=ANNA, locale="ru",
                             created_at=OPENED, updated_at=OPENED, next_sla_check_at=OPENED))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(REPO / "config.example.toml"), db_url,
             NOW.isoformat()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            assert child.stdout is not None and child.stdout.readline() == "scanning\n"
            # Kill it once two tickets are committed: the third is then in flight.
            deadline = time.monotonic() + 30
            recorded = 0
            while recorded < 8 and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.005)
                recorded = events_recorded(db_url)
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(10)
        assert child.returncode == -signal.SIGKILL, child.stderr.read() if child.stderr else ""

        # Each ticket is all or nothing: four events and fourteen mails, or none of either.
        before = per_ticket_state(factory)
        done = [i for i, (events, _) in before.items() if events]
        assert 2 <= len(done) < TICKETS
        for events, mails in before.values():
            assert (events, mails) in ((4, PER_TICKET), (0, []))

        # The restarted daemon's start-up scan finishes the rest, and only the rest.
        notifier = Notifier(cfg, Renderer(cfg.templates_dir))
        result = sla_scan.scan(factory, notifier, NOW + timedelta(minutes=1))
        assert (result.tickets, result.events, result.failed) == (
            TICKETS - len(done), 4 * (TICKETS - len(done)), 0)
        after = per_ticket_state(factory)
        assert all(state == (4, PER_TICKET) for state in after.values())
        assert sla_scan.scan(factory, notifier, NOW + timedelta(minutes=2)).tickets == 0
    finally:
        engine.dispose()
