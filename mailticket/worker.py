"""The spool worker loop: claim → pipeline → finish, in one transaction per message.

This is the only place that catches every exception (Mailman's
``Runner._one_iteration``): the traceback is logged with the spool id, the
message stays in the spool, the attempt is counted, and after
``worker.max_attempts`` the row is quarantined for ``mailticket spool retry``.
A worker never dies on a bad message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from mailticket import pipeline
from mailticket.config import Config
from mailticket.log import get as get_logger
from mailticket.metrics import Metrics
from mailticket.notify import Notifier
from mailticket.store import workqueue
from mailticket.store.db import transaction
from mailticket.store.schema import QueueState, SpoolItem

log = get_logger("worker")

# How long a deferred row (a reply that overtook its original) waits before the next try.
DEFER_DELAY = timedelta(seconds=1)


def utc_now() -> datetime:
    """The real clock; tests pass their own."""
    return datetime.now(UTC)


class SpoolWorker:
    """Processes spool rows until stopped; several may run (threads or instances)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        config: Config,
        notifier: Notifier,
        *,
        clock: Callable[[], datetime] = utc_now,
        name: str = "worker-1",
        metrics: Metrics | None = None,
    ) -> None:
        self.factory = factory
        self.config = config
        self.notifier = notifier
        self.clock = clock
        self.name = name
        self.metrics = metrics
        self.processed = 0
        self.failed = 0
        self.last_beat = time.monotonic()

    def run_once(self) -> bool:
        """Handle one due spool row; False when there was nothing to do."""
        cfg = self.config.worker
        now = self.clock()
        with transaction(self.factory) as session:
            held = workqueue.claim(session, SpoolItem, now, cfg.lease_seconds)
        if held is None:
            return False
        started = time.monotonic()
        try:
            with transaction(self.factory) as session:
                row = workqueue.holds(session, SpoolItem, held)
                if row is None:
                    log.warning("lease lost before processing", extra={"spool_id": held.id})
                    return True
                ctx = pipeline.Context(session, self.config, self.notifier, self.clock())
                outcome = pipeline.process(row, ctx)
                if outcome.state == QueueState.QUEUED:
                    session.rollback()
                    with transaction(self.factory) as again:
                        workqueue.defer(again, SpoolItem, held, ctx.now + DEFER_DELAY)
                    log.info("deferred", extra={"spool_id": held.id, "outcome": outcome.code,
                                                "reason": outcome.detail})
                    return True
                row.outcome = outcome.code
                row.ticket_id = outcome.ticket_id
                row.last_error = outcome.detail[:4000] if outcome.detail else None
                if not workqueue.finish(session, SpoolItem, held, ctx.now, outcome.state):
                    raise RuntimeError("lease lost while processing; another worker owns it now")
            self.processed += 1
            if self.metrics is not None:
                self.metrics.observe_processed(outcome.state, outcome.code,
                                               time.monotonic() - started)
            log.info(
                "processed",
                extra={
                    "spool_id": held.id,
                    "stage": "done",
                    "outcome": outcome.code,
                    "state": outcome.state,
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

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set; sleeps only when the spool is empty."""
        while not stop.is_set():
            self.last_beat = time.monotonic()
            try:
                busy = self.run_once()
            except Exception:
                # The database itself is unreachable: keep the thread alive and retry.
                log.exception("worker loop error; retrying", extra={"worker": self.name})
                busy = False
                stop.wait(min(5.0, self.config.daemon.poll_interval * 4))
            if not busy:
                stop.wait(self.config.daemon.poll_interval)

    def drain(self, limit: int = 1_000_000) -> int:
        """Process until the spool has nothing due (tests and ``mailticket process``)."""
        count = 0
        while count < limit and self.run_once():
            count += 1
        return count
