"""Issue 15, points 1 and 3: a bounce read by IMAP is matched, and the outbox row says bounced.

A site that reads support mail only by IMAP gets its DSNs in the same mailbox;
the envelope we know is the account's address, and the VERP address we sent
from survives only in the delivery headers the receiving MTA wrote. Through a
real Dovecot, the real poller and the real worker: the DSN is recorded on the
outbox row (``bounced``, with its status and diagnostic), on the ticket and in
``suppression``; a forged MAC in those headers, or those headers on mail that
came by SMTP (where the envelope is the truth), still count for nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Harness
from sqlalchemy import select
from support.configs import make_config
from support.dovecot import DovecotServer
from support.mails import build, new_id

from mailticket.cli.entry import main
from mailticket.cli.status import collect_status, format_status
from mailticket.config import ImapAccountConfig
from mailticket.intake.imap import ImapPoller
from mailticket.runners.outbox import OutboxDrainer
from mailticket.store.db import transaction
from mailticket.store.schema import (
    AuditEvent,
    DeliveryFailure,
    OutboxItem,
    QueueState,
    SpoolItem,
)

USER, PASSWORD = "helpdesk", "imap-secret"
SUPPORT = "support@provider.example"
CUSTOMER = "ivan@acme.example"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with DovecotServer(users={USER: PASSWORD}) as srv:
        yield srv


@pytest.fixture
def h(sqlite_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(make_config(tmp_path, sqlite_url))
    yield harness
    harness.close()


def account(srv: DovecotServer, folder: str) -> ImapAccountConfig:
    return ImapAccountConfig(name="office", host="127.0.0.1", user=USER, address=SUPPORT,
                             port=srv.port, tls="none", password=PASSWORD, folder=folder,
                             processed_folder=f"{folder}-done", poll_interval=0.2)


def sent_ack(h: Harness) -> OutboxItem:
    """A customer's new ticket, its acknowledgement handed to the relay (here: the maildir)."""
    h.deliver(build(from_=CUSTOMER), mail_from=CUSTOMER)
    assert OutboxDrainer(h.factory, h.config.relay, clock=h.clock).drain_once() >= 1
    [ack] = h.outbox("ack")
    assert ack.state == QueueState.DONE and ack.envelope_from.startswith("support+b-")
    return ack


def dsn(delivery_headers: dict[str, str], *, to: str = SUPPORT) -> bytes:
    """A Postfix-style DSN as an IMAP mailbox holds it: the VERP address only where given."""
    head = "".join(f"{name}: {value}\r\n" for name, value in delivery_headers.items())
    return (
        f"Return-Path: <>\r\n{head}"
        "From: MAILER-DAEMON@mx.acme.example (Mail Delivery System)\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{new_id('mx.acme.example')}>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.acme.example\r\n\r\n"
        f"Final-Recipient: rfc822; {CUSTOMER}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <ivan@acme.example>: user unknown\r\n\r\n--B--\r\n"
    ).encode()


def fetch_and_process(h: Harness, srv: DovecotServer, folder: str, raw: bytes) -> str | None:
    """Append to the mailbox, poll it once, run the worker; the spool row's outcome."""
    srv.append(USER, folder, raw)
    poller = ImapPoller(account(srv, folder), h.factory, clock=h.clock)
    try:
        assert poller.poll_once() == 1
    finally:
        poller.close()
    h.worker.drain()
    [row] = [r for r in _spool(h) if r.source == "imap:office"]
    assert row.rcpt_tos == [SUPPORT]  # the envelope names only the account
    return row.outcome


def _spool(h: Harness) -> list[SpoolItem]:
    with transaction(h.factory) as s:
        return list(s.scalars(select(SpoolItem).order_by(SpoolItem.id)))


@pytest.mark.parametrize("header", ["Delivered-To", "X-Original-To", "Envelope-To",
                                    "X-Envelope-To"])
