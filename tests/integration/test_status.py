"""``mailticket status`` figures, read from a real database on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from harness import Harness
from support.configs import make_config
from support.mails import build

from mailticket.cli.status import collect_status, format_status
from mailticket.intake.imap_state import PollResult, record_poll
from mailticket.store.db import transaction
from mailticket.store.schema import OutboxItem, QueueState, SpoolItem

NOW = datetime(2026, 11, 20, 16, 50, tzinfo=UTC)


@pytest.fixture
def h(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(make_config(tmp_path, db_url))
    harness.clock.now = NOW - timedelta(hours=2)
    yield harness
    harness.close()


def _outbox(h: Harness, state: str, *, finished: datetime | None, error: str | None,
            attempts: int = 1, kind: str = "ack") -> int:
    with transaction(h.factory) as s:
        row = OutboxItem(kind=kind, envelope_from="support@provider.example",
                         rcpt_tos=["ivan@acme.example"], message_id=f"m{id(error)}@x", raw=b"x",
                         state=state, attempts=attempts, next_attempt_at=NOW,
                         created_at=NOW - timedelta(hours=30), finished_at=finished,
                         last_error=error)
        s.add(row)
        s.flush()
        return row.id


def test_empty_database(h: Harness) -> None:
    status = collect_status(h.factory, NOW)
    zero = dict.fromkeys(["queued", "claimed", "done", "quarantined", "rejected", "failed",
                          "dropped", "bounced"], 0)
    assert status == {
        "generated_at": "2026-11-20T16:50:00+00:00",
        "spool": zero,
        "outbox": zero,
        "oldest": {"spool": None, "outbox": None},
        "quarantined": 0,
        "outbox_failures_24h": {"failed": 0, "retrying": 0, "bounced": 0, "last_errors": []},
        "last_processed_at": None,
        "last_sent_at": None,
        "imap": [],
    }
    text = format_status(status)
    assert "oldest waiting spool: none" in text
    assert "last processed: never" in text
    assert "outbox failures in the last 24 h: 0 failed, 0 bounced, 0 waiting for a retry" in text
    assert text.endswith("imap: no account polled\n")


def test_queues_failures_and_last_times(h: Harness) -> None:
    h.deliver(build(from_="ivan@acme.example"))  # done, with an ack and two engineer notices
    h.clock.now = NOW - timedelta(minutes=30)
    oldest = h.spool(build(from_="petr@acme.example", subject="ждёт"))
    h.clock.now = NOW - timedelta(minutes=5)
    h.spool(build(from_="olga@acme.example", subject="тоже ждёт"))
    with transaction(h.factory) as s:
        poisoned = SpoolItem(source="smtp", mail_from="x@y.example", rcpt_tos=["s@p.example"],
                             raw=b"garbage", size=7, state=QueueState.QUARANTINED, attempts=3,
                             next_attempt_at=NOW, created_at=NOW - timedelta(hours=1),
                             finished_at=NOW - timedelta(minutes=40), last_error="Boom: x")
        s.add(poisoned)
    _outbox(h, QueueState.FAILED, finished=NOW - timedelta(hours=25), error="550 too old")
    failed = _outbox(h, QueueState.FAILED, finished=NOW - timedelta(hours=1),
                     error="550 5.1.1 no\r\nsuch user")
    retrying = _outbox(h, QueueState.QUEUED, finished=None, error="421 try later", attempts=2,
                       kind="engineer_new")
    with transaction(h.factory) as s:
        sent = s.get(OutboxItem, 1)
        assert sent is not None
        sent.state, sent.finished_at = QueueState.DONE, NOW - timedelta(minutes=50)

    status = collect_status(h.factory, NOW)
    assert status["spool"] == {"queued": 2, "claimed": 0, "done": 1, "quarantined": 1,
                               "rejected": 0, "failed": 0, "dropped": 0, "bounced": 0}
    assert status["outbox"] == {"queued": 3, "claimed": 0, "done": 1, "quarantined": 0,
                                "rejected": 0, "failed": 2, "dropped": 0, "bounced": 0}
    assert status["oldest"]["spool"] == {"id": oldest, "created_at": "2026-11-20T16:20:00+00:00",
                                         "age_seconds": 1800.0, "attempts": 0,
                                         "last_error": None}
    assert status["oldest"]["outbox"]["age_seconds"] == 30 * 3600.0
    assert status["quarantined"] == 1
    assert status["last_processed_at"] == "2026-11-20T16:10:00+00:00"
    assert status["last_sent_at"] == "2026-11-20T16:00:00+00:00"
    failures = status["outbox_failures_24h"]
    assert (failures["failed"], failures["retrying"]) == (1, 1)
    assert [(e["id"], e["state"], e["kind"], e["error"]) for e in failures["last_errors"]] == [
        (retrying, "queued", "engineer_new", "421 try later"),
        (failed, "failed", "ack", "550 5.1.1 no\r\nsuch user"),
    ]
    assert json.loads(json.dumps(status)) == status

    text = format_status(status)
    lines = text.splitlines()
    assert lines[0] == "mailticket status at 2026-11-20T16:50:00+00:00"
    assert lines[2].split() == ["queue", "queued", "claimed", "done", "quarantined", "rejected",
                                "failed", "dropped", "bounced"]
    assert lines[3].split() == ["spool", "2", "0", "1", "1", "0", "0", "0", "0"]
    assert lines[4].split() == ["outbox", "3", "0", "1", "0", "0", "2", "0", "0"]
    assert f"oldest waiting spool: #{oldest}, 30 min old, 0 attempt(s)" in lines
    assert "quarantined spool items: 1  (see `mailticket spool list`)" in lines
    assert "outbox failures in the last 24 h: 1 failed, 0 bounced, 1 waiting for a retry" in lines
    assert (f"  #{failed} failed ack to ivan@acme.example (attempt 1): 550 5.1.1 no such user"
            in lines)


def test_last_imap_poll_per_account(h: Harness) -> None:
    good = PollResult("support", NOW - timedelta(minutes=3), fetched=4, spooled=3)
    assert record_poll(h.factory, good)
    assert record_poll(h.factory, PollResult("sales", NOW - timedelta(hours=2), fetched=1, spooled=1))
    failed = PollResult("sales", NOW - timedelta(minutes=1), outcome="login_failed",
                        error="login as 'sales' refused:\r\n  AUTHENTICATIONFAILED")
    assert record_poll(h.factory, failed)

    status = collect_status(h.factory, NOW, imap_accounts=("support", "sales", "billing"))
    assert status["imap"] == [
        {"account": "billing", "polled_at": None, "outcome": None, "error": None,
         "fetched": 0, "spooled": 0, "last_ok_at": None},
        {"account": "sales", "polled_at": "2026-11-20T16:49:00+00:00",
         "outcome": "login_failed",
         "error": "login as 'sales' refused:\r\n  AUTHENTICATIONFAILED",
         "fetched": 0, "spooled": 0, "last_ok_at": "2026-11-20T14:50:00+00:00"},
        {"account": "support", "polled_at": "2026-11-20T16:47:00+00:00", "outcome": "ok",
         "error": None, "fetched": 4, "spooled": 3, "last_ok_at": "2026-11-20T16:47:00+00:00"},
    ]
    assert json.loads(json.dumps(status)) == status
    lines = format_status(status).splitlines()
    assert lines[-4:] == [
        "last imap poll per account:",
        "  billing: never polled",
        "  sales: 2026-11-20T16:49:00+00:00 login_failed, 0 fetched, 0 new: login as 'sales' "
        "refused: AUTHENTICATIONFAILED; last ok 2026-11-20T14:50:00+00:00",
        "  support: 2026-11-20T16:47:00+00:00 ok, 4 fetched, 3 new",
    ]
