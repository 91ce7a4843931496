"""The outbox drainer: the last step of the mail path, from outbox rows to the relay.

Every outgoing mail is an ``outbox`` row, written in the same transaction as the
ticket change that caused it. This module claims due rows one at a time and
hands each to ``transport.delivery``, which sends it to the SMTP relay or, when
no relay host is configured, writes it into a local Maildir.

Each row goes through three steps, and only the first and last touch the database:

1. claim: one short transaction leases the row (``store.workqueue.claim``; the
   attempt is counted here, so even a process that dies mid-send uses it up);
2. send: outside any transaction, so a slow relay never holds a lock;
3. record: a second transaction, guarded by the claim token (``holds``), marks
   the row done, puts it back with capped exponential backoff (4xx or network
   trouble, until ``max_attempts``), or marks it failed at once (5xx). If the
   lease was lost meanwhile (another instance re-claimed it) nothing is written.

Refusals are kept per recipient: recipients refused with 5xx are recorded as
permanent failures, recipients refused with 4xx stay on the row (which is
narrowed to them) and are retried. Every permanent failure on a ticket writes
an ``AuditEvent`` (action ``delivery_failed``) in the recording transaction.
Connection-level trouble is temporary, and the admin sees it in ``last_error``
while rows wait.

Delivery is at-least-once. If the process dies, or the database write fails,
after the relay said 250 but before step 3 commits, the lease expires and the
row is sent again later with the same bytes and the same Message-ID. Receivers
can de-duplicate on the Message-ID; we never risk losing a mail to avoid that.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from mailticket import log
from mailticket.config import RelayConfig
from mailticket.errors import PermanentDeliveryError, TemporaryDeliveryError
from mailticket.metrics import Metrics
from mailticket.model import utc_now as utc_now
from mailticket.outbound import suppression
from mailticket.relay.smtp_client import (
    BARE_LF,
    Outgoing,
    SendResult,
    relay_tls_context,
    send_smtp,
    write_maildir,
)
from mailticket.runners.gates import Gate, open_gate
from mailticket.store.db import transaction
from mailticket.store.schema import AuditEvent, OutboxItem, QueueState
from mailticket.store.workqueue import Claim, claim, finish, holds, retry_later

# The sending mechanics moved to transport.delivery; these names stay importable here.
__all__ = [
    "BARE_LF",
    "DrainerStats",
    "OutboxDrainer",
    "Outgoing",
    "SendResult",
    "relay_tls_context",
    "send_smtp",
    "utc_now",
    "write_maildir",
]

_log = log.get("relay")



@dataclass
class DrainerStats:
    """Counters for ``mailticket status``; read them through ``OutboxDrainer.stats``."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    lost_leases: int = 0
    crashes: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_sent_at: datetime | None = None