def test_imap_bounce_with_verp_only_in_a_delivery_header_is_recorded_as_bounced(
    h: Harness, dovecot: DovecotServer, header: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ack = sent_ack(h)
    folder = f"b-{header.lower()}"
    # The account's own address first, as an MTA delivering through an alias writes it.
    headers = {"Delivered-To": SUPPORT} if header != "Delivered-To" else {}
    headers[header] = f"<{ack.envelope_from}>" if header == "X-Envelope-To" else ack.envelope_from
    h.clock.advance(minutes=3)
    assert fetch_and_process(h, dovecot, folder, dsn(headers)) == "bounce"

    with transaction(h.factory) as s:
        row = s.get(OutboxItem, ack.id)
        assert row is not None
        assert (row.state, row.dsn_status) == (QueueState.BOUNCED, "5.1.1")
        assert row.dsn_diagnostic == "smtp; 550 5.1.1 <ivan@acme.example>: user unknown"
        assert row.last_error is not None and row.last_error.startswith("bounced: 5.1.1")
        [failure] = s.scalars(select(DeliveryFailure)).all()
        assert (failure.address, failure.source, failure.outbox_id) == (CUSTOMER, "bounce", ack.id)
        [event] = s.scalars(select(AuditEvent).where(AuditEvent.action == "delivery_failed")).all()
        assert event.ticket_id == ack.ticket_id
        assert event.detail["outbox_id"] == ack.id
        assert event.detail["outbox_state"] == "bounced"
        assert CUSTOMER in event.detail["recipients"]

    # `outbox list --state bounced` and `status` show it.
    toml = tmp_path / "cli.toml"
    toml.write_text(f'[database]\nurl = "{h.config.database.url}"\n', encoding="utf-8")
    capsys.readouterr()
    assert main(["outbox", "list", "-c", str(toml), "--state", "bounced", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["state"], listed["dsn_status"]) == (ack.id, "bounced", "5.1.1")
    status = collect_status(h.factory, h.clock.now)
    assert status["outbox"]["bounced"] == 1
    assert status["outbox_failures_24h"]["bounced"] == 1
    text = format_status(status)
    assert "outbox failures in the last 24 h: 0 failed, 1 bounced, 0 waiting for a retry" in text
    assert f"  #{ack.id} bounced ack to {CUSTOMER}" in text
    # An admin who fixed the address sends it again: the row starts clean.
    assert main(["outbox", "retry", "-c", str(toml), str(ack.id)]) == 0
    with transaction(h.factory) as s:
        row = s.get(OutboxItem, ack.id)
        assert row is not None
        assert (row.state, row.dsn_status, row.dsn_diagnostic) == (QueueState.QUEUED, None, None)


def test_imap_bounce_with_a_forged_mac_in_the_delivery_headers_changes_nothing(
    h: Harness, dovecot: DovecotServer
) -> None:
    ack = sent_ack(h)
    forged = ack.envelope_from[:-len("@provider.example") - 4] + "aaaa@provider.example"
    assert forged != ack.envelope_from
    outcome = fetch_and_process(h, dovecot, "b-forged", dsn({"Delivered-To": forged,
                                                            "X-Original-To": forged}))
    assert outcome == "bounce_unmatched"
    with transaction(h.factory) as s:
        row = s.get(OutboxItem, ack.id)
        assert row is not None and (row.state, row.dsn_status) == (QueueState.DONE, None)
        assert s.scalars(select(DeliveryFailure)).all() == []


def test_delivery_headers_on_mail_received_by_smtp_are_not_trusted(h: Harness) -> None:
    """Over SMTP/LMTP the envelope is the truth; a header names nothing we delivered to."""
    ack = sent_ack(h)
    spool_id = h.deliver(dsn({"Delivered-To": ack.envelope_from}), mail_from="",
                         rcpt=(SUPPORT,))
    assert h.spool_row(spool_id).outcome == "bounce_unmatched"
    with transaction(h.factory) as s:
        row = s.get(OutboxItem, ack.id)
        assert row is not None and row.state == QueueState.DONE
