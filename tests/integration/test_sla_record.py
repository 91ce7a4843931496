"""The SLA record over the real pipeline (issue 13 §1): written once, never rewritten.

Mail goes through the harness (spool → worker → tickets → outbox) and the scan runs
at chosen instants, as in ``test_scheduler``; each test reads ``sla_events`` directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Harness, body_text
from sqlalchemy import select, text
from test_scheduler import (
    ANNA,
    customer_mail,
    engineer_mail,
    harness_for,
    msk,
    scan_at,
    sla_mails,
    ticket,
)

from mailticket.errors import StoreError
from mailticket.model import PriorityChangeRule
from mailticket.store.db import transaction
from mailticket.store.schema import SlaEvent

IVAN = "ivan@acme.example"


@pytest.fixture
def h(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = harness_for(tmp_path, db_url)
    yield harness
    harness.close()


@pytest.fixture
def hs(sqlite_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = harness_for(tmp_path, sqlite_url)
    yield harness
    harness.close()


def record(h: Harness, ticket_id: int) -> list[tuple[object, ...]]:
    with transaction(h.factory) as s:
        rows = s.execute(select(SlaEvent.timer, SlaEvent.kind, SlaEvent.deadline,
                                SlaEvent.priority, SlaEvent.notified)
                         .where(SlaEvent.ticket_id == ticket_id).order_by(SlaEvent.id)).all()
    return [tuple(r) for r in rows]


def test_the_record_refuses_update_and_delete(h: Harness) -> None:
    t = customer_mail(h, msk(2026, 11, 23, 10, 0), "Сбой 1С", sender=IVAN)
    engineer_mail(h, msk(2026, 11, 23, 10, 20), t.id, "Смотрим.")
    assert record(h, t.id) == [("first_response", "met", msk(2026, 11, 23, 10, 20), "minor", True)]
    for statement in ("UPDATE sla_events SET kind = 'breach'", "DELETE FROM sla_events"):
        with pytest.raises(StoreError, match="append-only"), transaction(h.factory) as s:
            s.execute(text(statement))
    assert len(record(h, t.id)) == 1


def test_internal_waiting_does_not_pause_but_a_question_to_the_customer_does(hs: Harness) -> None:
    t = customer_mail(hs, msk(2026, 11, 23, 10, 0), "Настройка VPN", sender=IVAN)
    engineer_mail(hs, msk(2026, 11, 23, 10, 20), t.id, "Смотрим.")
    before = ticket(hs, t.id).resolution_due
    # An internal note that sets waiting: no question reached the customer.
    engineer_mail(hs, msk(2026, 11, 23, 11, 0), t.id, "#internal\n#status waiting\n\nЖдём вендора.")
    t = ticket(hs, t.id)
    assert (t.status, t.resolution_due) == ("waiting", before)
    assert t.next_sla_check_at is not None
    assert [r[1] for r in record(hs, t.id)] == ["met"]
    # The customer writes; then a real question: that pause counts and is recorded.
    customer_mail(hs, msk(2026, 11, 23, 12, 0), f"Re: [#MT-{t.id}] Настройка VPN", sender=IVAN)
    engineer_mail(hs, msk(2026, 11, 23, 12, 30), t.id, "#status waiting\n\nПришлите логи.")
    t = ticket(hs, t.id)
    assert (t.status, t.resolution_due, t.next_sla_check_at) == ("waiting", None, None)
    assert ("clock", "pause", msk(2026, 11, 23, 12, 30), "minor", True) in record(hs, t.id)


def test_raising_priority_late_sends_one_breach_notice_that_says_why(hs: Harness) -> None:
    t = customer_mail(hs, msk(2026, 11, 20, 17, 0), "Сбой 1С", sender=IVAN)  # minor, Friday
    engineer_mail(hs, msk(2026, 11, 23, 10, 0), t.id, "#priority critical\n#internal\n\nСрочно.")
    hs.new_outbox()
    result = scan_at(hs, msk(2026, 11, 23, 10, 1))
    # Both critical timers passed over the weekend: two breaches recorded, no warnings,
    # one notice (the other breach is recorded with notified = False).
    assert (result.events, [r[1:] for r in record(hs, t.id)]) == (2, [
        ("breach", msk(2026, 11, 20, 17, 30), "critical", True),
        ("breach", msk(2026, 11, 20, 21, 0), "critical", False),
    ])
    mails = [m for m in hs.new_outbox() if m.kind.startswith("sla_")]
    assert {m.kind for m in mails} == {"sla_breach_assignee", "sla_breach_escalation",
                                       "sla_breach_oncall"}
    assert len({m.rcpt_tos[0] for m in mails}) == len(mails)  # one notice each
    text_ = body_text(next(m for m in mails if m.rcpt_tos == [ANNA])).replace("\r\n", "\n")
    assert "изменён на «критический»\nпн, 23.11.2026 10:00 MSK" in text_
    assert "пт, 20.11.2026 17:30 MSK, то есть ещё\nдо изменения" in text_


def test_lowering_priority_keeps_the_recorded_breach(hs: Harness) -> None:
    t = customer_mail(hs, msk(2026, 11, 21, 2, 0), "[АВАРИЯ] Не работает сайт")  # critical
    scan_at(hs, msk(2026, 11, 21, 2, 31))
    engineer_mail(hs, msk(2026, 11, 21, 3, 0), t.id, "#priority minor\n#internal\n\nНе авария.")
    scan_at(hs, msk(2026, 11, 23, 9, 0))
    kinds = [(r[0], r[1], r[3]) for r in record(hs, t.id)]
    assert ("first_response", "breach", "critical") in kinds
    assert ("first_response", "warning", "critical") in kinds


def test_reopened_after_two_weeks_does_not_escalate(hs: Harness) -> None:
    t = customer_mail(hs, msk(2026, 11, 2, 10, 0), "Настройка VPN", sender=IVAN)
    engineer_mail(hs, msk(2026, 11, 2, 10, 30), t.id, "#status resolved\n\nГотово.")
    hs.new_outbox()
    customer_mail(hs, msk(2026, 11, 16, 10, 0), f"Re: [#MT-{t.id}] Настройка VPN",
                  body="Снова не работает", sender=IVAN)
    t = ticket(hs, t.id)
    assert (t.status, t.resolution_due) == ("open", msk(2026, 11, 19, 14, 0))  # a new 2400 min
    assert scan_at(hs, msk(2026, 11, 16, 10, 5)).events == 0
    assert sla_mails(hs) == []
    resolution = [r[1:3] for r in record(hs, t.id) if r[0] == "resolution"]
    assert resolution == [("met", msk(2026, 11, 2, 10, 30))]


def test_from_change_plan_restarts_the_clock_at_the_change(tmp_path: Path, sqlite_url: str) -> None:
    base = harness_for(tmp_path, sqlite_url)
    base.close()
    plan = dataclasses.replace(base.config.sla_plans["standard"],
                               priority_change=PriorityChangeRule.FROM_CHANGE)
    h = Harness(dataclasses.replace(base.config, sla_plans={"standard": plan}))
    try:
        t = customer_mail(h, msk(2026, 11, 20, 17, 0), "Сбой 1С", sender=IVAN)
        engineer_mail(h, msk(2026, 11, 23, 10, 0), t.id, "#priority critical\n#internal\n\nСрочно.")
        t = ticket(h, t.id)
        assert (t.first_response_due, t.resolution_due) == (msk(2026, 11, 23, 10, 30),
                                                           msk(2026, 11, 23, 14, 0))
        assert scan_at(h, msk(2026, 11, 23, 10, 1)).events == 0
    finally:
        h.close()
