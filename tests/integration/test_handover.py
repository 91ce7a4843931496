"""Issue 16, point 3: the on-call handover mail goes to the incoming pair only, once per shift.

Each person gets their own mail (their locale, their own reply token in every
line); ``[digest.handover] to`` can add a line or a duty lead's address.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from harness import Harness, as_message, body_text
from support.configs import make_config
from support.mails import build

from mailticket.config import DigestConfig
from mailticket.mail import addresses
from mailticket.runners.scheduler import Scheduler
from mailticket.store.db import transaction
from mailticket.store.schema import Ticket

MSK = ZoneInfo("Europe/Moscow")
BORIS = "boris@provider.example"
LEAD = "lead@provider.example"


def msk(*args: int) -> datetime:
    return datetime(*args, tzinfo=MSK).astimezone(UTC)


@pytest.fixture
def h(sqlite_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(make_config(tmp_path, sqlite_url))
    yield harness
    harness.close()


def _shift_with_a_breach(h: Harness) -> Scheduler:
    """Week 1 (Anna+Vera): a critical ticket breaches, a minor one and an L2 one wait unassigned."""
    scheduler = Scheduler(h.app, clock=h.clock)
    h.clock.now = msk(2026, 11, 20, 19, 50)
    for sender, subject in (("ops@initech.example", "[АВАРИЯ] Сервер лежит"),
                            ("ivan@acme.example", "Принтер"), ("petr@acme.example", "1С")):
        h.deliver(build(from_=sender, subject=subject), mail_from=sender)
    with transaction(h.factory) as s:
        for ticket in s.query(Ticket).all():
            ticket.assignee = None
        third = s.get(Ticket, 3)
        assert third is not None
        third.line = "L2"
    h.clock.now = msk(2026, 11, 20, 20, 30)
    scheduler.sla_scan()  # the critical first response (30 min) breached at 20:20
    h.new_outbox()
    return scheduler


def _handovers(h: Harness) -> list:  # type: ignore[type-arg]
    return h.outbox("digest_handover")


def _run_handover_day(h: Harness, scheduler: Scheduler) -> None:
    h.clock.now = msk(2026, 11, 23, 8, 0)
    while h.clock.now < msk(2026, 11, 24, 12, 0):
        scheduler.handover_mail()
        h.clock.advance(minutes=30)


def _token(h: Harness, ticket_id: int, reader: str) -> str:
    return addresses.make_reply_token(h.config.mail.reply_token_secret, ticket_id, reader,
                                      msk(2026, 11, 23, 10, 0).date())


def test_handover_mail_goes_to_the_incoming_pair_once(h: Harness) -> None:
    scheduler = _shift_with_a_breach(h)
    _run_handover_day(h, scheduler)
    mails = {tuple(m.rcpt_tos): m for m in _handovers(h)}
    # Boris and Lead take over from Anna and Vera: one mail each, nobody else.
    assert sorted(mails) == [(BORIS,), (LEAD,)]
    assert {m.created_at for m in mails.values()} == {msk(2026, 11, 23, 10, 0)}
    lead, boris = mails[(LEAD,)], mails[(BORIS,)]
    msg = as_message(lead)
    assert msg["List-Id"] == "<handover.mt.provider.example>"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["References"] is None
    text = body_text(lead).replace("\r\n", "\n")
    assert "Boris Ivanov и Lead Engineer, вы заступаете на дежурство\nс пн, 23.11.2026 10:00 MSK" in text
    assert "== Открытые критические и высокие: 1 ==\n\nMT-1  initech  критический" in text
    assert ("== Нарушения SLA за прошлую смену: 1 ==\n  MT-1  критический, срок первого ответа "
            "истёк пт, 20.11.2026 20:20 MSK") in text
    assert "== Не назначены, линия L1: 2 ==" in text and "== Не назначены, линия L2: 1 ==" in text
    # Each reads their own locale and finds their own reply token, never the other's.
    english = body_text(boris)
    assert "Boris Ivanov and Lead Engineer, you are on call" in english
    assert _token(h, 1, BORIS) in english and _token(h, 1, LEAD) not in english
    assert _token(h, 1, LEAD) in text and _token(h, 1, BORIS) not in text


def test_handover_to_also_reaches_a_line_and_a_duty_lead(sqlite_url: str, tmp_path: Path) -> None:
    config = make_config(tmp_path, sqlite_url)
    h = Harness(dataclasses.replace(config, digest=DigestConfig(
        handover_to=("oncall", "line:L2", "duty@provider.example"))))
    try:
        _run_handover_day(h, _shift_with_a_breach(h))
        mails = {tuple(m.rcpt_tos): m for m in _handovers(h)}
        # Anna (L1, going off duty) gets nothing; Vera (L2) and the duty lead do.
        assert sorted(mails) == [(BORIS,), ("duty@provider.example",), (LEAD,),
                                 ("vera@provider.example",)]
        duty = body_text(mails[("duty@provider.example",)]).replace("\r\n", "\n")
        assert "На дежурство заступают Boris Ivanov и Lead Engineer\nс пн, 23.11.2026 10:00 MSK" in duty
        assert "MT-1  initech  критический" in duty
        # Not an engineer: no reply address, since no token would act for them.
        assert "ответить:" not in duty and "support+r" not in duty
        vera = body_text(mails[("vera@provider.example",)])
        assert "На дежурство заступают" in vera and _token(h, 1, "vera@provider.example") in vera
    finally:
        h.close()


def test_no_handover_mail_when_off_or_late(sqlite_url: str, tmp_path: Path) -> None:
    config = make_config(tmp_path, sqlite_url)
    h = Harness(dataclasses.replace(config, digest=DigestConfig(handover=False)))
    try:
        scheduler = _shift_with_a_breach(h)
        h.clock.now = msk(2026, 11, 23, 10, 0)
        scheduler.handover_mail()
        assert _handovers(h) == []
    finally:
        h.close()
    h = Harness(config)
    try:
        scheduler = _shift_with_a_breach(h)
        # The daemon was down all of the handover's first half day: that shift gets none.
        h.clock.now = msk(2026, 11, 23, 10, 0) + timedelta(hours=13)
        scheduler.handover_mail()
        assert _handovers(h) == []
    finally:
        h.close()
