"""Issue 16, point 4: a contact asks by mail where their tickets stand; the ack states the promise."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from harness import Harness, as_message, body_text
from support.configs import make_config
from support.mails import build

from mailticket.outbound.render import format_promise
from mailticket.store.db import transaction
from mailticket.store.schema import QueueState, Ticket
from mailticket.tickets import sla_stamp

MSK = ZoneInfo("Europe/Moscow")


@pytest.fixture
def h(sqlite_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(make_config(tmp_path, sqlite_url))
    yield harness
    harness.close()


def _open(h: Harness, sender: str, subject: str, cc: tuple[str, ...] = ()) -> None:
    h.deliver(build(from_=sender, subject=subject, cc=cc), mail_from=sender)


def _status_rows(h: Harness) -> list[str]:
    [answer] = h.outbox("status_answer")
    return re.findall(r"^(MT-\d+)  ", body_text(answer), re.MULTILINE)


def test_ack_states_the_business_hours_promise_computed_by_the_sla_engine(h: Harness) -> None:
    # Friday 19:50 MSK, a minor ticket on Mon–Fri 08–20 hours: 4 business hours.
    _open(h, "ivan@acme.example", "Не печатает принтер")
    [ack] = h.outbox("ack")
    text = body_text(ack)
    with transaction(h.factory) as s:
        [ticket] = s.query(Ticket).all()
        due = ticket.first_response_due
        assert due is not None
        shown = sla_stamp.explain_ticket(s, h.config, ticket, h.clock.now)
    # Friday 10 minutes, Monday 08:00 + 3 h 50 min = 11:50 MSK.
    assert due.astimezone(MSK) == datetime(2026, 11, 23, 11, 50, tzinfo=MSK)
    assert "Ответим до 11:50 пн, 23 ноября (приоритет: обычный)." in text
    # `mailticket sla show` names the same instant.
    first = shown.index(next(line for line in shown if line.startswith("first_response:")))
    assert shown[first + 1].startswith("  due 2026-11-23 Mon 11:50 MSK;")
    assert format_promise(due, "Europe/Moscow", "ru") in text


def test_ack_of_a_24x7_ticket_promises_a_period(h: Harness) -> None:
    _open(h, "ops@initech.example", "[АВАРИЯ] Лежит сервер")
    [ack] = h.outbox("ack")
    assert "Ответим в течение 30 минут (приоритет: критический)." in body_text(ack)


def test_ack_in_english_for_an_english_contract(h: Harness) -> None:
    _open(h, "jane@globex.example", "Printer")
    [ack] = h.outbox("ack")
    assert "We will answer by 11:50 Mon, 23 November (priority: minor)." in body_text(ack)


def test_status_lists_only_the_contacts_own_tickets(h: Harness) -> None:
    _open(h, "ivan@acme.example", "Первое")
    _open(h, "petr@acme.example", "Чужое", cc=("ivan@acme.example",))
    _open(h, "maria@acme.example", "Не видно Ивану")
    _open(h, "jane@globex.example", "Another contract")
    spool_id = h.deliver(build(from_="ivan@acme.example", to="support+status@provider.example",
                               subject="статус", body="Где мы?"),
                         rcpt=("support+status@provider.example",))
    row = h.spool_row(spool_id)
    assert (row.state, row.outcome) == (QueueState.DONE, "status_answered")
    assert _status_rows(h) == ["MT-1", "MT-2"]
    [answer] = h.outbox("status_answer")
    msg = as_message(answer)
    assert msg["To"] == "ivan@acme.example"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Id"] == "<status.mt.provider.example>"
    assert msg["References"] is None and msg["In-Reply-To"] is None
    assert msg.get_body(("html",)) is not None
    assert "ответим до" in body_text(answer)
    assert len(h.tickets()) == 4  # the request opened nothing


def test_status_word_alone_in_a_new_mail_and_whole_contract_when_allowed(
    sqlite_url: str, tmp_path: Path
) -> None:
    config = make_config(tmp_path, sqlite_url)
    acme = dataclasses.replace(config.contracts["acme"], status_all_tickets=True)
    h = Harness(dataclasses.replace(config, contracts={**config.contracts, "acme": acme}))
    try:
        _open(h, "ivan@acme.example", "Первое")
        _open(h, "maria@acme.example", "Второе")
        _open(h, "jane@globex.example", "Another contract")
        with transaction(h.factory) as s:
            s.get(Ticket, 1).status = "resolved"  # type: ignore[union-attr]
        h.deliver(build(from_="ivan@acme.example", subject="", body="#Статус\n\n-- \nИван"))
        assert _status_rows(h) == ["MT-2"]
    finally:
        h.close()


def test_status_word_in_a_thread_is_just_text(h: Harness) -> None:
    _open(h, "ivan@acme.example", "Первое")
    h.deliver(build(from_="ivan@acme.example", subject="Re: [#MT-1] Первое", body="#status"))
    assert h.outbox("status_answer") == []
    assert len(h.tickets()[0].articles) >= 2


def test_unknown_sender_gets_the_usual_notice_and_nothing_else(h: Harness) -> None:
    _open(h, "ivan@acme.example", "Первое")
    spool_id = h.deliver(build(from_="stranger@nowhere.example",
                               to="support+status@provider.example", body="#status"),
                         rcpt=("support+status@provider.example",))
    assert h.spool_row(spool_id).outcome == "unknown_sender"
    assert h.outbox("status_answer") == []
    [notice] = h.outbox("unknown_sender")
    assert "MT-1" not in body_text(notice)
    assert len(h.tickets()) == 1


def test_a_forged_engineer_asking_for_status_learns_nothing(h: Harness) -> None:
    _open(h, "ivan@acme.example", "Первое")
    h.new_outbox()
    spool_id = h.deliver(build(from_="anna@provider.example", to="support+status@provider.example",
                               body="#status"), rcpt=("support+status@provider.example",))
    assert h.spool_row(spool_id).outcome == "forged_engineer"
    assert h.outbox("status_answer") == []
    # Only the warning to the real engineer's address goes out, and it lists no tickets.
    assert [item.rcpt_tos for item in h.new_outbox()] == [["anna@provider.example"]]
