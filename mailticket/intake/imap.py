"""One IMAP poller per account: backlog, then IDLE or polling, every fault contained (imapclient).

The steps that make the intake exactly once are in ``transport.imap_fetch``;
this module runs them for ever. Faults (wrong password, TLS failure, server
down or restarted, folder deleted) never leave :meth:`ImapPoller.run`: each is
one structured log line with a ``fault`` field (kinds in
``transport.imap_session``), then we reconnect with capped exponential backoff
(1 s doubling to 5 min, back to 1 s after a good session; a missing folder is
tried again at least every minute, so one an admin recreates is picked up
without a restart). After the backlog the poller waits in IDLE where the
server has it, else polls every ``poll_interval``. IDLE is left, and the
folder selected and searched again, every minute and at once when the server
sends an untagged NO or BAD: a folder deleted and recreated under an IDLE
(new UIDVALIDITY) is not announced by EXISTS (Dovecot only says ``NO
Internal error`` and then watches the old folder), so without this its new
mail waited for the next re-issue.
Every poll, good or failed, is saved for ``mailticket status``
(``transport.imap_state``) and counted in ``mailticket_imap_polls``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from mailticket import log
from mailticket.config import ImapAccountConfig
from mailticket.intake.imap_fetch import (
    Clock,
    Fetched,
    Mailbox,
    groups,
    idempotency_key,
    return_path,
    utc_now,
)
from mailticket.intake.imap_session import (
    ImapFault,
    check_login,
    classify,
    quietly_logout,
    shutdown,
)
from mailticket.intake.imap_state import OK, PollResult, record_poll
from mailticket.metrics import Metrics
from mailticket.store.workqueue import backoff_seconds

__all__ = [
    "Fetched",
    "ImapFault",
    "ImapPoller",
    "PollerThread",
    "check_login",
    "idempotency_key",
    "return_path",
    "start_pollers",
]

# RFC 2177 wants IDLE re-issued within 29 minutes; we do it every minute, with a
# fresh SELECT, so that a folder deleted or recreated without a word from the server
# (and a connection silently dropped by a NAT box) is noticed within a minute.
IDLE_REISSUE_SECONDS = 60.0
IDLE_CHECK_SECONDS = 1.0
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0

_log = log.get("imap")


class ImapPoller(Mailbox):
    """Serves one IMAP account: backlog in batches, then IDLE or polling, faults contained.

    After every drain (at least every ``IDLE_REISSUE_SECONDS`` while idling) and
    every fault, the poll's time, outcome and counts are saved for ``mailticket
    status``; ``last_poll_at`` (the end of the last good drain) and
    ``last_error`` (None after a good drain) hold the same in memory.
    """

    def __init__(
        self,
        account: ImapAccountConfig,
        session_factory: sessionmaker[Session],
        clock: Clock = utc_now,
        io_timeout: float = 60.0,
        idle_reissue_seconds: float = IDLE_REISSUE_SECONDS,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(account, session_factory, clock, io_timeout, metrics)
        self._idle_reissue = idle_reissue_seconds
        self.last_poll_at: datetime | None = None
        self.last_error: str | None = None
        # This poll's figures so far (a fault reports what was done before it).
        self._fetched = 0
        self._spooled = 0

    def drain(self, stop: threading.Event | None = None) -> int:
        """Spool everything pending, batch by batch; returns how many rows are new."""
        self._fetched = self._spooled = 0
        uidvalidity = self.select_folder()
        handled: set[int] = set()
        created = 0
        while stop is None or not stop.is_set():
            # ``handled`` guards against a server that keeps listing mail we marked.
            pending = [uid for uid in self.search_pending() if uid not in handled]
            batch = pending[: self.account.batch_size]
            if not batch:
                break
            handled.update(batch)
            sizes = self.sizes(batch)
            for group in groups(batch, sizes, self.account.max_message_size):
                fetched = self.fetch(group, sizes)
                self._fetched += len(fetched)
                spooled = self.spool(uidvalidity, fetched)
                self._spooled += spooled
                created += spooled
                self.mark(fetched)
        self.last_poll_at = self._clock()
        self.last_error = None
        self._record(OK, None)
        return created

    # ---- the loop ------------------------------------------------------------------

    def poll_once(self) -> int:
        """Connect if needed and drain the backlog; a fault is logged, never raised."""
        before = self.spooled_total
        try:
            self.drain()
        except Exception as exc:
            self._report(exc, retry_in=None)
        return self.spooled_total - before

    def run(self, stop: threading.Event) -> None:
        """Serve the account until ``stop`` is set (honoured within about a second)."""
        failures = 0
        while not stop.is_set():
            good = False
            try:
                self.drain(stop)
                good = True
                while not stop.is_set():
                    self._wait_for_mail(stop)
                    self.drain(stop)
            except Exception as exc:
                failures = 1 if good else failures + 1
                delay = backoff_seconds(failures, BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS)
                if classify(exc).kind == "folder_missing":
                    # An admin recreating the folder must not wait for a 5-minute backoff.
                    delay = min(delay, self._idle_reissue)
                self._report(exc, retry_in=delay)
                stop.wait(delay)
        self.close()

    def _wait_for_mail(self, stop: threading.Event) -> None:
        """Return when the folder may have new mail, on stop, or when IDLE is due again."""
        client = self.ensure_connected()
        if not client.has_capability("IDLE"):
            stop.wait(self.account.poll_interval)
            return
        client.idle()
        _log.debug("imap idle", extra=self._extra(folder=self.account.folder))
        deadline = time.monotonic() + self._idle_reissue
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            wait = min(IDLE_CHECK_SECONDS, left)
            responses = client.idle_check(timeout=wait)
            for response in responses:
                if len(response) > 1 and response[0] == b"BYE":
                    said = bytes(response[1]).decode("utf-8", "replace")
                    raise ImapFault("connection_lost", f"server ended the session: {said}")
            if any(len(r) > 1 and r[1] == b"EXISTS" for r in responses):
                break
            complaints = [r for r in responses if len(r) > 1 and r[0] in (b"NO", b"BAD")]
            if complaints:
                said = bytes(complaints[0][1]).decode("utf-8", "replace")
                _log.warning(
                    "imap server complained while idling; selecting the folder again",
                    extra=self._extra(folder=self.account.folder, said=said[:200]),
                )
                break
            # imapclient's idle_check returns nothing at once when the socket hit EOF;
            # idle_done() below then raises, which is how a server restart shows up.
            if not responses and deadline - time.monotonic() > left - wait / 2:
                break
        client.idle_done()

    def _record(self, outcome: str, error: str | None) -> None:
        """Save this poll for ``mailticket status`` and count it."""
        result = PollResult(
            account=self.account.name,
            polled_at=self._clock(),
            outcome=outcome,
            error=error,
            fetched=self._fetched,
            spooled=self._spooled,
        )
        record_poll(self._factory, result)
        if self._metrics is not None:
            self._metrics.observe_imap_poll(self.account.name, outcome)

    def _report(self, exc: Exception, retry_in: float | None) -> None:
        fault = classify(exc)
        self.last_error = str(fault)
        self._record(fault.kind, fault.text)
        extra = self._extra(fault=fault.kind, error=fault.text, host=self.account.host)
        if retry_in is not None:
            extra["retry_in"] = retry_in
        _log.error("imap account failed", extra=extra, exc_info=fault.kind == "bug")
        self._disconnect()

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            shutdown(client)

    def close(self) -> None:
        """Log out politely (used at shutdown and by tests to simulate a crash)."""
        client, self._client = self._client, None
        if client is not None:
            quietly_logout(client)


class PollerThread(threading.Thread):
    """A daemon thread running one :class:`ImapPoller`; ``.poller`` is there for status."""

    def __init__(self, poller: ImapPoller, stop: threading.Event) -> None:
        super().__init__(name=f"imap-{poller.account.name}", daemon=True)
        self.poller = poller
        self._stop_event = stop

    def run(self) -> None:
        self.poller.run(self._stop_event)


def start_pollers(
    accounts: Sequence[ImapAccountConfig],
    factory: sessionmaker[Session],
    stop: threading.Event,
    clock: Clock = utc_now,
    metrics: Metrics | None = None,
) -> list[threading.Thread]:
    """Start one thread per account (imapclient blocks); each runs until ``stop`` is set."""
    threads: list[threading.Thread] = []
    for account in accounts:
        thread = PollerThread(ImapPoller(account, factory, clock, metrics=metrics), stop)
        thread.start()
        threads.append(thread)
    return threads
