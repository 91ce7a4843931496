"""Exactly once across a real crash: a scanning process killed with SIGKILL, then a restart.

A child process runs the scheduler's SLA scan over five overdue critical
tickets (each has four events due, fourteen mails in all) under the shipped
config, one ticket per transaction. It is killed in the middle (held by a
test-only gate inside the third ticket's transaction, not after a race with
the clock), a fresh scan runs as the restarted daemon would on start-up, and
every event must then be recorded once with every one of its mails queued
once: nothing lost with the killed transaction, nothing repeated from the
committed ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon_proc import Gates
from sqlalchemy import select
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
from sqlalchemy import event
from mailticket import config
from mailticket.escalation import scan as sla_scan
from mailticket.outbound.notify import Notifier
from mailticket.outbound.render import Renderer
from mailticket.runners.gates import DirectoryGate
from mailticket.store.db import make_engine, make_sessionmaker
cfg = config.load(Path(sys.argv[1]))
cfg = dataclasses.replace(cfg, database=dataclasses.replace(cfg.database, url=sys.argv[2]))
factory = make_sessionmaker(make_engine(sys.argv[2]))
# The test's gate on the scan's own sessions: with one ticket per batch, the third
# commit is the third ticket's; it is held there with its events written, uncommitted.
gate = DirectoryGate(Path(sys.argv[4]), {"sla_scan.before_commit": frozenset({3})})
def hold(session):
    if not session.in_nested_transaction():  # savepoints fire before_commit too
        gate("sla_scan.before_commit")
event.listen(factory, "before_commit", hold)
notifier = Notifier(cfg, Renderer(cfg.templates_dir))
sla_scan.scan(factory, notifier, datetime.fromisoformat(sys.argv[3]), batch_size=1)
print("finished", flush=True)
"""


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


def test_scan_killed_midway_then_restarted_sends_each_mail_once(
    db_url: str, tmp_path: Path
) -> None:
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
        gates = Gates(tmp_path / "gates")
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(REPO / "config.example.toml"), db_url,
             NOW.isoformat(), str(gates.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        try:
            # Two tickets are committed, the third is in flight: kill it there.
            gates.wait("sla_scan.before_commit@3", child)
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(10)
        assert child.returncode == -signal.SIGKILL

        # Each ticket is all or nothing: four events and fourteen mails, or none of either.
        before = per_ticket_state(factory)
        done = [i for i, (events, _) in before.items() if events]
        assert len(done) == 2
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
