"""Bounces over the real listener (issue 7): VERP matching, forged bounces, suppression.

A bounce counts only when it reaches a VERP address with a valid MAC; it is
matched to the outbox row and ticket, recorded as a delivery failure the
engineer sees in the ticket's audit log, and three permanent failures stop
mail to the address until an admin runs ``mailticket suppression clear``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from daemon_proc import free_port, write_config
from hostile_kit import (
    ANNA,
    CUSTOMER,
    ENGINEERS,
    SUPPORT,
    ack_id,
    b64,
    dsn,
    make_stack,
    open_ticket,
    outcomes,
    raw_mail,
    recipients,
)
from sqlalchemy import select
from stack import Stack
from support.configs import contracts
from support.mails import build, new_id
from support.smtp_sink import SmtpSink

from mailticket.cli import main as cli_main
from mailticket.model import Contract
from mailticket.outbound import suppression
from mailticket.store.db import transaction
from mailticket.store.schema import (
    AddressSuppression,
    DeliveryFailure,
    OutboxItem,
)


def test_forged_bounces_with_a_wrong_verp_mac_count_for_nothing(stack: Stack) -> None:
    open_ticket(stack)
    before = len(stack.sink.messages)
    for rcpt in ("support+b-1-aaaaaaaaaaaaaaaa@provider.example", SUPPORT) * 5:
        stack.send(dsn(rcpt), mail_from="", rcpt=(rcpt,))
    stack.settle()
    assert len(stack.sink.messages) == before
    assert outcomes(stack)[1:] == ["bounce_unmatched"] * 10
    with transaction(stack.factory) as s:
        assert s.scalars(select(DeliveryFailure)).all() == []
        assert not suppression.is_suppressed(s, CUSTOMER)


def test_bounce_storm_is_never_answered_and_suppresses_after_the_threshold(stack: Stack) -> None:
    verps = [open_ticket(stack, f"Вопрос {i}")[1].mail_from for i in range(3)]
    before = len(stack.sink.messages)
    forged = "support+b-2-aaaaaaaaaaaaaaaa@provider.example"
    for i in range(100):
        rcpt = verps[i % 3] if i % 10 == 0 else forged
        stack.send(dsn(rcpt), mail_from="", rcpt=(rcpt,))
    stack.settle(60)
    assert len(stack.sink.messages) == before
    results = outcomes(stack)[3:]
    assert (results.count("bounce"), results.count("bounce_unmatched")) == (10, 90)
    with transaction(stack.factory) as s:
        failures = s.scalars(select(DeliveryFailure)).all()
        row = s.get(AddressSuppression, CUSTOMER)
        assert row is not None
        assert sorted(f.outbox_id for f in failures) == sorted(
            {f.outbox_id for f in failures})
        assert (len(failures), row.permanent_failures) == (3, 3)
        assert row.suppressed_at is not None and "5.1.1" in row.reason

    # Suppressed: a new request opens a ticket and tells the engineers, but sends no ack.
    sent = stack.deliver(build(from_=CUSTOMER, subject="Ещё вопрос"), mail_from=CUSTOMER)
    assert recipients(sent) == ENGINEERS
    # An admin clears the address; mail flows again.
    with transaction(stack.factory) as s:
        assert suppression.clear(s, CUSTOMER, datetime.now(UTC))
    sent = stack.deliver(build(from_=CUSTOMER, subject="И ещё"), mail_from=CUSTOMER)
    assert recipients(sent) == sorted([[CUSTOMER], *ENGINEERS])


def test_soft_bounces_are_recorded_but_never_suppress(stack: Stack) -> None:
    verps = [open_ticket(stack, f"Вопрос {i}")[1].mail_from for i in range(3)]
    for verp in verps:
        stack.send(dsn(verp, status="4.2.2", action="delayed"), mail_from="", rcpt=(verp,))
    stack.settle()
    with transaction(stack.factory) as s:
        failures = s.scalars(select(DeliveryFailure)).all()
        assert [f.permanent for f in failures] == [False] * 3
        assert not suppression.is_suppressed(s, CUSTOMER)


def test_bounce_naming_an_address_we_never_mailed_suppresses_nobody(stack: Stack) -> None:
    verps = [open_ticket(stack, f"Вопрос {i}")[1].mail_from for i in range(3)]
    for verp in verps:
        stack.send(dsn(verp, recipient=ANNA), mail_from="", rcpt=(verp,))
    stack.settle()
    with transaction(stack.factory) as s:
        assert not suppression.is_suppressed(s, ANNA)
        # The one-recipient row still had a failure: its own recipient's.
        assert {f.address for f in s.scalars(select(DeliveryFailure))} == {CUSTOMER}


# --- non-standard bounces --------------------------------------------------------

QMAIL = """Hi. This is the qmail-send program at mx.acme.example.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<ivan@acme.example>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Subject: [#MT-1] Принтер не печатает
"""
EXIM = """This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  ivan@acme.example
    SMTP error from remote mail server after RCPT TO:<ivan@acme.example>:
    550 5.1.1 User unknown
"""
EXCHANGE_RU = """Не удается доставить сообщение следующим получателям или группам:

Иван Петров
Адрес электронной почты не найден. Проверьте адрес получателя и повторите попытку.
"""
NON_STANDARD = {
    "qmail": ("MAILER-DAEMON@mx.acme.example", "failure notice", QMAIL, []),
    "exim": ("Mail Delivery System <Mailer-Daemon@mx.acme.example>",
             "Mail delivery failed: returning message to sender", EXIM,
             ["X-Failed-Recipients: ivan@acme.example", "Auto-Submitted: auto-replied"]),
    # Readable by no detector: VERP names a one-recipient mail, so that mail failed.
    "exchange-ru-text-only": ("Microsoft Outlook <MicrosoftExchange329e71ec88ae@acme.example>",
                              "=?UTF-8?B?" + b64("Не удается доставить: [#MT-1] Принтер")
                              + "?=", EXCHANGE_RU, []),
}


@pytest.mark.parametrize("kind", list(NON_STANDARD))
def test_non_standard_bounce_is_matched_to_its_outbox_row_and_shown_on_the_ticket(
    stack: Stack, kind: str
) -> None:
    ticket, ack = open_ticket(stack)
    sender, subject, body, extra = NON_STANDARD[kind]
    verp = ack.mail_from
    sent = stack.deliver(raw_mail([f"From: {sender}", f"To: {verp}", f"Subject: {subject}",
                                   f"Message-ID: <{new_id('mx.acme.example')}>", *extra], body),
                         mail_from="", rcpt=(verp,))
    assert sent == [] and outcomes(stack)[-1] == "bounce"
    assert len(stack.tickets()) == 1
    with transaction(stack.factory) as s:
        ack_row = s.scalars(select(OutboxItem).where(
            OutboxItem.message_id == ack_id(ack))).one()
        [failure] = s.scalars(select(DeliveryFailure)).all()
        assert (failure.address, failure.source, failure.permanent, failure.outbox_id,
                failure.ticket_id) == (CUSTOMER, "bounce", True, ack_row.id, ticket.id)
    event = stack.audit(ticket.id)[-1]
    assert (event.actor, event.action) == ("bounce", "delivery_failed")
    assert event.detail["outbox_id"] == ack_row.id and CUSTOMER in event.detail["recipients"]


# --- the relay's own refusals and the admin's command ------------------------------

DEAD = "gone@reject.invalid"


@pytest.fixture
def dead_stack(sqlite_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack with a contract whose domain the sink refuses: 550 5.1.1 at RCPT, every time."""
    dead = Contract(id="dead", name="Dead Co", sla_plan="standard", domains=("reject.invalid",))
    with SmtpSink() as sink:
        s = make_stack(tmp_path, sqlite_url, sink, contracts={**contracts(), "dead": dead})
        try:
            yield s
        finally:
            s.close()


def run_cli(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    """The ``mailticket`` command in this process (same code path, no interpreter start-up)."""
    capsys.readouterr()
    code = cli_main(["-c", str(config), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_relay_refusing_a_dead_mailbox_suppresses_it_until_an_admin_clears_it(
    dead_stack: Stack, sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = dead_stack
    config = write_config(tmp_path, port=free_port(), db_url=sqlite_url)
    for i in range(3):
        # Each new request gets an ack, which the relay refuses at RCPT.
        sent = stack.deliver(build(from_=DEAD, subject=f"Вопрос {i}"), mail_from=DEAD)
        assert recipients(sent) == ENGINEERS
    with transaction(stack.factory) as s:
        assert [(f.source, f.permanent) for f in suppression.failures(s, DEAD)] == [
            ("relay", True)] * 3
        assert suppression.is_suppressed(s, DEAD)
    with transaction(stack.factory) as s:
        acks_tried = s.scalars(select(OutboxItem.state).where(OutboxItem.kind == "ack")).all()
    assert acks_tried == ["failed"] * 3

    listed = json.loads(run_cli(capsys, config, "suppression", "list", "--json")[1])
    assert [(r["address"], r["permanent_failures"], r["active"]) for r in listed] == [
        (DEAD, 3, True)]
    assert "550 5.1.1 <gone@reject.invalid>: no such user" in listed[0]["reason"]
    shown = run_cli(capsys, config, "suppression", "show", DEAD)[1].splitlines()
    assert shown[0] == f"{DEAD}: suppressed" and len(shown) == 4

    # Suppressed: the next request still opens a ticket, but no ack is even tried.
    sent = stack.deliver(build(from_=DEAD, subject="Ещё вопрос"), mail_from=DEAD)
    assert recipients(sent) == ENGINEERS
    with transaction(stack.factory) as s:
        assert len(s.scalars(select(OutboxItem).where(OutboxItem.kind == "ack")).all()) == 3
    assert len(stack.tickets()) == 4

    assert run_cli(capsys, config, "suppression", "clear", DEAD) == (
        0, f"cleared {DEAD}: mail to it goes out again\n", "")
    assert run_cli(capsys, config, "suppression", "clear", DEAD) == (
        4, "", f"mailticket: {DEAD} is not suppressed\n")
    assert json.loads(run_cli(capsys, config, "suppression", "list", "--json")[1]) == []
    assert [e.action for e in stack.audit() if e.ticket_id is None][-1] == "suppression_cleared"
    # Mail is tried again; one more refusal does not suppress at once (old ones are forgiven).
    stack.deliver(build(from_=DEAD, subject="После очистки"), mail_from=DEAD)
    with transaction(stack.factory) as s:
        assert len(s.scalars(select(OutboxItem).where(OutboxItem.kind == "ack")).all()) == 4
        assert not suppression.is_suppressed(s, DEAD)


def test_relay_policy_refusals_suppress_nobody(stack: Stack) -> None:
    # A misconfigured relay refuses everyone with 5.7.1: that says nothing about mailboxes.
    for i in range(3):
        stack.sink.fail_next(554, "5.7.1 <ivan@acme.example>: Relay access denied", at="rcpt")
        stack.deliver(build(from_=CUSTOMER, subject=f"Вопрос {i}"), mail_from=CUSTOMER)
    with transaction(stack.factory) as s:
        assert s.scalars(select(DeliveryFailure)).all() == []
        assert s.scalars(select(AddressSuppression)).all() == []
        assert s.scalars(select(OutboxItem.state).where(
            OutboxItem.state == "failed")).all() == ["failed"] * 3
    assert [e.action for e in stack.audit()].count("delivery_failed") == 3
