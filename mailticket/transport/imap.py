"""Take mail from IMAP mailboxes into the durable spool, exactly once (imapclient).

Some support addresses live on an existing mail server, so one poller per
``[[imap]]`` account feeds the same spool as the SMTP listener. The order of the
steps is the point of this module:

1. ``UID SEARCH`` for undeleted mail not yet processed (``UNSEEN`` too when there
   is no ``processed_folder``), then ``RFC822.SIZE`` for those UIDs;
2. ``BODY.PEEK[]``, which never sets ``\\Seen``;
3. put the raw bytes into the spool under the idempotency key
   ``imap:<account>:<UIDVALIDITY>:<UID>`` and COMMIT;
4. only then MOVE the message to ``processed_folder`` (COPY + ``\\Deleted`` + UID
   EXPUNGE where the server has no MOVE), or set ``\\Seen``.

A crash or dropped connection before step 3 leaves the message untouched on the
server, so the next poll fetches it again. A crash between 3 and 4 fetches it
again too, but the key makes the second put return the first row. Nothing is
lost and nothing is spooled twice.

UIDVALIDITY is remembered per account in memory only. When it changes (the
folder was recreated, the server rebuilt its index) we log a WARNING with the
old and new values and carry on: a message still waiting in the folder gets a
new key and may be spooled a second time, which is harmless because the
pipeline dedupes by Message-ID.

A message over ``max_message_size`` is not downloaded: we spool only its header
block (at most 64 KiB) with ``source = "imap-oversize:<account>"`` and ``size`` =
its size on the server, so the pipeline answers it like the SMTP 552 case, and
move it to ``oversize_folder`` for an admin.

Faults (wrong password, TLS failure, server down or restarted, folder deleted)
never leave :meth:`ImapPoller.run`: each is one structured log line with a
``fault`` field, then we reconnect with capped exponential backoff (1 s doubling
to 5 min, back to 1 s after a good session). After the backlog the poller waits
in IDLE (re-issued every 10 min, well before RFC 2177's 29-minute limit) where the
server has it, else polls every ``poll_interval``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from sqlalchemy.orm import Session, sessionmaker

from mailticket import log
from mailticket.config import ImapAccountConfig
from mailticket.errors import MailticketError, StoreError
from mailticket.store.db import transaction
from mailticket.store.schema import SpoolItem
from mailticket.store.workqueue import backoff_seconds, put_spool

OVERSIZE_SOURCE = "imap-oversize"
# RFC 2177 wants IDLE re-issued within 29 minutes; we do it sooner so that a connection
# silently dropped by a NAT box is noticed (and last_poll_at refreshed) within minutes.
IDLE_REISSUE_SECONDS = 10 * 60
IDLE_CHECK_SECONDS = 1.0
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0
OVERSIZE_HEADER_BYTES = 64 * 1024
# Bodies are fetched and committed in groups of at most this many bytes, so a batch of
# 50 messages near the size limit does not sit in memory all at once.
FETCH_GROUP_BYTES = 16 * 1024 * 1024

_log = log.get("imap")
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ImapFault(MailticketError):
    """One IMAP account cannot be served right now; ``kind`` is the log's ``fault`` field."""

    def __init__(self, kind: str, text: str) -> None:
        self.kind = kind
        self.text = " ".join(text.split())
        super().__init__(f"{kind}: {self.text}")


@dataclass(frozen=True)
class Fetched:
    """A message read from the server and not yet committed (headers only when oversize)."""

    uid: int
    raw: bytes
    size: int
    oversize: bool


def idempotency_key(account: ImapAccountConfig, uidvalidity: int, uid: int) -> str:
    """The spool key that makes a re-fetch of the same message harmless."""
    return f"imap:{account.name}:{uidvalidity}:{uid}"


def return_path(raw: bytes) -> str:
    """The address in the first Return-Path header, "" when absent or null (``<>``)."""
    end = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=len(raw))
    for line in raw[:end].splitlines():
        if line[:12].lower() == b"return-path:":
            value = line[12:].decode("utf-8", "replace").strip().strip("<>").strip()
            # Never let CR/LF or other controls from the header into the envelope field.
            return "".join(ch for ch in value if ch.isprintable())[:512]
    return ""


