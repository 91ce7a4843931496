"""The spool worker loop: claim → pipeline → finish, in one transaction per message.

A row is claimed (its attempt counted, under a lease) in a transaction of its
own before it is processed, so a message that kills the process still uses up
its attempts. In a busy spool that claim rides along: the transaction that
finishes one message also claims the next, so each message costs one durable
commit. This is the only place that catches every exception (Mailman's
``Runner._one_iteration``): the traceback is logged with the spool id, the
message stays in the spool, the attempt is counted, and after
``worker.max_attempts`` the row is quarantined for ``mailticket spool retry``.
A worker never dies on a bad message.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailticket.app import App
from mailticket.log import get as get_logger
from mailticket.model import utc_now
from mailticket.processing import pipeline
from mailticket.processing.work import Context
from mailticket.runners.gates import Gate, open_gate
from mailticket.store import workqueue
from mailticket.store.db import transaction
from mailticket.store.schema import QueueState, SpoolItem

log = get_logger("worker")

# How long a deferred row (a reply that overtook its original) waits before the next try.
DEFER_DELAY = timedelta(seconds=1)



@contextmanager
def lease_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Like ``store.db.transaction``, but its commit need not survive a power cut.

    Only for claiming a spool row on its own (the first of a burst). The claim
    is committed before processing so that a message that kills the process
    still uses up its attempts; a process crash does not lose a commit that is
    in the SQLite WAL or acknowledged by PostgreSQL, fsync or not. A power cut
    may lose the claim, which only gives the row back to the queue with its
    attempt uncounted, and the next durable commit (the message's own
    transaction) makes it durable anyway. So the claim skips the fsync
    (``synchronous=NORMAL`` for this commit on SQLite, ``synchronous_commit=off``
    on PostgreSQL).
    """
    engine = factory.kw.get("bind")
    if not isinstance(engine, Engine):
        with transaction(factory) as session:
            yield session
        return
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        driver: Any = conn.connection.driver_connection
        if sqlite:
            # Outside any transaction: SQLite refuses to change it inside one.
            driver.execute("PRAGMA synchronous=NORMAL")
        try:
            with transaction(factory, bind=conn) as session:
                if not sqlite:
                    session.execute(text("SET LOCAL synchronous_commit TO OFF"))
                yield session
        finally:
            if sqlite:
                try:
                    driver.execute("PRAGMA synchronous=FULL")
                except Exception:
                    conn.invalidate()  # never hand a relaxed connection back to the pool
                    raise


