"""The steps that take one IMAP batch into the spool exactly once, in the order that makes it so.

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
move it to ``oversize_folder`` for an admin. The loop around these steps (IDLE,
faults, backoff) is ``transport.imap``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError
from sqlalchemy.orm import Session, sessionmaker

from mailticket import log
from mailticket.config import ImapAccountConfig
from mailticket.intake.imap_session import ImapFault, connect
from mailticket.metrics import Metrics
from mailticket.model import Clock as Clock
from mailticket.model import utc_now as utc_now
from mailticket.store.db import transaction
from mailticket.store.schema import SpoolItem
from mailticket.store.workqueue import put_spool

OVERSIZE_SOURCE = "imap-oversize"
OVERSIZE_HEADER_BYTES = 64 * 1024
# Bodies are fetched and committed in groups of at most this many bytes, so a batch of
# 50 messages near the size limit does not sit in memory all at once.
FETCH_GROUP_BYTES = 16 * 1024 * 1024

_log = log.get("imap")



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


class Mailbox:
    """One account's folder and the steps on it, public so tests can stop between them.

    ``uidvalidity`` is the folder's last seen UIDVALIDITY; ``spooled_total``
    counts new spool rows. New rows count as received mail in ``metrics``
    (source ``imap``, or ``imap-oversize`` for a header-only stub, which the
    pipeline then rejects).
    """

    def __init__(
        self,
        account: ImapAccountConfig,
        session_factory: sessionmaker[Session],
        clock: Clock = utc_now,
        io_timeout: float = 60.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.account = account
        self._metrics = metrics
        self._factory = session_factory
        self._clock = clock
        self._io_timeout = io_timeout
        self._client: IMAPClient | None = None
        self._folders_seen: set[str] = set()
        self.uidvalidity: int | None = None
        self.spooled_total = 0

    def _extra(self, **fields: Any) -> dict[str, Any]:
        return {"account": self.account.name, **fields}

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
        if self._metrics is not None:
            for msg, _, new in written:
                if new:
                    self._metrics.observe_received(OVERSIZE_SOURCE if msg.oversize else "imap")
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


def groups(uids: Sequence[int], sizes: dict[int, int], limit: int) -> Iterator[list[int]]:
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
