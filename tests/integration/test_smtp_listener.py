"""The SMTP/LMTP listener over real sockets: real aiosmtpd, a real SQLite file, smtplib.

Each test starts the listener on a free port on an event loop in a background
thread (as the daemon runs it on its own loop) and talks to it with smtplib or,
where smtplib would tidy up what we want to send, a raw socket. The spool is
read back through a fresh sqlite3 connection, so a row seen there is committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import smtplib
import socket
import sqlite3
import ssl
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from sqlalchemy import event
from sqlalchemy.engine import Engine
from support.metrics import scrape_metrics

from mailticket.config import ListenerConfig
from mailticket.intake.listener import start_listener
from mailticket.metrics import Metrics, start_metrics_server
from mailticket.store.db import make_engine, make_sessionmaker
from mailticket.store.migrate import upgrade

OK = 250
QUEUED_PREFIX = "2.0.0 Ok: queued as "
GREETING = 220
CLOSING = 221
START_INPUT = 354
TOO_MANY_CONNECTIONS = 421
TEMPFAIL = 451
TOO_MANY_RECIPIENTS = 452
LINE_TOO_LONG = 500
NO_VALID_RECIPIENTS = 503
RECIPIENT_REFUSED = 550
TOO_BIG = 552

SUPPORT = ("support@example.com", "help@example.org")
SENDER = "alice@customer.example"
FIXED_NOW = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
MAX_SIZE = 10_000

T = TypeVar("T")


# --- helpers -----------------------------------------------------------------


class LoopThread:
    """An asyncio event loop running in a daemon thread, like the daemon's own loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def stop(self) -> None:
        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(_cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


@dataclass
class Store:
    """The test database: its file and the engine the listener writes through."""

    path: Path
    engine: Engine

    def rows(self) -> list[dict[str, Any]]:
        """Every spool row, read through a fresh connection (so: committed data only)."""
        conn = sqlite3.connect(self.path)
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute("SELECT * FROM spool ORDER BY id").fetchall()
        finally:
            conn.close()
        return [dict(r) for r in rows]


def message(subject: str = "Printer on fire", body: str = "Please help.\r\n") -> bytes:
    """A small CRLF message, as an MTA would send it."""
    return (
        f"From: Alice <{SENDER}>\r\nTo: {SUPPORT[0]}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@customer.example>\r\n\r\n{body}"
    ).encode()


def queued_id(reply: bytes) -> int:
    """The spool id named in a ``250 2.0.0 Ok: queued as N`` reply."""
    text = reply.decode()
    assert text.startswith(QUEUED_PREFIX), text
    return int(text.removeprefix(QUEUED_PREFIX))


class RawClient:
    """A bare socket SMTP client, for bytes smtplib would not send as they are."""

    def __init__(self, port: int, source_ip: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=5, source_address=(source_ip, 0)
        )
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply: its code and the text of its last line."""
        while True:
            line = self._line()
            if line[3:4] != b"-":
                return int(line[:3]), line[4:].decode()

    def closed_by_server(self) -> bool:
        """Whether the server closed the connection (EOF with nothing more to read)."""
        return self._buffer == b"" and self.sock.recv(1) == b""

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed by server; partial {self._buffer!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line


def smtp_client(port: int) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=5)
    client.ehlo("client.example")
    return client


def short_busy_timeout(engine: Engine, millis: int) -> None:
    """Make this engine's SQLite connections give up on a lock after ``millis``.

    The store's own 15 s busy timeout is right for production but too slow for
    a test; this connect hook runs after the store's and overrides the pragma.
    """

    @event.listens_for(engine, "connect")
    def _busy(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA busy_timeout={millis}")

    # Connections already pooled (from the migration) were made without the hook.
    engine.dispose()


# --- fixtures ----------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "t.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    yield Store(path, engine)
    engine.dispose()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def listen(store: Store, loop_thread: LoopThread) -> Iterator[Callable[..., int]]:
    """Start a listener (ListenerConfig overrides as keywords); returns its port."""
    servers: list[asyncio.base_events.Server] = []
    factory = make_sessionmaker(store.engine)

    def _listen(**overrides: Any) -> int:
        extra = {
            k: overrides.pop(k)
            for k in ("max_connections", "max_connections_per_ip", "authenticator", "metrics")
            if k in overrides
        }
        config = replace(ListenerConfig(port=0, max_message_size=MAX_SIZE, timeout=5), **overrides)
        server = loop_thread.run(
            start_listener(
                config, factory, SUPPORT, clock=lambda: FIXED_NOW, hostname="mx.test", **extra
            )
        )
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield _listen

    async def _close() -> None:
        for server in servers:
            server.close()
            await server.wait_closed()

    loop_thread.run(_close())


# --- accepting mail ----------------------------------------------------------


def test_accepted_mail_is_committed_before_250_with_its_envelope(
    store: Store, listen: Callable[..., int]
) -> None:
    port = listen()
    # A line starting with "." is dot-stuffed by smtplib and must come back unstuffed.
    sent = message(body="Line one.\r\n.hidden dot line\r\n..two dots\r\n")
    with smtp_client(port) as client:
        assert client.sock is not None
        client_port = client.sock.getsockname()[1]
        assert client.mail(SENDER) == (OK, b"OK")
        assert client.rcpt("Support@Example.com") == (OK, b"OK")
        code, reply = client.data(sent)
        # Read back at once through another connection: the row is already committed.
        rows = store.rows()
    assert code == OK
    assert len(rows) == 1
    row = rows[0]
    assert queued_id(reply) == row["id"]
    assert row["raw"] == sent
    assert row["size"] == len(sent)
    assert row["mail_from"] == SENDER
    assert json.loads(row["rcpt_tos"]) == ["Support@Example.com"]
    assert row["peer"] == f"127.0.0.1:{client_port}"
    assert row["source"] == "smtp"
    assert row["auth_user"] is None
    assert row["state"] == "queued"
    assert row["attempts"] == 0
    assert row["idempotency_key"] is None
    assert row["created_at"] == "2025-03-04 05:06:07.123456"
    assert row["next_attempt_at"] == "2025-03-04 05:06:07.123456"


def test_unknown_recipient_is_refused_at_rcpt_and_nothing_is_spooled(
    store: Store, listen: Callable[..., int]
) -> None:
    port = listen()
    with smtp_client(port) as client:
        client.mail(SENDER)
        assert client.rcpt("someone@example.com") == (
            RECIPIENT_REFUSED,
            b"5.1.1 <someone@example.com>: recipient not accepted here",
        )
        assert client.rcpt("support@example.com.evil.test")[0] == RECIPIENT_REFUSED
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.data(message())
    assert refused.value.smtp_code == NO_VALID_RECIPIENTS
    assert store.rows() == []


def test_plus_addressed_recipient_and_null_sender_are_accepted(
    store: Store, listen: Callable[..., int]
) -> None:
    port = listen()
    with smtp_client(port) as client:
        assert client.mail("") == (OK, b"OK")  # MAIL FROM:<>, as a bounce arrives
        assert client.rcpt("support+MT-42.k3y@example.com") == (OK, b"OK")
        assert client.rcpt("help@example.org") == (OK, b"OK")
        code, _ = client.data(message())
    assert code == OK
    [row] = store.rows()
    assert row["mail_from"] == ""
    assert json.loads(row["rcpt_tos"]) == ["support+MT-42.k3y@example.com", "help@example.org"]


def test_recipients_over_the_cap_get_452(store: Store, listen: Callable[..., int]) -> None:
    port = listen(max_recipients=20)
    recipients = [f"support+{i}@example.com" for i in range(21)]
    with smtp_client(port) as client:
        client.mail(SENDER)
        codes = [client.rcpt(r) for r in recipients]
        assert codes[:20] == [(OK, b"OK")] * 20
        assert codes[20] == (TOO_MANY_RECIPIENTS, b"4.5.3 Too many recipients")
        code, _ = client.data(message())
    assert code == OK
    [row] = store.rows()
    assert json.loads(row["rcpt_tos"]) == recipients[:20]


# --- size and line limits ----------------------------------------------------


def test_declared_oversize_is_refused_at_mail(store: Store, listen: Callable[..., int]) -> None:
    port = listen()
    with smtp_client(port) as client:
        assert "size" in client.esmtp_features
        assert client.esmtp_features["size"] == str(MAX_SIZE)
        code, reply = client.mail(SENDER, options=[f"SIZE={MAX_SIZE + 1}"])
        assert (code, reply) == (TOO_BIG, b"Error: message size exceeds fixed maximum message size")
        # smtplib's sendmail declares SIZE= itself and raises on the 552.
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail(SENDER, [SUPPORT[0]], message(body="x" * MAX_SIZE + "\r\n"))
        assert refused.value.smtp_code == TOO_BIG
    assert store.rows() == []


def test_undeclared_oversize_is_refused_after_data_and_session_goes_on(
    store: Store, listen: Callable[..., int]
) -> None:
    port = listen()
    big = message(body=("y" * 70 + "\r\n") * (MAX_SIZE // 72 + 1))
    assert len(big) > MAX_SIZE
    with smtp_client(port) as client:
        client.mail(SENDER)  # no SIZE= parameter
        client.rcpt(SUPPORT[0])
        assert client.data(big) == (TOO_BIG, b"Error: Too much mail data")
        assert store.rows() == []
        client.mail(SENDER)
        client.rcpt(SUPPORT[0])
        code, reply = client.data(message())
    assert code == OK
    [row] = store.rows()
    assert queued_id(reply) == row["id"]
    assert row["raw"] == message()


def test_line_over_1000_octets_is_refused_with_500(
    store: Store, listen: Callable[..., int]
) -> None:
    port = listen()
    with smtp_client(port) as client:
        client.mail(SENDER)
        client.rcpt(SUPPORT[0])
        code, reply = client.data(message(body="z" * 1001 + "\r\n"))
        assert (code, reply) == (LINE_TOO_LONG, b"Line too long (see RFC5321 4.5.3.1.6)")
        assert client.noop()[0] == OK
    assert store.rows() == []


# --- failures of our own are 451 ---------------------------------------------


def test_locked_database_gives_451_then_the_retry_is_queued(
    store: Store, listen: Callable[..., int]
) -> None:
    short_busy_timeout(store.engine, 200)
    port = listen()
    blocker = sqlite3.connect(store.path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with smtp_client(port) as client:
            client.mail(SENDER)
            client.rcpt(SUPPORT[0])
            assert client.data(message()) == (TEMPFAIL, b"4.3.0 Temporary failure, please retry")
            blocker.execute("ROLLBACK")
            assert store.rows() == []
            # The MTA retries the same message once the database is free again.
            client.mail(SENDER)
            client.rcpt(SUPPORT[0])
            code, reply = client.data(message())
    finally:
        blocker.close()
    assert code == OK
    [row] = store.rows()
    assert queued_id(reply) == row["id"]
    assert row["raw"] == message()


def test_missing_spool_table_gives_451_never_5xx(
    store: Store, listen: Callable[..., int], caplog: pytest.LogCaptureFixture
) -> None:
    port = listen()
    conn = sqlite3.connect(store.path)
    conn.execute("DROP TABLE spool")
    conn.commit()
    conn.close()
    with caplog.at_level(logging.INFO, logger="mailticket.smtp"), smtp_client(port) as client:
        client.mail(SENDER)
        client.rcpt(SUPPORT[0])
        assert client.data(message()) == (TEMPFAIL, b"4.3.0 Temporary failure, please retry")
    failures = [r for r in caplog.records if r.getMessage() == "spool write failed"]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    refusals = [r for r in caplog.records if r.getMessage() == "smtp refusal"]
    assert [(r.code, r.reason) for r in refusals] == [  # type: ignore[attr-defined]
        ("451", "4.3.0 Temporary failure, please retry")
    ]


# --- protocol abuse ----------------------------------------------------------


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n"])
def test_smuggled_message_stays_inside_the_first(
    store: Store, listen: Callable[..., int], fake_end: bytes
) -> None:
    port = listen()
    client = RawClient(port)
    try:
        assert client.reply()[0] == GREETING
        client.send(b"EHLO client.example\r\n")
        assert client.reply()[0] == OK
        client.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{SUPPORT[0]}>\r\nDATA\r\n".encode())
        assert [client.reply()[0] for _ in range(3)] == [OK, OK, START_INPUT]
        client.send(
            b"Subject: real\r\n\r\nreal body"
            + fake_end
            + b"MAIL FROM:<admin@example.com>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n"
            + b"Subject: smuggled\r\n\r\nevil\r\n.\r\n"
        )
        code, text = client.reply()
        assert code == OK
        client.send(b"QUIT\r\n")
        # Had the smuggled commands run, their replies would come before this one.
        assert client.reply()[0] == CLOSING
    finally:
        client.close()
    [row] = store.rows()
    assert f"{OK} {text}".startswith(f"{OK} {QUEUED_PREFIX}")
    assert row["mail_from"] == SENDER
    assert b"MAIL FROM:<admin@example.com>" in row["raw"]
    assert row["raw"].endswith(b"Subject: smuggled\r\n\r\nevil\r\n")


def test_too_many_connections_per_ip_and_in_total_get_421(
    listen: Callable[..., int], caplog: pytest.LogCaptureFixture
) -> None:
    # No trusted peers, so no reserve: every loopback address is a stranger here.
    port = listen(max_connections=3, max_connections_per_ip=2, trusted_peers=())
    open_clients: list[RawClient] = []
    caplog.set_level(logging.INFO, logger="mailticket.smtp")
    try:
        for _ in range(2):
            open_clients.append(RawClient(port))
            assert open_clients[-1].reply()[0] == GREETING
        refused = RawClient(port)
        assert refused.reply() == (TOO_MANY_CONNECTIONS, "4.7.0 Too many connections, try later")
        assert refused.closed_by_server()
        refused.close()
        # Another IP still gets in, until the total is reached.
        open_clients.append(RawClient(port, source_ip="127.0.0.2"))
        assert open_clients[-1].reply()[0] == GREETING
        refused = RawClient(port, source_ip="127.0.0.3")
        assert refused.reply()[0] == TOO_MANY_CONNECTIONS
        refused.close()
        # A closed session frees its slot.
        open_clients.pop(0).close()
        assert _greeted_within(port, seconds=2.0)
    finally:
        for client in open_clients:
            client.close()
    reasons = [
        r.reason  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "smtp refusal" and r.code == "421"  # type: ignore[attr-defined]
    ]
    assert reasons == ["too many connections from this IP", "too many connections in total"]


def _greeted_within(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client = RawClient(port)
        try:
            if client.reply()[0] == GREETING:
                return True
        finally:
            client.close()
        time.sleep(0.02)
    return False


def test_idle_client_is_disconnected_after_the_timeout(listen: Callable[..., int]) -> None:
    port = listen(timeout=1)
    client = RawClient(port)
    try:
        assert client.reply()[0] == GREETING
        started = time.monotonic()
        assert client.closed_by_server()
        waited = time.monotonic() - started
    finally:
        client.close()
    assert 0.9 <= waited < 3.0


def _until_closed(client: RawClient, command: bytes, pause: float, most: int) -> float | None:
    """Send ``command`` every ``pause`` s until the server hangs up; seconds taken, or None."""
    started = time.monotonic()
    for _ in range(most):
        try:
            client.send(command)
            code, _ = client.reply()
        except (ConnectionError, OSError):
            return time.monotonic() - started
        assert code == OK
        time.sleep(pause)
    return None


@pytest.mark.parametrize("command", [b"RSET\r\n", b"NOOP\r\n", b"HELP\r\n"])
def test_keepalive_commands_do_not_hold_an_idle_session_past_its_timeout(
    listen: Callable[..., int], command: bytes
) -> None:
    # Issue 18.6: RSET (or NOOP, HELP) every half second used to restart the idle
    # timer each time, holding the slot until the 30-minute session cap.
    port = listen(timeout=1)
    client = RawClient(port)
    try:
        assert client.reply()[0] == GREETING
        for line in (b"EHLO idle.example\r\n", f"MAIL FROM:<{SENDER}>\r\n".encode(),
                     f"RCPT TO:<{SUPPORT[0]}>\r\n".encode()):
            client.send(line)
            assert client.reply()[0] == OK
        # Five free restarts after the RCPT, then the timer runs its second out:
        # the server hangs up about 2.5 + 1 s after the RCPT, not never.
        taken = _until_closed(client, command, pause=0.5, most=20)
    finally:
        client.close()
    assert taken is not None, "the server kept the idle session open"
    assert 2.0 < taken < 5.0


def test_a_reused_connection_that_delivers_mail_stays_open(
    store: Store, listen: Callable[..., int]
) -> None:
    # An MTA's connection cache: a message, a pause, RSET, the next message. Each
    # delivered message is progress, so the session outlives its idle timeout.
    port = listen(timeout=1)
    client = RawClient(port)
    try:
        assert client.reply()[0] == GREETING
        client.send(b"EHLO mta.example\r\n")
        assert client.reply()[0] == OK
        started = time.monotonic()
        for n in range(4):
            for line in (b"RSET\r\n", f"MAIL FROM:<{SENDER}>\r\n".encode(),
                         f"RCPT TO:<{SUPPORT[0]}>\r\n".encode(), b"DATA\r\n"):
                client.send(line)
                assert client.reply()[0] in (OK, START_INPUT)
            client.send(message(f"reuse {n}") + b".\r\n")
            assert client.reply()[0] == OK
            time.sleep(0.6)
        assert time.monotonic() - started > 2.0
    finally:
        client.close()
    assert len(store.rows()) == 4


def test_the_reserve_keeps_slots_for_trusted_peers_when_strangers_fill_the_rest(
    listen: Callable[..., int],
) -> None:
    # Issue 18.6: idle strangers used to take every slot and lock our MTA out.
    port = listen(max_connections=4, max_connections_per_ip=2,
                  trusted_peers=("127.0.0.1/32",), reserved_connections=2)
    clients: list[RawClient] = []
    try:
        for ip in ("127.0.0.2", "127.0.0.3"):
            clients.append(RawClient(port, source_ip=ip))
            assert clients[-1].reply()[0] == GREETING
        # Strangers have max_connections - reserved_connections = 2 slots in all.
        refused = RawClient(port, source_ip="127.0.0.4")
        assert refused.reply()[0] == TOO_MANY_CONNECTIONS
        refused.close()
        # The trusted MTA still gets the two reserved slots, and mail goes through.
        for _ in range(2):
            clients.append(RawClient(port, source_ip="127.0.0.1"))
            assert clients[-1].reply()[0] == GREETING
        mta = clients[-1]
        for line in (b"EHLO mta.example\r\n", f"MAIL FROM:<{SENDER}>\r\n".encode(),
                     f"RCPT TO:<{SUPPORT[0]}>\r\n".encode()):
            mta.send(line)
            assert mta.reply()[0] == OK
        # The total cap still holds for everybody.
        refused = RawClient(port, source_ip="127.0.0.1")
        assert refused.reply()[0] == TOO_MANY_CONNECTIONS
        refused.close()
    finally:
        for client in clients:
            client.close()


def test_trusted_mta_is_not_held_to_the_per_ip_cap_but_the_total_cap_holds(
    store: Store, listen: Callable[..., int], caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 15.4: Postfix flushing a backlog opens up to 20 LMTP connections from
    # 127.0.0.1; a per-IP cap of 10 answered half of them 421 (300 s backoff).
    port = listen(protocol="lmtp", max_connections=31, max_connections_per_ip=10,
                  trusted_peers=("127.0.0.1/32",), reserved_connections=0)
    caplog.set_level(logging.INFO, logger="mailticket.smtp")
    mta: list[RawClient] = []
    strangers: list[RawClient] = []
    try:
        for _ in range(20):
            mta.append(RawClient(port, source_ip="127.0.0.1"))
            assert mta[-1].reply()[0] == GREETING
        # A stranger still has the per-IP cap of 10.
        for _ in range(10):
            strangers.append(RawClient(port, source_ip="127.0.0.2"))
            assert strangers[-1].reply()[0] == GREETING
        refused = RawClient(port, source_ip="127.0.0.2")
        assert refused.reply()[0] == TOO_MANY_CONNECTIONS
        refused.close()
        # The MTA takes the last slot; at 31 open the total cap holds for it too.
        mta.append(RawClient(port, source_ip="127.0.0.1"))
        assert mta[-1].reply()[0] == GREETING
        refused = RawClient(port, source_ip="127.0.0.1")
        assert refused.reply()[0] == TOO_MANY_CONNECTIONS
        refused.close()
        # Every one of the MTA's 21 sessions delivers.
        for n, client in enumerate(mta):
            for line in (b"LHLO mx.example\r\n", f"MAIL FROM:<{SENDER}>\r\n".encode(),
                         f"RCPT TO:<{SUPPORT[0]}>\r\n".encode()):
                client.send(line)
                assert client.reply()[0] == OK
            client.send(b"DATA\r\n")
            assert client.reply()[0] == START_INPUT
            client.send(message(f"backlog {n}") + b".\r\n")
            assert client.reply()[0] == OK
    finally:
        for client in mta + strangers:
            client.close()
    assert len(store.rows()) == 21
    reasons = [
        r.reason  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "smtp refusal" and r.code == "421"  # type: ignore[attr-defined]
    ]
    assert reasons == ["too many connections from this IP", "too many connections in total"]


# --- LMTP ----------------------------------------------------------------------


def test_lmtp_answers_once_per_recipient(store: Store, listen: Callable[..., int]) -> None:
    port = listen(protocol="lmtp")
    with smtplib.LMTP("127.0.0.1", port, timeout=5) as client:
        assert client.ehlo()[0] == OK  # smtplib.LMTP sends LHLO
        client.mail(SENDER)
        assert client.rcpt("support@example.com") == (OK, b"OK")
        assert client.rcpt("nobody@example.com")[0] == RECIPIENT_REFUSED
        assert client.rcpt("help@example.org") == (OK, b"OK")
        first = client.data(message())
        second = client.getreply()
    [row] = store.rows()
    assert first == second == (OK, f"{QUEUED_PREFIX}{row['id']}".encode())
    assert row["source"] == "lmtp"
    assert json.loads(row["rcpt_tos"]) == ["support@example.com", "help@example.org"]


def test_lmtp_write_failure_is_451_for_every_recipient(
    store: Store, listen: Callable[..., int]
) -> None:
    port = listen(protocol="lmtp")
    conn = sqlite3.connect(store.path)
    conn.execute("DROP TABLE spool")
    conn.commit()
    conn.close()
    with smtplib.LMTP("127.0.0.1", port, timeout=5) as client:
        client.ehlo()
        client.mail(SENDER)
        client.rcpt("support@example.com")
        client.rcpt("help@example.org")
        first = client.data(message())
        second = client.getreply()
    assert first == second == (TEMPFAIL, b"4.3.0 Temporary failure, please retry")


# --- submission (engineers' SMTP AUTH) ----------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _engineer_authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"pa55"
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


def test_submission_requires_tls_and_records_the_auth_user(
    store: Store, listen: Callable[..., int], tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    port = listen(
        submission=True, tls_cert=cert, tls_key=key, authenticator=_engineer_authenticator
    )
    with smtp_client(port) as client:
        assert "auth" not in client.esmtp_features  # never before TLS
        assert client.mail(SENDER)[0] == 530
        client.starttls(context=ssl.create_default_context(cafile=str(cert)))
        client.ehlo("client.example")
        assert client.mail(SENDER)[0] == 530  # TLS alone is not enough: AUTH first
        client.rset()
        client.login("anna@example.com", "pa55")
        client.sendmail("anna@example.com", [SUPPORT[0]], message())
    [row] = store.rows()
    assert (row["source"], row["auth_user"]) == ("submission", "anna@example.com")


def test_failed_tls_handshake_closes_the_session_and_frees_its_slot(
    listen: Callable[..., int], tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    port = listen(tls_cert=cert, tls_key=key, max_connections_per_ip=1)
    client = RawClient(port)
    try:
        assert client.reply()[0] == GREETING
        client.send(b"EHLO client.example\r\n")
        assert client.reply() == (OK, "HELP")  # the last EHLO line
        client.send(b"STARTTLS\r\n")
        assert client.reply() == (GREETING, "Ready to start TLS")
        client.send(b"this is not a TLS ClientHello\r\n" * 4)
        assert client.closed_by_server()
    finally:
        client.close()
    assert _greeted_within(port, seconds=2.0)


# --- figures -----------------------------------------------------------------


def test_accept_latency_for_200_sequential_messages(
    store: Store, listen: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    port = listen()
    latencies: list[float] = []
    with smtp_client(port) as client:
        for i in range(200):
            started = time.perf_counter()
            client.sendmail(SENDER, [SUPPORT[0]], message(subject=f"n{i}"))
            latencies.append((time.perf_counter() - started) * 1000)
    assert len(store.rows()) == 200
    cuts = statistics.quantiles(latencies, n=100)
    with capsys.disabled():
        print(
            f"\nSMTP accept latency, 200 sequential messages on one connection "
            f"(SQLite, synchronous=FULL): p50 {cuts[49]:.2f} ms, p99 {cuts[98]:.2f} ms"
        )


# --- group commit ----------------------------------------------------------------


def _send_concurrently(
    port: int, count: int, before_data: Callable[[], None] | None = None
) -> list[tuple[int, bytes]]:
    """``count`` smtplib sessions, one mail each, whose DATA all arrive together.

    Every session first has MAIL and RCPT accepted; then each sends DATA and
    its body, and ``before_data`` (if given) runs once all bodies are on the
    wire, before anyone reads the final reply.
    """
    clients = [smtp_client(port) for _ in range(count)]
    for client in clients:
        assert client.mail(SENDER) == (OK, b"OK")
        assert client.rcpt(SUPPORT[0]) == (OK, b"OK")
    sent = threading.Barrier(count + 1)
    replies: list[tuple[int, bytes]] = [(0, b"")] * count

    def session(i: int) -> None:
        client = clients[i]
        client.putcmd("data")
        assert client.getreply()[0] == START_INPUT
        client.send(message(subject=f"parallel {i}") + b".\r\n")
        sent.wait()
        replies[i] = client.getreply()

    threads = [threading.Thread(target=session, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    sent.wait()
    if before_data is not None:
        before_data()
    for thread in threads:
        thread.join(10)
    for client in clients:
        client.close()
    return replies


def test_parallel_sessions_share_commits_and_each_gets_its_own_row(
    store: Store, listen: Callable[..., int]
) -> None:
    port = listen(max_connections=60, max_connections_per_ip=60)
    commits: list[float] = []
    event.listen(store.engine, "commit", lambda conn: commits.append(time.monotonic()))
    blocker = sqlite3.connect(store.path, isolation_level=None)

    def release_the_database() -> None:
        # Every body is on the wire; give the listener a moment to read them all,
        # so they queue behind the first (blocked) commit.
        time.sleep(0.5)
        blocker.execute("ROLLBACK")

    try:
        blocker.execute("BEGIN IMMEDIATE")
        replies = _send_concurrently(port, 50, release_the_database)
    finally:
        blocker.close()
    assert [code for code, _ in replies] == [OK] * 50
    ids = [queued_id(text) for _, text in replies]
    rows = {row["id"]: row for row in store.rows()}
    assert sorted(ids) == sorted(rows) and len(set(ids)) == 50
    for i, spool_id in enumerate(ids):
        assert rows[spool_id]["raw"] == message(subject=f"parallel {i}")
        assert rows[spool_id]["state"] == "queued"
    # The first mail's transaction waited for the lock; the other 49 then went
    # into the next commit together instead of one fsync each.
    assert len(commits) <= 3


def test_a_failed_commit_is_451_for_every_mail_of_the_batch(
    store: Store, listen: Callable[..., int]
) -> None:
    short_busy_timeout(store.engine, 300)
    port = listen(max_connections_per_ip=20)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        replies = _send_concurrently(port, 10)
        assert store.rows() == []
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert replies == [(TEMPFAIL, b"4.3.0 Temporary failure, please retry")] * 10
    # The database is free again: the next mail goes through.
    with smtp_client(port) as client:
        client.sendmail(SENDER, [SUPPORT[0]], message())
    assert len(store.rows()) == 1


# --- metrics ---------------------------------------------------------------------


def test_received_and_refused_mail_is_counted_on_the_metrics_endpoint(
    store: Store, listen: Callable[..., int]
) -> None:
    metrics = Metrics()
    port = listen(metrics=metrics, max_connections_per_ip=1, trusted_peers=())
    server = start_metrics_server("127.0.0.1", 0, make_sessionmaker(store.engine), metrics)
    try:
        with smtp_client(port) as client:
            client.sendmail(SENDER, [SUPPORT[0]], message())
            client.sendmail(SENDER, [SUPPORT[1]], message(subject="second"))
            client.mail(SENDER)
            assert client.rcpt("stranger@example.net")[0] == RECIPIENT_REFUSED
            client.rset()
            client.mail(SENDER)
            client.rcpt(SUPPORT[0])
            assert client.data((b"x" * 98 + b"\r\n") * (MAX_SIZE // 100 + 1))[0] == TOO_BIG
            extra = RawClient(port)  # over the per-IP cap: 421 before the greeting
            assert extra.reply()[0] == TOO_MANY_CONNECTIONS
            extra.close()
        lines = scrape_metrics(server.port)
    finally:
        server.close()
    assert 'mailticket_mail_received_total{source="smtp"} 2.0' in lines
    assert 'mailticket_mail_rejected_total{reason="550_recipient"} 1.0' in lines
    assert 'mailticket_mail_rejected_total{reason="552_too_large"} 1.0' in lines
    assert 'mailticket_mail_rejected_total{reason="421_too_many_connections"} 1.0' in lines
    assert 'mailticket_queue_depth{queue="spool",state="queued"} 2.0' in lines
    assert len(store.rows()) == 2


# --- the bulk DATA reader behaves exactly like aiosmtpd's own -------------------------


class _Capture:
    """Handler of the reference server: keeps every body aiosmtpd hands over."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.bodies.append(envelope.original_content)
        return "250 OK"


def _transcript(port: int, pieces: list[bytes]) -> list[int]:
    """Reply codes for one session: envelope, DATA, then ``pieces`` sent apart, then QUIT."""
    client = RawClient(port)
    codes = [client.reply()[0]]
    try:
        client.send(b"EHLO client.example\r\n")
        codes.append(client.reply()[0])
        client.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{SUPPORT[0]}>\r\nDATA\r\n".encode())
        codes += [client.reply()[0] for _ in range(3)]
        for piece in pieces:
            client.send(piece)
            time.sleep(0.002)
        client.send(b"QUIT\r\n")
        while True:
            try:
                code, _ = client.reply()
            except (ConnectionError, TimeoutError):
                break
            codes.append(code)
            if code == CLOSING:
                break
    finally:
        client.close()
    return codes


def _data_cases() -> list[list[bytes]]:
    end = b"\r\n.\r\n"
    line = b"y" * 98 + b"\r\n"
    fill = line * (MAX_SIZE // len(line))  # 9,900 octets
    cases: list[list[bytes]] = [
        [b".\r\n"],
        [b"\r\n.\r\n"],
        [b"..\r\n.\r\n"],
        [b".a\r\n..b\r\n...\r\nc.\r\n.d\r\n.\r\n"],
        [b"a\n.\nb\r.\rc\r\n.\nd\n.\r\ne\r\n.\r\n"],  # bare LF/CR dots end nothing
        [b"a\r\n.\rb\r\n.\r\n"],
        [b"a", end, b"MAIL FROM:<x@example.net>\r\n"],  # pipelined after the end
        [b"\r\n" * 5 + b".\r\n"],
        [b"\x00\xff\x80 8bit\r\n.\r\n"],
        [b"x" * 999 + end],
        [b"x" * 1000 + end],
        [b"x" * 1001 + end],
        [b"x" * 1002 + end],
        [b"." + b"x" * 999 + end],
        [b"a\r\n" + b"x" * 5000 + b"\r\nb" + end],
        [b"a" * 1500 + b"\r" + b"\n" * 3 + end],
        [fill[:-2] + end],  # exactly at the size limit, then over it
        [fill + b"z" * 98 + end],
        [fill + b"z" * 99 + end],
        [fill[:-300] + b"z" * 1000 + end],  # a long line before the limit
        [fill + b"z" * 1000 + end],  # a long line across the limit
        [fill[:-100] + b"z" * 1001 + end],
        [fill[:-100] + b"z" * 1002 + end],
        [fill + line * 3 + b"z" * 2000 + end],  # a long line after the limit
        [fill * 3 + end],
        # The end of data arriving in pieces, split at every point of CRLF . CRLF.
        [b"a\r", b"\n.\r\n"],
        [b"a\r\n", b".\r\n"],
        [b"a\r\n.", b"\r\n"],
        [b"a\r\n.\r", b"\n"],
        [b".", b"\r\n"],
        [b".\r", b"\nb\r\n.\r\n"],
        [b"a\r\n", b".", b"b\r\n", b".", b"\r", b"\n"],
        [b"x" * 600, b"x" * 600, b"\r\n.\r\n"],
    ]
    rng = random.Random(9)
    tokens = [b"a", b".", b"\r", b"\n", b"\r\n", b"..", b"\r\n.", b"x" * 400]
    for _ in range(15):
        body = b"".join(rng.choice(tokens) for _ in range(rng.randint(0, 12)))
        cut = rng.randint(0, len(body))
        cases.append([body[:cut], body[cut:] + end])
    return cases


def test_data_is_split_refused_and_unstuffed_exactly_as_aiosmtpd_does(
    store: Store, listen: Callable[..., int], loop_thread: LoopThread
) -> None:
    ours = listen()
    capture = _Capture()

    async def reference() -> asyncio.base_events.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: SMTP(capture, data_size_limit=MAX_SIZE, hostname="ref.test"), "127.0.0.1", 0
        )

    server = loop_thread.run(reference())
    theirs = server.sockets[0].getsockname()[1]
    try:
        for pieces in _data_cases():
            seen = len(capture.bodies)
            rows_before = len(store.rows())
            expected = _transcript(theirs, pieces)
            got = _transcript(ours, pieces)
            assert got == expected, pieces
            stored = [row["raw"] for row in store.rows()[rows_before:]]
            assert stored == capture.bodies[seen:], pieces
    finally:
        server.close()
    assert len(capture.bodies) > 20  # most cases delivered something