def _plain_allowed(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _password(account: ImapAccountConfig) -> str:
    if account.password is not None:
        return account.password
    if account.password_file is not None:
        try:
            return account.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ImapFault("no_password", f"cannot read password_file: {exc}") from exc
    raise ImapFault("no_password", "neither password nor password_file is set")


def connect(account: ImapAccountConfig, timeout: float = 60.0) -> IMAPClient:
    """Open a connection in the account's TLS mode and log in; faults raise :class:`ImapFault`."""
    # An unknown mode must never fall through to an unencrypted login.
    if account.tls not in ("implicit", "starttls", "none"):
        raise ImapFault(
            "bad_config", f"tls must be implicit, starttls or none, not {account.tls!r}"
        )
    if account.tls == "none" and not _plain_allowed(account.host):
        raise ImapFault(
            "plaintext_refused",
            f"tls = none is only allowed to 127.0.0.1/localhost, not {account.host!r}",
        )
    password = _password(account)
    context = None
    if account.tls != "none":
        cafile = str(account.ca_file) if account.ca_file else None
        context = ssl.create_default_context(cafile=cafile)
    where = f"{account.host}:{account.port}"
    try:
        client = IMAPClient(
            account.host,
            port=account.port,
            ssl=account.tls == "implicit",
            ssl_context=context,
            timeout=timeout,
        )
    except ssl.SSLError as exc:
        raise ImapFault("tls_failed", f"TLS handshake with {where} failed: {exc}") from exc
    except OSError as exc:
        raise ImapFault("connect_failed", f"cannot connect to {where}: {exc}") from exc
    try:
        if account.tls == "starttls":
            client.starttls(context)
        client.login(account.user, password)
    except LoginError as exc:
        _shutdown(client)
        raise ImapFault("login_failed", f"login as {account.user!r} refused: {exc}") from exc
    except (ssl.SSLError, IMAPClientError) as exc:
        _shutdown(client)
        kind = "tls_failed" if account.tls == "starttls" else "connection_lost"
        raise ImapFault(kind, f"STARTTLS/login with {where} failed: {exc}") from exc
    except OSError as exc:
        _shutdown(client)
        raise ImapFault("connection_lost", f"{where} closed the connection: {exc}") from exc
    return client


def check_login(account: ImapAccountConfig, timeout: float = 15.0) -> str | None:
    """Try to log in and open the watched folder: None when fine, else the error text."""
    try:
        client = connect(account, timeout)
    except ImapFault as exc:
        return str(exc)
    try:
        client.select_folder(account.folder, readonly=True)
    except (IMAPClientError, OSError) as exc:
        return str(ImapFault("folder_missing", f"cannot open folder {account.folder!r}: {exc}"))
    finally:
        _quietly_logout(client)
    return None


def _quietly_logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:
        # The connection is going away either way; a dead socket is not worth a log line.
        _shutdown(client)


def _shutdown(client: IMAPClient) -> None:
    # Closing an already broken socket can fail; there is nothing left to do then.
    with contextlib.suppress(Exception):
        client.shutdown()


def _classify(exc: Exception) -> ImapFault:
    """Map a library error met after login to a fault kind (translated at the edge)."""
    if isinstance(exc, ImapFault):
        return exc
    if isinstance(exc, StoreError):
        return ImapFault("store_failed", str(exc))
    if isinstance(exc, IMAPClientAbortError | OSError | EOFError):
        return ImapFault("connection_lost", f"connection lost: {exc or type(exc).__name__}")
    if isinstance(exc, IMAPClientError):
        return ImapFault("server_refused", f"server refused a command: {exc}")
    return ImapFault("bug", f"{type(exc).__name__}: {exc}")


class ImapPoller:
    """Serves one IMAP account: backlog in batches, then IDLE or polling, faults contained.

    ``last_poll_at`` (aware UTC, the end of the last successful drain; at least every
    ``IDLE_REISSUE_SECONDS`` while idling), ``last_error``
    (None after a good drain) and ``spooled_total`` are for ``mailticket status``.
    """

    def __init__(
        self,
        account: ImapAccountConfig,
        session_factory: sessionmaker[Session],
        clock: Clock = _utc_now,
        io_timeout: float = 60.0,
        idle_reissue_seconds: float = IDLE_REISSUE_SECONDS,
    ) -> None:
        self.account = account
        self._idle_reissue = idle_reissue_seconds
        self._factory = session_factory
        self._clock = clock
        self._io_timeout = io_timeout
        self._client: IMAPClient | None = None
        self._folders_seen: set[str] = set()
        self.uidvalidity: int | None = None
        self.last_poll_at: datetime | None = None
        self.last_error: str | None = None
        self.spooled_total = 0

    def _extra(self, **fields: Any) -> dict[str, Any]:
        return {"account": self.account.name, **fields}

    # ---- the steps, public so tests can stop between them like a crash would -------

    def ensure_connected(self) -> IMAPClient:
        """The live connection, connecting and logging in first if needed."""
        if self._client is None:
            self._client = connect(self.account, self._io_timeout)
            self._folders_seen.clear()
            _log.info(
                "imap connected",
                extra=self._extra(
                    host=self.account.host, port=self.account.port, tls=self.account.tls
                ),
            )
        return self._client

    def select_folder(self) -> int:
        """Select the watched folder and return its UIDVALIDITY (a change is logged)."""
        client = self.ensure_connected()
        try:
            info = client.select_folder(self.account.folder)
        except IMAPClientAbortError:
            raise
        except IMAPClientError as exc:
            folder = self.account.folder
            raise ImapFault("folder_missing", f"cannot select folder {folder!r}: {exc}") from exc
        uidvalidity = int(info[b"UIDVALIDITY"])
        if self.uidvalidity is not None and uidvalidity != self.uidvalidity:
            _log.warning(
                "imap UIDVALIDITY changed; waiting mail gets new keys, Message-ID dedupe applies",
                extra=self._extra(
                    folder=self.account.folder,
                    old_uidvalidity=self.uidvalidity,
                    new_uidvalidity=uidvalidity,
                ),
            )
        self.uidvalidity = uidvalidity
        return uidvalidity

    def search_pending(self) -> list[int]:
        """UIDs in the selected folder that still need spooling, oldest first."""
        criteria = ["UNDELETED"] if self.account.processed_folder else ["UNSEEN", "UNDELETED"]
        return sorted(int(uid) for uid in self.ensure_connected().search(criteria))

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE per UID; UIDs deleted meanwhile by someone else are left out."""
        if not uids:
            return {}
        data = self.ensure_connected().fetch(list(uids), ["RFC822.SIZE"])
        return {int(uid): int(item[b"RFC822.SIZE"]) for uid, item in data.items()}

    def fetch(self, uids: Sequence[int], sizes: dict[int, int] | None = None) -> list[Fetched]:
        """Read messages without setting \\Seen: whole when within the limit, else headers."""
        client = self.ensure_connected()
        sizes = self.sizes(uids) if sizes is None else sizes
        limit = self.account.max_message_size
        small = [uid for uid in uids if uid in sizes and sizes[uid] <= limit]
        big = [uid for uid in uids if uid in sizes and sizes[uid] > limit]
        found: dict[int, Fetched] = {}
        if small:
            for uid, item in client.fetch(small, ["BODY.PEEK[]"]).items():
                raw = bytes(item[b"BODY[]"])
                found[int(uid)] = Fetched(int(uid), raw, len(raw), oversize=False)
        if big:
            part = f"BODY.PEEK[HEADER]<0.{OVERSIZE_HEADER_BYTES}>"
            for uid, item in client.fetch(big, [part]).items():
                raw = bytes(item[b"BODY[HEADER]<0>"])
                found[int(uid)] = Fetched(int(uid), raw, sizes[int(uid)], oversize=True)
        return [found[uid] for uid in uids if uid in found]

    def spool(self, uidvalidity: int, fetched: Sequence[Fetched]) -> int:
        """Put the messages into the spool and commit; returns how many rows are new."""
        if not fetched:
            return 0
        now = self._clock()
        name = self.account.name
        written: list[tuple[Fetched, int, bool]] = []
        with transaction(self._factory) as session:
            for msg in fetched:
                item = SpoolItem(
                    source=f"{OVERSIZE_SOURCE}:{name}" if msg.oversize else f"imap:{name}",
                    idempotency_key=idempotency_key(self.account, uidvalidity, msg.uid),
                    mail_from=return_path(msg.raw),
                    rcpt_tos=[self.account.address],
                    peer=self.account.host[:128],
                    raw=msg.raw,
                    size=msg.size,
                    next_attempt_at=now,
                    created_at=now,
                )
                row, new = put_spool(session, item)
                written.append((msg, row.id, new))
        # Logged only after the commit, so a line never claims a row that was rolled back.
        for msg, spool_id, new in written:
            _log.log(
                logging.WARNING if msg.oversize else logging.INFO,
                "imap message spooled" if new else "imap message already spooled",
                extra=self._extra(
                    uidvalidity=uidvalidity,
                    uid=msg.uid,
                    spool_id=spool_id,
                    size=msg.size,
                    oversize=msg.oversize,
                ),
            )
        created = sum(new for _, _, new in written)
        self.spooled_total += created
        return created

    def mark(self, fetched: Sequence[Fetched]) -> None:
        """After the commit: move processed mail away (or flag it \\Seen), oversize to its folder."""
        done = [m.uid for m in fetched if not m.oversize]
        big = [m.uid for m in fetched if m.oversize]
        if done and self.account.processed_folder:
            self._move(done, self.account.processed_folder)
        elif done:
            self.ensure_connected().add_flags(done, [b"\\Seen"], silent=True)
        if big:
            self._move(big, self.account.oversize_folder)
            _log.warning(
                "imap oversize message left for an admin",
                extra=self._extra(
                    uids=",".join(map(str, big)),
                    folder=self.account.oversize_folder,
                    limit=self.account.max_message_size,
                ),
            )

    def _move(self, uids: list[int], folder: str) -> None:
        client = self.ensure_connected()
        if folder not in self._folders_seen:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            self._folders_seen.add(folder)
        if client.has_capability("MOVE"):
            client.move(uids, folder)
            return
        client.copy(uids, folder)
        client.add_flags(uids, [b"\\Deleted"], silent=True)
        # Without UIDPLUS a plain EXPUNGE would also remove mail someone else flagged
        # \Deleted; our search skips \Deleted mail, so leaving it is safe.
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)

    def drain(self, stop: threading.Event | None = None) -> int:
        """Spool everything pending, batch by batch; returns how many rows are new."""
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
            for group in _groups(batch, sizes, self.account.max_message_size):
                fetched = self.fetch(group, sizes)
                created += self.spool(uidvalidity, fetched)
                self.mark(fetched)
        self.last_poll_at = self._clock()
        self.last_error = None
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
            # imapclient's idle_check returns nothing at once when the socket hit EOF;
            # idle_done() below then raises, which is how a server restart shows up.
            if not responses and deadline - time.monotonic() > left - wait / 2:
                break
        client.idle_done()

    def _report(self, exc: Exception, retry_in: float | None) -> None:
        fault = _classify(exc)
        self.last_error = str(fault)
        extra = self._extra(fault=fault.kind, error=fault.text, host=self.account.host)
        if retry_in is not None:
            extra["retry_in"] = retry_in
        _log.error("imap account failed", extra=extra, exc_info=fault.kind == "bug")
        self._disconnect()

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            _shutdown(client)

    def close(self) -> None:
        """Log out politely (used at shutdown and by tests to simulate a crash)."""
        client, self._client = self._client, None
        if client is not None:
            _quietly_logout(client)


def _groups(uids: Sequence[int], sizes: dict[int, int], limit: int) -> Iterator[list[int]]:
    """Split a batch into groups whose downloaded bytes stay under FETCH_GROUP_BYTES."""
    group: list[int] = []
    total = 0
    for uid in uids:
        # Oversize mail is fetched as headers only, so it weighs almost nothing.
        weight = sizes.get(uid, 0) if sizes.get(uid, 0) <= limit else OVERSIZE_HEADER_BYTES
        if group and total + weight > FETCH_GROUP_BYTES:
            yield group
            group, total = [], 0
        group.append(uid)
        total += weight
    if group:
        yield group


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
    clock: Clock = _utc_now,
) -> list[threading.Thread]:
    """Start one thread per account (imapclient blocks); each runs until ``stop`` is set."""
    threads: list[threading.Thread] = []
    for account in accounts:
        thread = PollerThread(ImapPoller(account, factory, clock), stop)
        thread.start()
        threads.append(thread)
    return threads
