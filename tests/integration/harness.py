"""A pipeline harness on a real database: spool mail, run the real worker, read the results."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support import sla_facts_check

from mailticket.app import assemble
from mailticket.config import Config
from mailticket.runners.worker import SpoolWorker
from mailticket.store import workqueue
from mailticket.store.db import make_engine, transaction
from mailticket.store.schema import OutboxItem, SpoolItem, Ticket


@dataclass
class Clock:
    """A controllable clock: tests move time instead of sleeping."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 20, 16, 50, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


class Harness:
    """Spool → worker → tickets/outbox, all real, on one database."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.engine = make_engine(config.database.url)
        self.app = assemble(config, self.engine)
        self.factory: sessionmaker[Session] = self.app.factory
        self.clock = Clock()
        self.notifier = self.app.notifier
        self.worker = SpoolWorker(self.app, clock=self.clock)
        self._sent_seen = 0

    def spool(self, raw: bytes, *, mail_from: str = "sender@client.example",
              rcpt: tuple[str, ...] = ("support@provider.example",), source: str = "smtp",
              auth_user: str | None = None, key: str | None = None) -> int:
        with transaction(self.factory) as s:
            row, _ = workqueue.put_spool(s, SpoolItem(
                source=source, idempotency_key=key, mail_from=mail_from, rcpt_tos=list(rcpt),
                peer="127.0.0.1", auth_user=auth_user, raw=raw, size=len(raw),
                state="queued", attempts=0, next_attempt_at=self.clock.now,
                created_at=self.clock.now))
            return row.id

    def deliver(self, raw: bytes, **kwargs: Any) -> int:
        """Spool one mail and process everything due; returns the spool id."""
        spool_id = self.spool(raw, **kwargs)
        self.worker.drain()
        return spool_id

    def spool_row(self, spool_id: int) -> SpoolItem:
        with transaction(self.factory) as s:
            row = s.get(SpoolItem, spool_id)
            assert row is not None
            return row

    def tickets(self) -> list[Ticket]:
        with transaction(self.factory) as s:
            rows = s.scalars(select(Ticket).order_by(Ticket.id)).all()
            for t in rows:
                _ = [a.attachments for a in t.articles], t.contacts
            return list(rows)

    def outbox(self, kind: str | None = None) -> list[OutboxItem]:
        with transaction(self.factory) as s:
            query = select(OutboxItem).order_by(OutboxItem.id)
            if kind:
                query = query.where(OutboxItem.kind == kind)
            return list(s.scalars(query).all())

    def new_outbox(self) -> list[OutboxItem]:
        """Outbox rows added since the last call."""
        rows = self.outbox()
        fresh = rows[self._sent_seen:]
        self._sent_seen = len(rows)
        return fresh

    def close(self) -> None:
        try:
            wrong = sla_facts_check.mismatches(self.factory)
            assert not wrong, wrong
        finally:
            self.engine.dispose()


def as_message(item: OutboxItem) -> email.message.EmailMessage:
    msg = email.message_from_bytes(item.raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def body_text(item: OutboxItem) -> str:
    msg = as_message(item)
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def outgoing_files(maildir: Path) -> list[Path]:
    return sorted((maildir / "new").glob("*")) if (maildir / "new").is_dir() else []
