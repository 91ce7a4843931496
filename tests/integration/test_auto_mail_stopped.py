"""Issue 15, point 7: every automatic mail a cap, a suppression or a robot rule stops leaves a trace.

Through the real worker on a real database: the 41st acknowledgement of a day
to one customer (the 40-a-day cap), an acknowledgement to a suppressed
address, and the answers a robot's mail never gets each leave exactly one
``automatic mail stopped`` log line and, when there is a ticket, an
``auto_mail_stopped`` audit event on it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Harness
from sqlalchemy import select
from support.configs import make_config
from support.mails import build

from mailticket.outbound import suppression
from mailticket.store.db import transaction
from mailticket.store.schema import AuditEvent

CUSTOMER = "ivan@acme.example"


@pytest.fixture
def h(sqlite_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(make_config(tmp_path, sqlite_url))
    yield harness
    harness.close()


@pytest.fixture
def stops(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """The test's log records, from INFO up."""
    caplog.set_level(logging.INFO, logger="mailticket")
    return caplog


def stopped_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The ``automatic mail stopped`` records logged during the test."""
    return [r for r in caplog.records if r.getMessage() == "automatic mail stopped"]


def stop_events(h: Harness) -> list[AuditEvent]:
    with transaction(h.factory) as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == "auto_mail_stopped")
                              .order_by(AuditEvent.id)))


def test_the_41st_acknowledgement_of_a_day_is_stopped_with_a_log_line_and_an_audit_event(
    h: Harness, stops: pytest.LogCaptureFixture
) -> None:
    for i in range(41):
        h.deliver(build(from_=CUSTOMER, subject=f"Заявка {i}"), mail_from=CUSTOMER)
        h.clock.advance(minutes=1)
    assert len(h.tickets()) == 41
    assert len(h.outbox("ack")) == 40
    [line] = stopped_lines(stops)
    assert (line.kind, line.reason, line.recipients, line.ticket) == (  # type: ignore[attr-defined]
        "ack", "cap_recipient_per_day", [CUSTOMER], 41)
    assert line.detail == "limit 40"  # type: ignore[attr-defined]
    assert line.levelno == logging.WARNING
    [event] = stop_events(h)
    assert event.ticket_id == 41
    assert event.detail == {"kind": "ack", "reason": "cap_recipient_per_day",
                            "recipients": [CUSTOMER], "detail": "limit 40"}


def test_an_acknowledgement_to_a_suppressed_address_is_stopped_and_audited(
    h: Harness, stops: pytest.LogCaptureFixture
) -> None:
    with transaction(h.factory) as s:
        for outbox_id in (101, 102, 103):
            suppression.record_failure(s, CUSTOMER, source="bounce", detail="5.1.1 user unknown",
                                       now=h.clock.now, outbox_id=outbox_id)
        assert suppression.is_suppressed(s, CUSTOMER)
    h.deliver(build(from_=CUSTOMER), mail_from=CUSTOMER)
    [ticket] = h.tickets()
    assert h.outbox("ack") == []
    [line] = stopped_lines(stops)
    assert (line.kind, line.reason, line.recipients, line.ticket) == (  # type: ignore[attr-defined]
        "ack", "suppressed", [CUSTOMER], ticket.id)
    [event] = stop_events(h)
    assert (event.ticket_id, event.detail["reason"]) == (ticket.id, "suppressed")


def test_robot_mail_gets_no_answer_and_says_so(
    h: Harness, stops: pytest.LogCaptureFixture
) -> None:
    h.deliver(build(from_=CUSTOMER, message_id="first@acme.example"), mail_from=CUSTOMER)
    [ticket] = h.tickets()
    before = len(h.outbox())
    # An out-of-office answer in the thread: kept on the ticket, nobody is mailed.
    ooo = {"Auto-Submitted": "auto-replied", "X-Autoreply": "yes"}
    h.deliver(build(from_=CUSTOMER, subject="Автоответ: Принтер не печатает", headers=ooo,
                    in_reply_to="first@acme.example"), mail_from=CUSTOMER)
    # The same robot outside any thread: no ticket, so no acknowledgement.
    spool_id = h.deliver(build(from_=CUSTOMER, subject="Я в отпуске", headers=ooo),
                         mail_from=CUSTOMER)
    assert h.spool_row(spool_id).outcome == "auto_unthreaded"
    assert len(h.outbox()) == before
    on_thread, unthreaded = stopped_lines(stops)
    assert (on_thread.reason, on_thread.ticket, on_thread.kind) == (  # type: ignore[attr-defined]
        "robot", ticket.id, "engineer_reply")
    assert (unthreaded.reason, unthreaded.ticket, unthreaded.kind) == (  # type: ignore[attr-defined]
        "robot", None, "ack")
    assert unthreaded.recipients == [CUSTOMER]  # type: ignore[attr-defined]
    [event] = stop_events(h)
    assert event.ticket_id == ticket.id and event.detail["reason"] == "robot"
