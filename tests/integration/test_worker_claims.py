"""The worker's claims: the next row rides on the previous message's commit, and goes back on stop.

Real SQLite and PostgreSQL, the real worker; the spool rows are read back to
check states, tokens and attempt counts exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Harness
from sqlalchemy import text, update
from support.configs import make_config
from support.mails import build, new_id

from mailticket.model import utc_now
from mailticket.runners.worker import lease_transaction
from mailticket.store import workqueue
from mailticket.store.db import transaction
from mailticket.store.schema import QueueState, SpoolItem


@pytest.fixture
def h(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(make_config(tmp_path, db_url))
    yield harness
    harness.close()


def spool_three(h: Harness) -> list[int]:
    return [h.spool(build(from_="ivan@acme.example", message_id=new_id(), subject=f"case {i}"))
            for i in range(3)]


def states(h: Harness, ids: list[int]) -> list[tuple[str, int, bool]]:
    """(state, attempts, holds a token) per spool row."""
    rows = [h.spool_row(i) for i in ids]
    return [(r.state, r.attempts, r.claim_token is not None) for r in rows]


def test_finishing_a_message_claims_the_next_one(h: Harness) -> None:
    ids = spool_three(h)
    assert h.worker.run_once() is True
    # The first is done; its transaction counted the second's attempt and leased it.
    assert states(h, ids) == [(QueueState.DONE, 1, False), (QueueState.CLAIMED, 1, True),
                              (QueueState.QUEUED, 0, False)]
    assert h.worker.run_once() is True
    assert states(h, ids) == [(QueueState.DONE, 1, False), (QueueState.DONE, 1, False),
                              (QueueState.CLAIMED, 1, True)]
    assert h.worker.run_once() is True
    assert h.worker.run_once() is False
    assert states(h, ids) == [(QueueState.DONE, 1, False)] * 3
    assert [t.subject for t in h.tickets()] == ["case 0", "case 1", "case 2"]


def test_release_gives_the_kept_claim_back_uncounted(h: Harness) -> None:
    ids = spool_three(h)
    h.worker.run_once()
    h.worker.release()
    assert states(h, ids)[1:] == [(QueueState.QUEUED, 0, False), (QueueState.QUEUED, 0, False)]
    h.worker.release()  # nothing kept: nothing to do
    assert h.worker.drain() == 2
    assert states(h, ids) == [(QueueState.DONE, 1, False)] * 3


def test_a_stopped_worker_keeps_no_claim(h: Harness) -> None:
    ids = spool_three(h)
    h.worker.run_once()
    stop = threading.Event()
    stop.set()
    h.worker.run(stop)
    assert states(h, ids)[1] == (QueueState.QUEUED, 0, False)


def test_drain_with_a_limit_claims_nothing_ahead(h: Harness) -> None:
    ids = spool_three(h)
    assert h.worker.drain(limit=2) == 2
    assert states(h, ids) == [(QueueState.DONE, 1, False), (QueueState.DONE, 1, False),
                              (QueueState.QUEUED, 0, False)]


def test_a_kept_claim_taken_over_is_not_finished(h: Harness) -> None:
    ids = spool_three(h)
    h.worker.run_once()
    # Another worker took the second row over (its lease ran out, say).
    with transaction(h.factory) as s:
        s.execute(update(SpoolItem).where(SpoolItem.id == ids[1]).values(claim_token="other"))
    assert h.worker.run_once() is True
    row = h.spool_row(ids[1])
    assert (row.state, row.claim_token, row.outcome) == (QueueState.CLAIMED, "other", None)
    # PostgreSQL re-reads the row first and skips it; SQLite works from the claimed
    # copy, and finish() refuses the lost lease, so the whole transaction rolls back.
    assert h.worker.failed == (1 if h.engine.dialect.name == "sqlite" else 0)
    assert [t.subject for t in h.tickets()] == ["case 0"]


def test_a_lone_claim_skips_the_fsync_and_hands_back_a_durable_connection(h: Harness) -> None:
    sqlite = h.engine.dialect.name == "sqlite"
    query = "PRAGMA synchronous" if sqlite else "SHOW synchronous_commit"
    with lease_transaction(h.factory) as s:
        inside = s.connection().exec_driver_sql(query).scalar()
    with transaction(h.factory) as s:
        after = s.connection().exec_driver_sql(query).scalar()
    # SQLite: 1 is NORMAL, 2 is FULL (store.db's durable setting).
    assert (inside, after) == ((1, 2) if sqlite else ("off", "on"))


def test_a_failed_lone_claim_rolls_back_and_restores_durability(h: Harness) -> None:
    [spool_id] = [h.spool(build(from_="ivan@acme.example", message_id=new_id()))]
    with pytest.raises(RuntimeError), lease_transaction(h.factory) as s:
        s.execute(update(SpoolItem).where(SpoolItem.id == spool_id).values(attempts=5))
        raise RuntimeError("boom")
    assert h.spool_row(spool_id).attempts == 0
    if h.engine.dialect.name == "sqlite":
        with h.engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 2


def test_a_claim_names_its_holder_and_a_dead_holders_lease_ends_at_once(h: Harness) -> None:
    # Issue 18.8: a row held by a dead process is claimable at once, its attempt kept.
    ids = spool_three(h)
    with transaction(h.factory) as s:
        taken = workqueue.claim(s, SpoolItem, utc_now(), 300, holder="mt/dead")
    assert taken is not None and taken.id == ids[0]
    assert h.spool_row(ids[0]).claimed_by == "mt/dead"
    with transaction(h.factory) as s:
        assert workqueue.claim(s, SpoolItem, utc_now(), 300, holder="mt/live").id == ids[1]
    with transaction(h.factory) as s:
        assert workqueue.expire_held_by(s, SpoolItem, ["mt/dead"], utc_now()) == [ids[0]]
    with transaction(h.factory) as s:
        again = workqueue.claim(s, SpoolItem, utc_now(), 300, holder="mt/live")
    assert again is not None and (again.id, again.attempts) == (ids[0], 2)
    row = h.spool_row(ids[0])
    assert (row.state, row.claimed_by, row.claim_token) == (QueueState.CLAIMED, "mt/live",
                                                            again.token)
