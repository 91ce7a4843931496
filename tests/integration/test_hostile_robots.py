"""Robots over the real listener (issue 7): auto-replies, loops and the caps on automatic mail.

RFC 3834 says never to answer a robot; RFC-blind robots are stopped by the
per-recipient daily cap (with per-address overrides). Out-of-office replies
from the common mail systems are kept on the ticket but never reopen it, stop
its SLA clock, or reach the customer as an engineer's answer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hostile_kit import (
    ANNA,
    CUSTOMER,
    SUPPORT,
    Robot,
    ack_id,
    make_stack,
    open_ticket,
    outcomes,
)
from sqlalchemy import select
from stack import Stack
from support.configs import SECRET
from support.mails import build
from support.smtp_sink import Received, SmtpSink

from mailticket.mail.addresses import parse_verp
from mailticket.outbound import caps
from mailticket.store.db import transaction
from mailticket.store.schema import (
    AutoReplyLog,
    OutboxItem,
    Ticket,
)

# --- 4. robots and loops ------------------------------------------------


def test_autoresponder_answering_our_ack_is_stored_and_not_answered(stack: Stack) -> None:
    ticket, ack = open_ticket(stack)
    before = len(stack.sink.messages)
    sent = stack.deliver(
        build(from_=CUSTOMER, subject="Автоответ: Re: [#MT-1] Принтер не печатает",
              body="Я в отпуске до понедельника.",
              in_reply_to=str(ack.message["Message-ID"]).strip("<>"),
              headers={"Auto-Submitted": "auto-replied"}),
        mail_from="")
    assert sent == [] and len(stack.sink.messages) == before
    after = stack.ticket(ticket.id)
    assert [a.kind for a in after.articles] == ["customer", "ack", "auto"]
    assert outcomes(stack)[-1] == "auto"


def test_dumb_autoresponder_loop_is_stopped_by_the_daily_cap(
    sqlite_url: str, tmp_path: Path
) -> None:
    with SmtpSink() as sink:
        stack = make_stack(tmp_path, sqlite_url, sink,
                           mail={"auto_replies_per_recipient_per_day": 5})
        try:
            # A robot without any robot headers that answers every mail with a new one.
            acks = 0
            for round_ in range(10):
                sent = stack.deliver(build(from_=CUSTOMER, subject=f"Thank you ({round_})",
                                           body="I got your mail."), mail_from=CUSTOMER)
                new_acks = [m for m in sent if CUSTOMER in m.rcpt_tos]
                acks += len(new_acks)
                if not new_acks:
                    break
            assert (acks, round_) == (5, 5)
            with transaction(stack.factory) as s:
                logged = s.scalars(select(AutoReplyLog.recipient).where(
                    AutoReplyLog.recipient == CUSTOMER)).all()
            assert len(logged) == 5
        finally:
            stack.close()


@pytest.mark.parametrize(
    ("headers", "mail_from"),
    [
        ({"X-Mailticket-Loop": "mt-test"}, CUSTOMER),
        ({}, SUPPORT),
    ],
    ids=["loop-header", "from-our-address"],
)
def test_our_own_mail_coming_back_is_dropped(stack: Stack, headers: dict[str, str],
                                             mail_from: str) -> None:
    sent = stack.deliver(build(from_=mail_from, headers=headers), mail_from=mail_from)
    assert sent == [] and stack.tickets() == []
    assert outcomes(stack) == ["loop"]


def test_our_message_id_redirected_back_is_a_loop(stack: Stack) -> None:
    _, ack = open_ticket(stack)
    # A forwarding rule resends our ack with the customer's From and our Message-ID.
    our_id = str(ack.message["Message-ID"]).strip("<>")
    sent = stack.deliver(build(from_=CUSTOMER, message_id=our_id, subject="Fwd"),
                         mail_from=CUSTOMER)
    assert sent == []
    assert outcomes(stack)[-1] == "loop"


@pytest.mark.parametrize(
    ("from_", "mail_from", "headers"),
    [
        ("noreply@acme.example", "noreply@acme.example", {}),
        ("news@acme.example", "news@acme.example", {"Precedence": "bulk"}),
        ("list@acme.example", "list@acme.example", {"List-Id": "<it.acme.example>"}),
        (CUSTOMER, "", {}),
        (CUSTOMER, CUSTOMER, {"X-Auto-Response-Suppress": "All"}),
        ("news@acme.example", "news@acme.example", {"Precedence": "junk"}),
        ("list@acme.example", "list@acme.example", {"Precedence": "list"}),
        ("news@acme.example", "news@acme.example",
         {"List-Unsubscribe": "<mailto:unsubscribe@acme.example>"}),
        ("MAILER-DAEMON@acme.example", "", {}),
        ("postmaster@acme.example", "postmaster@acme.example", {}),
        (CUSTOMER, CUSTOMER, {"Auto-Submitted": "auto-generated"}),
    ],
    ids=["noreply", "precedence-bulk", "list-id", "null-sender", "exchange-suppress",
         "precedence-junk", "precedence-list", "list-unsubscribe", "mailer-daemon",
         "postmaster", "auto-submitted"],
)
def test_robots_get_no_answer_and_open_no_ticket(stack: Stack, from_: str, mail_from: str,
                                                 headers: dict[str, str]) -> None:
    sent = stack.deliver(build(from_=from_, headers=headers), mail_from=mail_from)
    assert sent == [] and stack.tickets() == []
    assert outcomes(stack) == ["auto_unthreaded"]


# What the common mail systems put on a vacation notice: (subject prefix, headers).
OUT_OF_OFFICE = {
    "exchange": ("Automatic reply: ", {"Auto-Submitted": "auto-generated",
                                       "X-Auto-Response-Suppress": "All",
                                       "X-MS-Exchange-Inbox-Rules-Loop": CUSTOMER}),
    "gmail": ("Re: ", {"Auto-Submitted": "auto-replied"}),
    "yandex": ("Автоответ: ", {}),
    "mailru": ("Re: ", {"X-Autoreply": "yes"}),
    "zimbra": ("Re: ", {"Auto-Submitted": "auto-replied (zimbra; vacation)"}),
}


def out_of_office(system: str, ours: Received) -> bytes:
    prefix, headers = OUT_OF_OFFICE[system]
    return build(from_=CUSTOMER, subject=f"{prefix}{ours.message['Subject']}",
                 body="Я в отпуске до 30 ноября. I am out of the office until 30 November.",
                 in_reply_to=ack_id(ours), headers=headers)


@pytest.mark.parametrize("system", list(OUT_OF_OFFICE))
def test_out_of_office_is_kept_but_never_stops_the_sla_or_reopens(stack: Stack,
                                                                  system: str) -> None:
    ticket, ack = open_ticket(stack)
    sent = stack.deliver(out_of_office(system, ack), mail_from=CUSTOMER)
    after = stack.ticket(ticket.id)
    assert sent == [] and outcomes(stack)[-1] == "auto"
    assert [a.kind for a in after.articles] == ["customer", "ack", "auto"]
    assert (after.status, after.first_response_at, after.sla_paused_since) == ("new", None, None)
    assert (after.first_response_due, after.resolution_due) == (ticket.first_response_due,
                                                                ticket.resolution_due)
    # Resolved, then the same robot answers again: the ticket stays resolved.
    resolved_at = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
    with transaction(stack.factory) as s:
        row = s.get(Ticket, ticket.id)
        assert row is not None
        row.status, row.resolved_at = "resolved", resolved_at
    sent = stack.deliver(out_of_office(system, ack), mail_from=CUSTOMER)
    after = stack.ticket(ticket.id)
    assert sent == []
    assert (after.status, after.resolved_at) == ("resolved", resolved_at)
    assert [a.kind for a in after.articles] == ["customer", "ack", "auto", "auto"]


def test_engineers_out_of_office_never_reaches_the_customer_or_stops_the_sla(
    stack: Stack,
) -> None:
    ticket, _ = open_ticket(stack)
    [notice] = [m for m in stack.sink.messages if list(m.rcpt_tos) == [ANNA]]
    token_address = str(notice.message["Reply-To"])
    # Exchange answers the notice on Anna's behalf, through her valid reply token.
    sent = stack.deliver(
        build(from_=ANNA, to=token_address, subject=f"Automatic reply: {notice.message['Subject']}",
              body="I am on leave until Monday; please write to Boris.",
              in_reply_to=ack_id(notice),
              headers={"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"}),
        mail_from=ANNA, rcpt=(token_address,))
    after = stack.ticket(ticket.id)
    assert sent == [] and outcomes(stack)[-1] == "engineer_auto"
    assert [(a.kind, a.from_addr) for a in after.articles][-1] == ("auto", ANNA)
    assert (after.status, after.assignee, after.first_response_at) == ("new", None, None)
    assert [e.action for e in stack.audit(ticket.id)][-1] == "auto_reply_kept"


def test_loop_with_rfc3834_autoresponders_ends_after_one_answer_each(stack: Stack) -> None:
    robot = Robot(stack, CUSTOMER, {"Auto-Submitted": "auto-replied"})
    ticket, _ = open_ticket(stack)
    assert robot.run() == 1  # it answered our ack; we did not answer it
    # An engineer's real answer reaches the customer, whose robot answers once more.
    [notice] = [m for m in stack.sink.messages if list(m.rcpt_tos) == [ANNA]]
    token_address = str(notice.message["Reply-To"])
    stack.deliver(build(from_=ANNA, to=token_address, subject="Re: notice",
                        body="Перезагрузите принтер."), mail_from=ANNA, rcpt=(token_address,))
    assert robot.run() == 1
    assert (robot.answers, len(robot.inbox())) == (2, 2)
    assert [a.kind for a in stack.ticket(ticket.id).articles] == [
        "customer", "ack", "auto", "reply", "auto"]
    assert [m.message["Auto-Submitted"] for m in robot.inbox()] == ["auto-replied", "no"]


def test_rfc_blind_robots_are_stopped_by_the_daily_cap_and_its_per_address_overrides(
    sqlite_url: str, tmp_path: Path
) -> None:
    mail = {"auto_replies_per_recipient_per_day": 2,
            "auto_reply_overrides": {"quiet@acme.example": 1, "chatty@acme.example": 3}}
    with SmtpSink() as sink:
        stack = make_stack(tmp_path, sqlite_url, sink, mail=mail)
        try:
            for name, acks in (("quiet", 1), ("plain", 2), ("chatty", 3)):
                address = f"{name}@acme.example"
                robot = Robot(stack, address, fresh_subject=True)
                stack.deliver(build(from_=address, subject="Hello"), mail_from=address)
                # Each of our acks draws a new "request", until the cap stops the acks.
                assert robot.run() == acks
                assert (len(robot.inbox()), robot.answers) == (acks, acks)
                with transaction(stack.factory) as s:
                    logged = s.scalars(select(AutoReplyLog.kind).where(
                        AutoReplyLog.recipient == address)).all()
                assert logged == ["ack"] * acks
            # Every robot mail was kept as a ticket; none was lost to the cap.
            assert len(stack.tickets()) == (1 + 1) + (2 + 1) + (3 + 1)
        finally:
            stack.close()


def test_our_automatic_mail_is_marked_and_returns_to_a_verp_address(stack: Stack) -> None:
    _, ack = open_ticket(stack)
    [notice] = [m for m in stack.sink.messages if list(m.rcpt_tos) == [ANNA]]
    token_address = str(notice.message["Reply-To"])
    [reply] = [m for m in stack.deliver(
        build(from_=ANNA, to=token_address, subject="Re: x", body="Готово."),
        mail_from=ANNA, rcpt=(token_address,)) if CUSTOMER in m.rcpt_tos]
    marks = {m: (m.message["Auto-Submitted"], m.message["X-Auto-Response-Suppress"],
                 m.message["Precedence"], m.message["X-Mailticket-Loop"])
             for m in (ack, notice, reply)}
    assert marks == {ack: ("auto-replied", "All", "bulk", "mt-test"),
                     notice: ("auto-generated", "All", "bulk", "mt-test"),
                     reply: ("no", None, None, "mt-test")}
    with transaction(stack.factory) as s:
        rows = {r.message_id: r.id for r in s.scalars(select(OutboxItem))}
    for mail in (ack, notice, reply):
        # The envelope sender names the outbox row, under a MAC only we can make.
        assert parse_verp(SECRET, mail.mail_from) == rows[ack_id(mail)]
    assert parse_verp("another-secret", ack.mail_from) is None


# --- 5. the caps on automatic mail -------------------------------------------------


def test_auto_mail_caps_per_recipient_per_day_and_per_ticket_per_hour(stack: Stack) -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    notifier = stack.worker.app.notifier
    with transaction(stack.factory) as s:
        s.add_all(AutoReplyLog(recipient="robot@acme.example", kind="ack", ticket_id=None,
                               sent_at=now - timedelta(hours=1)) for _ in range(40))
        s.add_all(AutoReplyLog(recipient=f"p{i}@acme.example", kind="ack", ticket_id=7,
                               sent_at=now - timedelta(minutes=30)) for i in range(10))
        s.add(AutoReplyLog(recipient="old@acme.example", kind="ack", ticket_id=8,
                           sent_at=now - timedelta(days=2)))
        s.flush()
        assert not caps.auto_mail_allowed(s, notifier.config.mail, "robot@acme.example", "ack", now)
        assert caps.auto_mail_allowed(s, notifier.config.mail, "robot@acme.example", "ack",
                                        now + timedelta(hours=23, minutes=1))
        assert not caps.auto_mail_allowed(s, notifier.config.mail, "new@acme.example", "ack", now,
                                            ticket_id=7)
        assert caps.auto_mail_allowed(s, notifier.config.mail, "new@acme.example", "ack",
                                        now + timedelta(minutes=31), ticket_id=7)
        assert caps.auto_mail_allowed(s, notifier.config.mail, "old@acme.example", "ack", now,
                                        per_day=1, ticket_id=8)