class OutboxDrainer:
    """Claims due outbox rows and delivers them; one instance per drainer thread."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        relay: RelayConfig,
        *,
        clock: Callable[[], datetime] = utc_now,
        tls_context: ssl.SSLContext | None = None,
        helo_name: str | None = None,
        lease_seconds: float | None = None,
        metrics: Metrics | None = None,
        gate: Gate = open_gate,
        holder: str | None = None,
    ) -> None:
        """``tls_context`` defaults to :func:`relay_tls_context` (verifying, ``relay.ca_file``).

        The lease must outlast a whole send, or a second instance would send the
        same row again; the default allows twenty socket timeouts. ``gate`` holds
        the drainer at its named points, for crash tests (``runners.gates``);
        ``holder`` names this process on its claims (``runners.recovery``).
        """
        self._factory = factory
        self._relay = relay
        self._clock = clock
        self._context = tls_context or relay_tls_context(relay)
        self._helo_name = helo_name
        self._lease = lease_seconds or max(300.0, 20 * relay.timeout)
        self._metrics = metrics
        self._gate = gate
        # Set by wake(): a worker committed mail, so an idle drainer looks at once
        # instead of after its idle sleep (a mail's way out is then tens of ms, not 0.5 s).
        self._wake = threading.Event()
        self._holder = holder
        self._stats = DrainerStats()
        self._stats_lock = threading.Lock()

    @property
    def stats(self) -> DrainerStats:
        """A copy of the counters, safe to read from another thread."""
        with self._stats_lock:
            return replace(self._stats)

    @property
    def last_error(self) -> str | None:
        """The most recent delivery or internal error, for ``mailticket status``."""
        return self.stats.last_error

    def drain_once(self) -> int:
        """Claim and send due rows until none is due; returns how many were handled."""
        return self._drain(lambda: False)

    def flush(self, deadline_seconds: float) -> int:
        """Drain until empty or ``deadline_seconds`` have passed (graceful shutdown)."""
        deadline = time.monotonic() + deadline_seconds
        return self._drain(lambda: time.monotonic() >= deadline)

    def wake(self) -> None:
        """New outbox rows are committed: an idle :meth:`run` drains now (any thread may call)."""
        self._wake.set()

    def run(self, stop: threading.Event, idle_sleep: float = 0.5) -> None:
        """Drain until ``stop`` is set; never raises, whatever the database or relay do.

        When idle it waits ``idle_sleep`` or until :meth:`wake` (rows queued by
        another instance are found by the next look); call :meth:`wake` after
        setting ``stop`` to end the wait at once.
        """
        _log.info("outbox drainer started", extra={"relay": self._relay.host or "maildir"})
        errors = 0
        while not stop.is_set():
            # Cleared before looking: a wake() during the look is kept for the wait below.
            self._wake.clear()
            try:
                handled = self._drain(stop.is_set)
                errors = 0
            except Exception as exc:
                # Typically the database is unreachable while claiming: wait longer
                # after each failure in a row, so an outage does not flood the log.
                _log.exception("outbox drainer error", extra={"outcome": "error"})
                self._note_error(f"{exc.__class__.__name__}: {exc}", crash=True)
                errors += 1
                stop.wait(min(30.0, idle_sleep * 2**errors))
                continue
            if handled == 0:
                self._wake.wait(idle_sleep)
        _log.info("outbox drainer stopped")

    def _drain(self, should_stop: Callable[[], bool]) -> int:
        handled = 0
        while not should_stop():
            self._gate("outbox.before_claim")
            claimed = self._claim()
            if claimed is None:
                break
            self._handle(*claimed)
            handled += 1
        return handled

    def _claim(self) -> tuple[Claim, Outgoing] | None:
        with transaction(self._factory) as session:
            held = claim(session, OutboxItem, self._clock(), self._lease, self._holder)
            if held is None:
                return None
            row = session.get(OutboxItem, held.id)
            assert row is not None
            item = Outgoing(
                outbox_id=row.id,
                envelope_from=row.envelope_from,
                rcpt_tos=tuple(row.rcpt_tos),
                raw=row.raw,
                message_id=row.message_id,
                ticket_id=row.ticket_id,
                kind=row.kind,
            )
        return held, item

    def _handle(self, held: Claim, item: Outgoing) -> None:
        """Send one claimed row and record the result; the catch-all boundary per row."""
        try:
            if held.attempts > self._relay.max_attempts:
                # Earlier attempts never recorded a result (the process died mid-send).
                error = f"no result recorded after {held.attempts - 1} attempts"
                self._record(held, item, (), {r: error for r in item.rcpt_tos}, {}, error)
                return
            started = time.monotonic()
            try:
                result = self._send(item)
            except TemporaryDeliveryError as exc:
                self._observe(False, started)
                self._record(held, item, (), {}, {r: str(exc) for r in item.rcpt_tos}, str(exc))
            except PermanentDeliveryError as exc:
                self._observe(True, started)
                refused = exc.recipients or {r: str(exc) for r in item.rcpt_tos}
                self._record(held, item, (), refused, {}, str(exc))
            else:
                self._gate("outbox.after_send")
                if self._metrics is not None:
                    self._metrics.observe_sent(item.kind, time.monotonic() - started)
                problems = "; ".join(
                    f"{a}: {r}" for a, r in {**result.refused, **result.deferred}.items()
                )
                self._record(
                    held,
                    item,
                    result.accepted,
                    result.refused,
                    result.deferred,
                    problems,
                    reply=result.reply,
                )
        except Exception as exc:
            _log.exception(
                "outbox row crashed the drainer",
                extra={
                    "outbox_id": item.outbox_id,
                    "message_id": item.message_id,
                    "outcome": "error",
                },
            )
            error = f"internal error: {exc.__class__.__name__}: {exc}"
            self._note_error(error, crash=True)
            self._give_back(held, item, error)

    def _observe(self, permanent: bool, started: float) -> None:
        if self._metrics is not None:
            self._metrics.observe_delivery_failure(permanent, time.monotonic() - started)

    def _send(self, item: Outgoing) -> SendResult:
        if not self._relay.host:
            try:
                path = write_maildir(self._relay.maildir, item, self._clock())
            except OSError as exc:
                raise TemporaryDeliveryError(f"maildir {self._relay.maildir}: {exc}") from exc
            return SendResult(item.rcpt_tos, f"stored as {path.name}")
        return send_smtp(self._relay, item, self._context, self._helo_name)

    def _record(
        self,
        held: Claim,
        item: Outgoing,
        delivered: tuple[str, ...],
        refused: dict[str, str],
        retry: dict[str, str],
        error: str,
        reply: str = "",
    ) -> None:
        """Write the outcome in one transaction, only if we still hold the lease."""
        now = self._clock()
        relay = self._relay
        with transaction(self._factory) as session:
            row = holds(session, OutboxItem, held)
            if row is None:
                outcome = "lost_lease"
            else:
                if retry and held.attempts >= relay.max_attempts:
                    refused = {**refused, **retry}
                    retry = {}
                    error = f"gave up after {held.attempts} attempts: {error}"
                if refused and item.ticket_id is not None:
                    self._audit(session, item, now, refused)
                for address, why in refused.items():
                    if suppression.mailbox_refusal(why):
                        suppression.record_failure(
                            session, address, source="relay", detail=why, now=now,
                            outbox_id=item.outbox_id, ticket_id=item.ticket_id)
                if retry:
                    # Recipients that already got the mail or were refused for good
                    # must not get it again, so the row keeps only the retry ones.
                    row.rcpt_tos = list(retry)
                    retry_later(
                        session,
                        OutboxItem,
                        held,
                        now,
                        error,
                        relay.max_attempts,
                        relay.retry_base_seconds,
                        relay.retry_max_seconds,
                    )
                    outcome = "retry"
                else:
                    row.last_error = error or None
                    state = QueueState.DONE if delivered else QueueState.FAILED
                    finish(session, OutboxItem, held, now, state=state)
                    outcome = "sent" if delivered else "failed"
        self._log(item, held, outcome, reply, error, delivered)

    def _audit(
        self, session: Session, item: Outgoing, now: datetime, refused: dict[str, str]
    ) -> None:
        session.add(
            AuditEvent(
                ticket_id=item.ticket_id,
                at=now,
                actor="relay",
                action="delivery_failed",
                detail={
                    "outbox_id": item.outbox_id,
                    "message_id": item.message_id,
                    "recipients": dict(refused),
                },
            )
        )

    def _give_back(self, held: Claim, item: Outgoing, error: str) -> None:
        """After an internal error, put the row back with backoff if the database lets us."""
        relay = self._relay
        try:
            with transaction(self._factory) as session:
                if holds(session, OutboxItem, held) is not None:
                    retry_later(
                        session,
                        OutboxItem,
                        held,
                        self._clock(),
                        error,
                        relay.max_attempts,
                        relay.retry_base_seconds,
                        relay.retry_max_seconds,
                    )
        except Exception:
            # The lease will expire and the row becomes claimable again.
            _log.exception("could not give back outbox row", extra={"outbox_id": held.id})

    def _log(
        self,
        item: Outgoing,
        held: Claim,
        outcome: str,
        reply: str,
        error: str,
        delivered: tuple[str, ...],
    ) -> None:
        extra = {
            "outbox_id": item.outbox_id,
            "message_id": item.message_id,
            "ticket": item.ticket_id,
            "outcome": outcome,
            "attempt": held.attempts,
            "reply": reply or error,
        }
        with self._stats_lock:
            stats = self._stats
            # Counters mirror what was recorded; a lost lease recorded nothing.
            if delivered and outcome != "lost_lease":
                stats.sent += 1
                stats.last_sent_at = self._clock()
            if outcome == "retry":
                stats.retried += 1
            elif outcome == "failed":
                stats.failed += 1
            elif outcome == "lost_lease":
                stats.lost_leases += 1
        if outcome == "lost_lease":
            _log.warning("outbox lease lost, result not recorded", extra=extra)
        elif outcome == "sent" and error:
            extra["error"] = error
            _log.warning("outbox mail sent, some recipients failed", extra=extra)
            self._note_error(error)
        elif outcome == "sent":
            _log.info("outbox mail sent", extra=extra)
        else:
            _log.warning("outbox mail not sent", extra=extra)
            self._note_error(error)

    def _note_error(self, error: str, crash: bool = False) -> None:
        with self._stats_lock:
            self._stats.last_error = error
            self._stats.last_error_at = self._clock()
            if crash:
                self._stats.crashes += 1
