"""The whole mail path in one process over real sockets: listener → spool → worker → outbox → sink.

Faster than a daemon subprocess, and just as real on every hop: smtplib talks
to the aiosmtpd listener, the worker runs the real pipeline on a real
database, and the drainer relays through SMTP to an ``SmtpSink``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import smtplib
import ssl
import threading
import time
from pathlib import Path

from sqlalchemy import select
from support import sla_facts_check
from support.configs import make_config
from support.smtp_sink import Received, SmtpSink

from mailticket.app import assemble
from mailticket.config import Config, ListenerConfig, RelayConfig
from mailticket.intake.listener import start_listener
from mailticket.intake.submission import EngineerAuthenticator
from mailticket.runners.outbox import OutboxDrainer
from mailticket.runners.worker import SpoolWorker
from mailticket.store.db import make_engine, make_sessionmaker, transaction
from mailticket.store.schema import AuditEvent, QueueState, SpoolItem, Ticket


class Stack:
    """Listener, worker and drainer threads around one database and one sink."""

    def __init__(self, tmp: Path, db_url: str, sink: SmtpSink, *,
                 submission_tls: tuple[Path, Path] | None = None, **overrides: object) -> None:
        base = make_config(tmp, db_url, **overrides)
        listeners = [ListenerConfig(host="127.0.0.1", port=0)]
        if submission_tls is not None:
            listeners.append(ListenerConfig(host="127.0.0.1", port=0, submission=True,
                                            tls_cert=submission_tls[0], tls_key=submission_tls[1]))
        self.config: Config = dataclasses.replace(
            base,
            relay=RelayConfig(host="127.0.0.1", port=sink.port, retry_base_seconds=0.05,
                              retry_max_seconds=0.1),
            listeners=tuple(listeners),
        )
        self.sink = sink
        self.engine = make_engine(db_url)
        self.factory = make_sessionmaker(self.engine)
        self.stop = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.loop_thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.loop_thread.start()
        self.servers = [
            asyncio.run_coroutine_threadsafe(
                start_listener(listener, self.factory, self.config.mail.support_addresses,
                               authenticator=EngineerAuthenticator(self.config.engineers)
                               if listener.submission else None),
                self.loop).result(10)
            for listener in self.config.listeners
        ]
        self.server = self.servers[0]
        self.port = int(self.server.sockets[0].getsockname()[1])
        self.submission_port = (int(self.servers[1].sockets[0].getsockname()[1])
                                if len(self.servers) > 1 else None)
        self.submission_ca = submission_tls[0] if submission_tls is not None else None
        self.worker = SpoolWorker(assemble(self.config, self.engine))
        self.drainer = OutboxDrainer(self.factory, self.config.relay, lease_seconds=30)
        self.threads = [
            threading.Thread(target=self.worker.run, args=(self.stop,), daemon=True),
            threading.Thread(target=self.drainer.run, args=(self.stop, 0.02), daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def send(self, raw: bytes, *, mail_from: str = "someone@client.example",
             rcpt: tuple[str, ...] = ("support@provider.example",)) -> str:
        """Send over SMTP; returns the server's final reply text."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            client.ehlo()
            client.mail(mail_from)
            for address in rcpt:
                client.rcpt(address)
            code, reply = client.data(raw)
        return f"{code} {reply.decode()}"

    def submit(self, login: str, password: str, raw: bytes, rcpt: str) -> list[Received]:
        """Send through the submission listener after STARTTLS and AUTH; returns new sink mail."""
        assert self.submission_port is not None and self.submission_ca is not None
        before = len(self.sink.messages)
        context = ssl.create_default_context(cafile=str(self.submission_ca))
        with smtplib.SMTP("127.0.0.1", self.submission_port, timeout=10) as client:
            client.starttls(context=context)
            client.ehlo()
            client.login(login, password)
            client.sendmail(login, [rcpt], raw)
        self.settle()
        return self.sink.messages[before:]

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the spool has nothing queued and the outbox is drained."""
        from mailticket.store.schema import OutboxItem

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with transaction(self.factory) as s:
                busy = s.scalar(select(SpoolItem.id).where(
                    SpoolItem.state.in_([QueueState.QUEUED, QueueState.CLAIMED])).limit(1))
                busy = busy or s.scalar(select(OutboxItem.id).where(
                    OutboxItem.state.in_([QueueState.QUEUED, QueueState.CLAIMED])).limit(1))
            if not busy:
                return
            time.sleep(0.02)
        raise AssertionError("pipeline did not settle in time")

    def deliver(self, raw: bytes, **kwargs: object) -> list[Received]:
        """Send one mail, wait until everything it causes has been relayed; returns new sink mail."""
        before = len(self.sink.messages)
        self.send(raw, **kwargs)  # type: ignore[arg-type]
        self.settle()
        return self.sink.messages[before:]

    def ticket(self, number: int) -> Ticket:
        with transaction(self.factory) as s:
            ticket = s.get(Ticket, number)
            assert ticket is not None
            _ = [a.attachments for a in ticket.articles], ticket.contacts
            return ticket

    def tickets(self) -> list[Ticket]:
        with transaction(self.factory) as s:
            rows = list(s.scalars(select(Ticket).order_by(Ticket.id)).all())
            for t in rows:
                _ = t.articles, t.contacts
            return rows

    def audit(self, ticket_id: int | None = None) -> list[AuditEvent]:
        with transaction(self.factory) as s:
            query = select(AuditEvent).order_by(AuditEvent.id)
            if ticket_id is not None:
                query = query.where(AuditEvent.ticket_id == ticket_id)
            return list(s.scalars(query).all())

    def spool(self) -> list[SpoolItem]:
        with transaction(self.factory) as s:
            return list(s.scalars(select(SpoolItem).order_by(SpoolItem.id)).all())

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)
        for server in self.servers:
            self.loop.call_soon_threadsafe(server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.loop_thread.join(5)
        try:
            wrong = sla_facts_check.mismatches(self.factory)
            assert not wrong, wrong
        finally:
            self.engine.dispose()


def text_of(received: Received) -> str:
    part = received.message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())
