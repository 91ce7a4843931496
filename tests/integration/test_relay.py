"""The outbox drainer over real sockets: a real aiosmtpd sink, real SQLite and PostgreSQL.

Faults are injected through the sink's own control methods (``fail_next``,
``@reject.invalid``, ``on_data``) or by pointing the relay at a closed port;
time moves only through an injected clock, so nothing here sleeps.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support.smtp_sink import Received, SmtpSink, free_port

from mailticket.config import RelayConfig
from mailticket.runners.outbox import OutboxDrainer
from mailticket.store.db import make_engine, make_sessionmaker, transaction
from mailticket.store.schema import AuditEvent, OutboxItem, QueueState, Ticket
from mailticket.store.workqueue import claim

START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
SENDER = "bounces+1.abc@support.example"
CUSTOMER = "alice@customer.example"
RETRY_BASE = 60.0
RETRY_MAX = 600.0


class Clock:
    """A hand-moved clock: the drainer's only source of time in these tests."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def factory(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


def relay_to(sink: SmtpSink, **kw: Any) -> RelayConfig:
    values: dict[str, Any] = dict(
        host=sink.host,
        port=sink.port,
        timeout=5.0,
        max_attempts=3,
        retry_base_seconds=RETRY_BASE,
        retry_max_seconds=RETRY_MAX,
    )
    values.update(kw)
    return RelayConfig(**values)


