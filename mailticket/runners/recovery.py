"""Take back the spool and outbox rows of a dead daemon process at once, not after their lease.

A claim is a lease (``store.workqueue``): if its holder dies, the row comes
back when the lease runs out, five minutes by default, so after a crash an
acknowledgement (or a critical page) left five minutes late. Every claim now
names its holder, one per process (``<instance_id>/<random>``), and every
daemon process keeps a heartbeat row in ``instances``. Rows held by a process
known to be dead get their lease ended at once (``workqueue.expire_held_by``:
the same as an expired lease, attempt still counted, only sooner):

* at start-up on SQLite, every row a daemon held: the instance lock file
  (``daemon.InstanceLock``) proves no other daemon uses this database, so
  their holders are dead (rows claimed by the CLI name no holder and are left
  to their lease);
* at start-up on PostgreSQL, rows of an earlier process with our instance id
  on this host whose pid is gone (or is ours now);
* all the time on PostgreSQL, rows of any process whose heartbeat is older
  than ``[daemon] instance_grace`` seconds; each process beats every third of
  that. A process that was only stalled, not dead, loses such rows the moment
  another claims them, exactly as after a lease: the spool stays exactly once
  (the finish checks the token), an outgoing mail may leave twice with the
  same Message-ID (delivery is at least once).

Time for heartbeats is the database's on PostgreSQL, so clocks of several
hosts need not agree.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailticket.log import get as get_logger
from mailticket.model import utc_now
from mailticket.store import workqueue
from mailticket.store.db import transaction
from mailticket.store.schema import Instance, OutboxItem, QueueState, SpoolItem

log = get_logger("recovery")


def _pid_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this host (our own pid: the old one is gone)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Recovery:
    """This process's heartbeat and the taking back of dead processes' claims."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        instance_id: str,
        grace_seconds: float,
        *,
        single_instance: bool,
    ) -> None:
        """``single_instance``: the caller holds the SQLite instance lock."""
        self.factory = factory
        self.instance_id = instance_id
        self.grace = timedelta(seconds=grace_seconds)
        self.beat_every = max(0.2, grace_seconds / 3)
        self.single_instance = single_instance
        self.holder = f"{instance_id}/{secrets.token_hex(6)}"
        self.host = socket.gethostname()[:255]

    def _now(self, session: Session) -> datetime:
        """The database's clock on PostgreSQL (shared by all hosts), ours on SQLite."""
        if self.single_instance:
            return utc_now()
        now = session.scalar(select(func.now()))
        assert isinstance(now, datetime)
        return now

    def start(self) -> int:
        """Register this process and take back what dead ones held; how many rows came back."""
        with transaction(self.factory) as session:
            now = self._now(session)
            session.add(Instance(holder=self.holder, instance_id=self.instance_id,
                                 host=self.host, pid=os.getpid(), started_at=now,
                                 heartbeat_at=now))
            if self.single_instance:
                held = session.scalars(
                    select(SpoolItem.claimed_by).where(SpoolItem.state == QueueState.CLAIMED)
                    .union(select(OutboxItem.claimed_by)
                           .where(OutboxItem.state == QueueState.CLAIMED))
                )
                dead = {h for h in held if h is not None and h != self.holder}
                dead.update(session.scalars(
                    select(Instance.holder).where(Instance.holder != self.holder)))
            else:
                earlier = session.execute(
                    select(Instance.holder, Instance.pid).where(
                        Instance.instance_id == self.instance_id, Instance.host == self.host,
                        Instance.holder != self.holder)
                ).all()
                dead = {holder for holder, pid in earlier if _pid_gone(pid)}
                dead.update(self._silent(session, now))
            released = self._release(session, sorted(dead), now, "at start-up")
        return released

    def beat(self) -> int:
        """Refresh our heartbeat, then take back the rows of processes gone silent."""
        with transaction(self.factory) as session:
            now = self._now(session)
            beaten = session.execute(
                update(Instance).where(Instance.holder == self.holder)
                .values(heartbeat_at=now)
            ).rowcount  # type: ignore[attr-defined]
            if not beaten:
                # Another instance found us silent for longer than the grace and took
                # our rows back: anything we still hold may be done twice.
                log.error("this instance was declared dead (no heartbeat within the grace); "
                          "registering again", extra={"holder": self.holder})
                session.add(Instance(holder=self.holder, instance_id=self.instance_id,
                                     host=self.host, pid=os.getpid(), started_at=now,
                                     heartbeat_at=now))
            return self._release(session, self._silent(session, now), now, "no heartbeat")

    def _silent(self, session: Session, now: datetime) -> list[str]:
        """Processes whose last heartbeat is older than the grace."""
        return list(session.scalars(
            select(Instance.holder).where(Instance.heartbeat_at < now - self.grace,
                                          Instance.holder != self.holder)))

    def _release(self, session: Session, dead: list[str], now: datetime, why: str) -> int:
        """End the leases of ``dead`` holders' rows and forget those holders."""
        if not dead:
            return 0
        spool = workqueue.expire_held_by(session, SpoolItem, dead, now)
        outbox = workqueue.expire_held_by(session, OutboxItem, dead, now)
        session.execute(delete(Instance).where(Instance.holder.in_(dead)))
        if spool or outbox:
            log.warning("took back the rows of a dead process", extra={
                "why": why, "holders": ",".join(dead), "spool_ids": ",".join(map(str, spool)),
                "outbox_ids": ",".join(map(str, outbox))})
        return len(spool) + len(outbox)

    def run(self, stop: threading.Event) -> None:
        """Beat until ``stop`` is set; a database error is logged and tried again next beat."""
        while not stop.wait(self.beat_every):
            try:
                self.beat()
            except Exception:
                # The database is unreachable: nobody can claim anything either.
                log.exception("heartbeat failed; retrying", extra={"holder": self.holder})

    def stop(self) -> None:
        """Remove our heartbeat row on a clean stop (our claims were given back)."""
        with transaction(self.factory) as session:
            session.execute(delete(Instance).where(Instance.holder == self.holder))