class SpoolWorker:
    """Processes spool rows until stopped; several may run (threads or instances)."""

    def __init__(
        self,
        app: App,
        *,
        clock: Callable[[], datetime] = utc_now,
        name: str = "worker-1",
        gate: Gate = open_gate,
        holder: str | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        """``app`` is read once per message and replaced whole on reload (``mailticket.app``);
        ``gate`` holds the worker at its named points, for crash tests (``runners.gates``);
        ``holder`` names this process on its claims (``runners.recovery``);
        ``on_commit`` runs after each message's commit (the outbox drainer's wake-up)."""
        self.app = app
        self.on_commit = on_commit
        self.holder = holder
        self.factory = app.factory
        self.clock = clock
        self.name = name
        self.metrics = app.metrics
        self.gate = gate
        self.processed = 0
        self.failed = 0
        self.last_beat = time.monotonic()
        # A row claimed by the transaction of the previous message (see run_once).
        self._held: tuple[workqueue.Claim, SpoolItem] | None = None
        bind = app.factory.kw.get("bind")
        self._single_writer = isinstance(bind, Engine) and bind.dialect.name == "sqlite"

    def run_once(self, claim_next: bool = True) -> bool:
        """Handle one due spool row; False when there was nothing to do.

        With ``claim_next`` the transaction that finishes this row also claims
        the next due one (its attempt counted, as any claim), and keeps it for
        the next call: in a busy spool each message costs one transaction and
        one durable commit, and the worker still holds one claim at a time.
        A claim kept when the worker stops goes back with :meth:`release`.
        """
        self.gate("worker.before_claim")
        taken = self._take()
        if taken is None:
            return False
        held, claimed = taken
        app = self.app  # one consistent App for this message, even across a reload
        cfg = app.config.worker
        started = time.monotonic()
        following: tuple[workqueue.Claim, SpoolItem] | None = None
        try:
            with transaction(self.factory) as session:
                # SQLite: one writer holds the database for this whole transaction
                # (BEGIN IMMEDIATE), a live lease is never taken over and a spooled
                # mail never changes, so the claimed copy is current; finish() still
                # checks the lease. PostgreSQL: lock the row (its id only; the claim
                # already brought the values), so another instance skips it even if
                # our lease runs out while we work.
                if not (self._single_writer
                        or workqueue.still_held(session, SpoolItem, held)):
                    log.warning("lease lost before processing", extra={"spool_id": held.id})
                    return True
                ctx = Context(session, app.config, app.notifier, self.clock(), app.knowledge)
                outcome = pipeline.process(claimed, ctx)
                self.gate("worker.after_pipeline")
                if outcome.disposition.state == QueueState.QUEUED:
                    session.rollback()
                    with transaction(self.factory) as again:
                        workqueue.defer(again, SpoolItem, held, ctx.now + DEFER_DELAY)
                    log.info("deferred", extra={"spool_id": held.id,
                                                "outcome": outcome.disposition.code,
                                                "reason": outcome.detail})
                    return True
                if not workqueue.finish(
                    session, SpoolItem, held, ctx.now, outcome.disposition.state,
                    outcome=outcome.disposition.code,
                    ticket_id=outcome.ticket_id,
                    last_error=outcome.detail[:4000] if outcome.detail else None,
                ):
                    raise RuntimeError("lease lost while processing; another worker owns it now")
                if claim_next:
                    following = self._claim(session)
            self._held = following  # committed with this message, so it is ours
            self.gate("worker.after_commit")
            if self.on_commit is not None:
                self.on_commit()
            self.processed += 1
            if self.metrics is not None:
                self.metrics.observe_processed(outcome.disposition.state, outcome.disposition.code,
                                               time.monotonic() - started)
            log.info(
                "processed",
                extra={
                    "spool_id": held.id,
                    "stage": "done",
                    "outcome": outcome.disposition.code,
                    "state": outcome.disposition.state,
                    "ticket": outcome.ticket_id,
                    "ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
        except Exception as exc:
            self.failed += 1
            with transaction(self.factory) as session:
                state = workqueue.retry_later(
                    session, SpoolItem, held, self.clock(), f"{exc.__class__.__name__}: {exc}",
                    cfg.max_attempts, cfg.retry_base_seconds, cfg.retry_max_seconds,
                )
            if self.metrics is not None:
                self.metrics.observe_worker_failure(state == QueueState.QUARANTINED,
                                                    time.monotonic() - started)
            log.exception(
                "processing failed",
                extra={"spool_id": held.id, "attempt": held.attempts, "outcome": state},
            )
        return True

    def _take(self) -> tuple[workqueue.Claim, SpoolItem] | None:
        """The claim kept from the last message, else a fresh one (its own, quick commit)."""
        if self._held is not None:
            taken, self._held = self._held, None
            return taken
        with lease_transaction(self.factory) as session:
            return self._claim(session)

    def _claim(self, session: Session) -> tuple[workqueue.Claim, SpoolItem] | None:
        """Claim the next due row in ``session``; with it, the row as the claim loaded it."""
        held = workqueue.claim(session, SpoolItem, self.clock(),
                               self.app.config.worker.lease_seconds, self.holder)
        if held is None:
            return None
        assert held.values is not None
        # A detached copy of the claimed row for the pipeline, which lets go of its
        # raw mail once parsed; the claim keeps no second reference to it.
        return dataclasses.replace(held, values=None), SpoolItem(**held.values)

    def release(self) -> None:
        """Give back a claim kept for the next message, its attempt uncounted (on stop)."""
        if self._held is None:
            return
        held, self._held = self._held[0], None
        with transaction(self.factory) as session:
            workqueue.release_claims(session, SpoolItem, [held.token])

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set; sleeps only when the spool is empty."""
        while not stop.is_set():
            self.last_beat = time.monotonic()
            try:
                busy = self.run_once(claim_next=not stop.is_set())
            except Exception:
                # The database itself is unreachable: keep the thread alive and retry.
                log.exception("worker loop error; retrying", extra={"worker": self.name})
                busy = False
                stop.wait(min(5.0, self.app.config.daemon.poll_interval * 4))
            if not busy:
                stop.wait(self.app.config.daemon.poll_interval)
        try:
            self.release()
        except Exception:
            # Not fatal: the lease runs out and the row is claimed again.
            log.exception("could not release a claimed row", extra={"worker": self.name})

    def drain(self, limit: int = 1_000_000) -> int:
        """Process until the spool has nothing due (tests and ``mailticket process``)."""
        count = 0
        while count < limit and self.run_once(claim_next=count + 1 < limit):
            count += 1
        return count