def compose(n: int, to: str = CUSTOMER) -> tuple[str, bytes]:
    """A small reply with a stable Message-ID; CRLF line ends, as mail.compose makes them."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = "Support <support@support.example>"
    msg["To"] = to
    msg["Subject"] = f"[MT-{n}] Привет"
    message_id = f"<mt-{n}.test@support.example>"
    msg["Message-ID"] = message_id
    msg.set_content(f"Reply number {n}.\nС уважением, поддержка\n")
    return message_id, msg.as_bytes()


def add_row(
    factory: sessionmaker[Session],
    clock: Clock,
    n: int = 1,
    *,
    rcpt_tos: list[Any] | None = None,
    ticket_id: int | None = None,
    envelope_from: str = SENDER,
) -> tuple[int, str, bytes]:
    message_id, raw = compose(n)
    with transaction(factory) as s:
        row = OutboxItem(
            ticket_id=ticket_id,
            kind="reply",
            envelope_from=envelope_from,
            rcpt_tos=rcpt_tos if rcpt_tos is not None else [CUSTOMER],
            message_id=message_id,
            raw=raw,
            next_attempt_at=clock(),
            created_at=clock(),
        )
        s.add(row)
        s.flush()
        return row.id, message_id, raw


def add_ticket(factory: sessionmaker[Session], clock: Clock) -> int:
    with transaction(factory) as s:
        ticket = Ticket(
            subject="VPN down",
            status="new",
            priority="high",
            contract_id=None,
            requester=CUSTOMER,
            created_at=clock(),
            updated_at=clock(),
        )
        s.add(ticket)
        s.flush()
        return ticket.id


def row(factory: sessionmaker[Session], outbox_id: int) -> OutboxItem:
    with factory() as s:
        got = s.get(OutboxItem, outbox_id)
        assert got is not None
        return got


def audits(factory: sessionmaker[Session]) -> list[AuditEvent]:
    with factory() as s:
        return list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def test_delivers_exact_envelope_and_bytes(
    factory: sessionmaker[Session], clock: Clock, sink: SmtpSink
) -> None:
    outbox_id, message_id, raw = add_row(factory, clock, rcpt_tos=[CUSTOMER, "bob@b.example"])
    drainer = OutboxDrainer(factory, relay_to(sink), clock=clock)

    assert drainer.drain_once() == 1

    [got] = sink.wait_for(1)
    assert (got.mail_from, got.rcpt_tos, got.data) == (
        SENDER,
        (CUSTOMER, "bob@b.example"),
        raw,
    )
    assert got.message["Message-ID"] == message_id
    done = row(factory, outbox_id)
    assert (done.state, done.attempts, done.finished_at, done.claim_token, done.last_error) == (
        QueueState.DONE,
        1,
        START,
        None,
        None,
    )
    assert drainer.stats.sent == 1
    assert drainer.last_error is None
    assert drainer.drain_once() == 0


def test_null_sender_is_sent_as_empty_reverse_path(
    factory: sessionmaker[Session], clock: Clock, sink: SmtpSink
) -> None:
    add_row(factory, clock, envelope_from="")

    assert OutboxDrainer(factory, relay_to(sink), clock=clock).drain_once() == 1

    assert sink.wait_for(1)[0].mail_from == "<>"


def test_maildir_mode_writes_a_parsable_file_into_new(
    factory: sessionmaker[Session], clock: Clock, tmp_path: Path
) -> None:
    maildir = tmp_path / "outgoing"
    outbox_id, message_id, raw = add_row(factory, clock, rcpt_tos=[CUSTOMER, "bcc@b.example"])
    drainer = OutboxDrainer(factory, RelayConfig(host="", maildir=maildir), clock=clock)

    assert drainer.drain_once() == 1

    [path] = list((maildir / "new").iterdir())
    assert list((maildir / "tmp").iterdir()) == []
    assert f".outbox{outbox_id}." in path.name and path.name.endswith(".eml")
    data = path.read_bytes()
    envelope = (
        f"Return-Path: <{SENDER}>\r\nX-Original-To: {CUSTOMER}\r\nX-Original-To: bcc@b.example\r\n"
    )
    assert data == envelope.encode() + raw
    parsed = message_from_bytes(data, policy=policy.default)
    assert parsed["Message-ID"] == message_id
    assert parsed["Subject"] == "[MT-1] Привет"
    assert row(factory, outbox_id).state == QueueState.DONE


def test_451_is_retried_with_backoff_then_delivered(
    factory: sessionmaker[Session], clock: Clock, sink: SmtpSink
) -> None:
    outbox_id, _, raw = add_row(factory, clock)
    drainer = OutboxDrainer(factory, relay_to(sink), clock=clock)
    sink.fail_next(451, "4.3.0 try again later")

    assert drainer.drain_once() == 1

    waiting = row(factory, outbox_id)
    assert (waiting.state, waiting.attempts, waiting.next_attempt_at, waiting.last_error) == (
        QueueState.QUEUED,
        1,
        START + timedelta(seconds=RETRY_BASE),
        "451 4.3.0 try again later",
    )
    assert sink.messages == []
    assert drainer.drain_once() == 0  # Not due yet.

    clock.advance(RETRY_BASE)
    assert drainer.drain_once() == 1

    [got] = sink.wait_for(1)
    assert got.data == raw
    done = row(factory, outbox_id)
    assert (done.state, done.attempts) == (QueueState.DONE, 2)
    assert drainer.stats.retried == 1 and drainer.stats.sent == 1
    assert audits(factory) == []


def test_550_at_data_fails_at_once_with_an_audit_event(
    factory: sessionmaker[Session], clock: Clock, sink: SmtpSink
) -> None:
    ticket_id = add_ticket(factory, clock)
    outbox_id, message_id, _ = add_row(factory, clock, ticket_id=ticket_id)
    sink.fail_next(550, "5.6.0 content rejected")
    drainer = OutboxDrainer(factory, relay_to(sink), clock=clock)

    assert drainer.drain_once() == 1

    failed = row(factory, outbox_id)
    assert (failed.state, failed.attempts, failed.last_error, failed.finished_at) == (
        QueueState.FAILED,
        1,
        "550 5.6.0 content rejected",
        START,
    )
    [event] = audits(factory)
    assert (event.ticket_id, event.actor, event.action, event.at) == (
        ticket_id,
        "relay",
        "delivery_failed",
        START,
    )
    assert event.detail == {
        "outbox_id": outbox_id,
        "message_id": message_id,
        "recipients": {CUSTOMER: "550 5.6.0 content rejected"},
    }
    assert sink.messages == []
    assert drainer.stats.failed == 1
    assert drainer.last_error == "550 5.6.0 content rejected"


def test_mixed_recipients_send_to_the_good_and_audit_the_bad(
    factory: sessionmaker[Session], clock: Clock, sink: SmtpSink
) -> None:
    ticket_id = add_ticket(factory, clock)
    bad = "ghost@reject.invalid"
    outbox_id, _, raw = add_row(factory, clock, rcpt_tos=[CUSTOMER, bad], ticket_id=ticket_id)

    assert OutboxDrainer(factory, relay_to(sink), clock=clock).drain_once() == 1

    [got] = sink.wait_for(1)
    assert (got.rcpt_tos, got.data) == ((CUSTOMER,), raw)
    reply = f"550 5.1.1 <{bad}>: no such user"
    done = row(factory, outbox_id)
    assert (done.state, done.last_error) == (QueueState.DONE, f"{bad}: {reply}")
    [event] = audits(factory)
    assert (event.ticket_id, event.action) == (ticket_id, "delivery_failed")
    assert event.detail["recipients"] == {bad: reply}


def test_all_recipients_refused_is_a_permanent_failure(
    factory: sessionmaker[Session], clock: Clock, sink: SmtpSink
) -> None:
    outbox_id, _, _ = add_row(factory, clock, rcpt_tos=["a@reject.invalid"])

    assert OutboxDrainer(factory, relay_to(sink), clock=clock).drain_once() == 1

    failed = row(factory, outbox_id)
    assert (failed.state, failed.last_error) == (
        QueueState.FAILED,
        "550 5.1.1 <a@reject.invalid>: no such user",
    )
    assert sink.data_commands == 0
    # No ticket on the row, so nothing to audit.
    assert audits(factory) == []


def test_a_4xx_recipient_is_retried_alone(
    factory: sessionmaker[Session], clock: Clock, sink: SmtpSink
) -> None:
    outbox_id, _, raw = add_row(factory, clock, rcpt_tos=["full@b.example", CUSTOMER])
    sink.fail_next(452, "4.2.2 mailbox full", at="rcpt")
    drainer = OutboxDrainer(factory, relay_to(sink), clock=clock)

    assert drainer.drain_once() == 1

    assert sink.wait_for(1)[0].rcpt_tos == (CUSTOMER,)
    waiting = row(factory, outbox_id)
    assert (waiting.state, waiting.rcpt_tos, waiting.last_error) == (
        QueueState.QUEUED,
        ["full@b.example"],
        "full@b.example: 452 4.2.2 mailbox full",
    )

    clock.advance(RETRY_BASE)
    assert drainer.drain_once() == 1

    second = sink.wait_for(2)[1]
    assert (second.rcpt_tos, second.data) == (("full@b.example",), raw)
    assert row(factory, outbox_id).state == QueueState.DONE


def test_relay_down_is_retried(factory: sessionmaker[Session], clock: Clock) -> None:
    outbox_id, _, _ = add_row(factory, clock)
    relay = RelayConfig(host="127.0.0.1", port=free_port(), timeout=2.0)
    drainer = OutboxDrainer(factory, relay, clock=clock)

    assert drainer.drain_once() == 1

    waiting = row(factory, outbox_id)
    assert (waiting.state, waiting.attempts) == (QueueState.QUEUED, 1)
    assert waiting.next_attempt_at == START + timedelta(seconds=relay.retry_base_seconds)
    assert waiting.last_error is not None
    assert waiting.last_error.startswith(f"relay 127.0.0.1:{relay.port}: ConnectionRefusedError")
    assert drainer.last_error == waiting.last_error


def test_max_attempts_then_failed(factory: sessionmaker[Session], clock: Clock) -> None:
    ticket_id = add_ticket(factory, clock)
    outbox_id, _, _ = add_row(factory, clock, ticket_id=ticket_id)
    relay = RelayConfig(
        host="127.0.0.1",
        port=free_port(),
        max_attempts=3,
        retry_base_seconds=60,
        retry_max_seconds=100,
    )
    drainer = OutboxDrainer(factory, relay, clock=clock)

    delays = []
    for _ in range(2):
        before = clock()
        assert drainer.drain_once() == 1
        due = row(factory, outbox_id).next_attempt_at
        delays.append((due - before).total_seconds())
        clock.now = due
    assert delays == [60.0, 100.0]  # Doubling, capped at retry_max_seconds.

    assert drainer.drain_once() == 1

    failed = row(factory, outbox_id)
    assert (failed.state, failed.attempts) == (QueueState.FAILED, 3)
    assert failed.last_error is not None
    assert failed.last_error.startswith("gave up after 3 attempts: relay 127.0.0.1:")
    [event] = audits(factory)
    assert event.detail["outbox_id"] == outbox_id
    assert list(event.detail["recipients"]) == [CUSTOMER]
    assert drainer.drain_once() == 0


def test_row_that_never_recorded_a_result_is_not_sent_again(
    factory: sessionmaker[Session], clock: Clock, sink: SmtpSink
) -> None:
    # Three earlier claims whose process died mid-send (lease expired, attempts used).
    outbox_id, _, _ = add_row(factory, clock)
    with transaction(factory) as s:
        stuck = s.get(OutboxItem, outbox_id)
        assert stuck is not None
        stuck.state, stuck.attempts = QueueState.CLAIMED, 3
        stuck.claim_token, stuck.lease_until = "dead", START - timedelta(seconds=1)

    assert OutboxDrainer(factory, relay_to(sink), clock=clock).drain_once() == 1

    failed = row(factory, outbox_id)
    assert (failed.state, failed.attempts, failed.last_error) == (
        QueueState.FAILED,
        4,
        "no result recorded after 3 attempts",
    )
    assert sink.data_commands == 0


def test_lost_lease_result_is_not_recorded(
    factory: sessionmaker[Session], clock: Clock, sink: SmtpSink
) -> None:
    outbox_id, _, _ = add_row(factory, clock)
    lease = 30.0
    drainer = OutboxDrainer(factory, relay_to(sink), clock=clock, lease_seconds=lease)
    tokens: list[str] = []

    def steal(_: Received) -> None:
        # While our drainer waits for the 250, its lease runs out and another
        # instance claims the row.
        clock.advance(lease + 1)
        with transaction(factory) as s:
            other = claim(s, OutboxItem, clock(), lease)
            assert other is not None and other.id == outbox_id
            tokens.append(other.token)

    sink.on_data(steal)

    assert drainer.drain_once() == 1

    assert sink.hook_errors == [] and len(sink.wait_for(1)) == 1
    current = row(factory, outbox_id)
    assert (current.state, current.claim_token, current.attempts, current.finished_at) == (
        QueueState.CLAIMED,
        tokens[0],
        2,
        None,
    )
    assert drainer.stats.lost_leases == 1 and drainer.stats.sent == 0


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_tls_and_auth(
    factory: sessionmaker[Session], clock: Clock, tls: Literal["starttls", "implicit"]
) -> None:
    with SmtpSink(tls=tls, auth=("relayuser", "s3cret")) as tls_sink:
        outbox_id, _, raw = add_row(factory, clock)
        relay = relay_to(tls_sink, tls=tls, username="relayuser", password="s3cret")
        drainer = OutboxDrainer(factory, relay, clock=clock, tls_context=tls_sink.client_context())

        assert drainer.drain_once() == 1

        [got] = tls_sink.wait_for(1)
        assert (got.tls, got.auth_user, got.data) == (True, "relayuser", raw)
        assert row(factory, outbox_id).state == QueueState.DONE


def test_tls_certificate_is_verified(factory: sessionmaker[Session], clock: Clock) -> None:
    with SmtpSink(tls="starttls") as tls_sink:
        outbox_id, _, _ = add_row(factory, clock)
        # The default context does not trust the sink's self-signed certificate.
        drainer = OutboxDrainer(factory, relay_to(tls_sink, tls="starttls"), clock=clock)

        assert drainer.drain_once() == 1

        waiting = row(factory, outbox_id)
        assert waiting.state == QueueState.QUEUED
        assert waiting.last_error is not None and "CERTIFICATE_VERIFY_FAILED" in waiting.last_error
        assert tls_sink.messages == []


def test_wrong_password_is_temporary(factory: sessionmaker[Session], clock: Clock) -> None:
    with SmtpSink(tls="starttls", auth=("relayuser", "s3cret")) as tls_sink:
        outbox_id, _, _ = add_row(factory, clock)
        relay = relay_to(tls_sink, tls="starttls", username="relayuser", password="wrong")
        drainer = OutboxDrainer(factory, relay, clock=clock, tls_context=tls_sink.client_context())

        assert drainer.drain_once() == 1

        waiting = row(factory, outbox_id)
        assert waiting.state == QueueState.QUEUED
        assert waiting.last_error is not None and "SMTPAuthenticationError" in waiting.last_error


def test_run_survives_a_bad_row_and_stops_on_request(
    factory: sessionmaker[Session], clock: Clock, sink: SmtpSink
) -> None:
    # A recipient that is not a string is a bug upstream; the loop must live on.
    bad_id, _, _ = add_row(factory, clock, 1, rcpt_tos=[42])
    good_id, message_id, _ = add_row(factory, clock, 2)
    drainer = OutboxDrainer(factory, relay_to(sink), clock=clock)
    stop = threading.Event()
    worker = threading.Thread(target=drainer.run, args=(stop,), kwargs={"idle_sleep": 0.01})
    worker.start()
    try:
        [got] = sink.wait_for(1)
    finally:
        stop.set()
        worker.join(5)
    assert not worker.is_alive()
    assert got.message["Message-ID"] == message_id
    bad = row(factory, bad_id)
    assert (bad.state, bad.attempts) == (QueueState.QUEUED, 1)
    assert bad.last_error is not None and bad.last_error.startswith("internal error: ")
    assert row(factory, good_id).state == QueueState.DONE
    assert drainer.stats.crashes == 1


def test_bare_lf_is_sent_with_crlf(
    factory: sessionmaker[Session], clock: Clock, sink: SmtpSink
) -> None:
    outbox_id, _, _ = add_row(factory, clock)
    with transaction(factory) as s:
        item = s.get(OutboxItem, outbox_id)
        assert item is not None
        item.raw = b"Subject: lf\nMessage-ID: <lf@x>\n\nline one\nline two\n"

    assert OutboxDrainer(factory, relay_to(sink), clock=clock).drain_once() == 1

    expected = b"Subject: lf\r\nMessage-ID: <lf@x>\r\n\r\nline one\r\nline two\r\n"
    assert sink.wait_for(1)[0].data == expected


def test_run_survives_a_database_outage(tmp_path: Path, clock: Clock) -> None:
    # An empty database file: every claim fails until someone migrates it.
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    drainer = OutboxDrainer(make_sessionmaker(engine), RelayConfig(), clock=clock)
    stop = threading.Event()
    worker = threading.Thread(target=drainer.run, args=(stop,), kwargs={"idle_sleep": 0.001})
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while drainer.stats.crashes < 2 and time.monotonic() < deadline:
            stop.wait(0.005)
    finally:
        stop.set()
        worker.join(5)
        engine.dispose()
    assert not worker.is_alive()
    assert drainer.stats.crashes >= 2
    assert drainer.last_error is not None
    assert drainer.last_error.startswith("StoreError: database error: OperationalError")


def test_flush_drains_until_empty_or_deadline(
    factory: sessionmaker[Session], clock: Clock, sink: SmtpSink
) -> None:
    for n in range(3):
        add_row(factory, clock, n)
    drainer = OutboxDrainer(factory, relay_to(sink), clock=clock)

    assert drainer.flush(0) == 0
    assert drainer.flush(10) == 3
    assert len(sink.wait_for(3)) == 3


def test_two_drainers_never_send_a_row_twice(db_url: str, clock: Clock, sink: SmtpSink) -> None:
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    try:
        ids = [add_row(factory, clock, n)[1] for n in range(50)]
        drainers = [OutboxDrainer(factory, relay_to(sink), clock=clock) for _ in range(2)]
        start = threading.Barrier(2)
        handled: list[int] = []

        def work(drainer: OutboxDrainer) -> None:
            start.wait()
            handled.append(drainer.drain_once())

        threads = [threading.Thread(target=work, args=(d,)) for d in drainers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)

        got = sink.wait_for(50)
        assert Counter(m.message["Message-ID"] for m in got) == Counter(ids)
        assert sum(handled) == 50
        with factory() as s:
            rows = list(s.scalars(select(OutboxItem)))
        assert {(r.state, r.attempts) for r in rows} == {(QueueState.DONE, 1)}
    finally:
        engine.dispose()


def test_wake_sends_new_mail_at_once_instead_of_after_the_idle_sleep(
    factory: sessionmaker[Session], clock: Clock, sink: SmtpSink
) -> None:
    # Issue 15.9: the ack's way out through Postfix took 0.5 s, the drainer's idle sleep.
    looked = threading.Event()

    def gate(point: str) -> None:
        if point == "outbox.before_claim":
            looked.set()

    drainer = OutboxDrainer(factory, relay_to(sink), clock=clock, gate=gate)
    stop = threading.Event()
    worker = threading.Thread(target=drainer.run, args=(stop,), kwargs={"idle_sleep": 60.0})
    worker.start()
    try:
        # The drainer has looked at the empty outbox and sleeps for a minute.
        assert looked.wait(5)
        _, message_id, _ = add_row(factory, clock)
        drainer.wake()
        [got] = sink.wait_for(1, timeout=5)
        assert got.message["Message-ID"] == message_id
    finally:
        stop.set()
        drainer.wake()
        worker.join(5)
    assert not worker.is_alive()
