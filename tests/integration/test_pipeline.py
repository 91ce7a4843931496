"""Spool → ticket → outbox through the real worker, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Harness, as_message, body_text
from support.configs import make_config
from support.mails import build, new_id, raw_8bit

from mailticket.store.schema import QueueState


@pytest.fixture
def h(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(make_config(tmp_path, db_url))
    yield harness
    harness.close()


def test_new_ticket_gets_ack_and_engineer_notice(h: Harness) -> None:
    mid = new_id()
    spool_id = h.deliver(build(from_="Иван Петров <ivan@acme.example>", message_id=mid))
    [ticket] = h.tickets()
    assert ticket.contract_id == "acme"
    assert ticket.requester == "ivan@acme.example"
    assert ticket.subject == "Принтер не печатает"
    assert ticket.status == "new"
    assert [a.kind for a in ticket.articles] == ["customer", "ack"]
    assert ticket.articles[0].message_id == mid
    assert "Принтер в бухгалтерии" in ticket.articles[0].text
    row = h.spool_row(spool_id)
    assert (row.state, row.outcome, row.ticket_id) == (QueueState.DONE, "new", ticket.id)

    [ack] = h.outbox("ack")
    msg = as_message(ack)
    assert ack.rcpt_tos == ["ivan@acme.example"]
    assert f"[#MT-{ticket.id}]" in str(msg["Subject"])
    assert msg["In-Reply-To"] == f"<{mid}>"
    assert f"<{mid}>" in str(msg["References"])
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Mailticket-Loop"] == "mt-test"
    assert ack.envelope_from.startswith("support+")
    # No dedicated engineer on acme: every L1 engineer gets a notice with a signed Reply-To.
    notices = h.outbox("engineer_new")
    assert sorted(n.rcpt_tos[0] for n in notices) == ["anna@provider.example", "boris@provider.example"]
    for notice in notices:
        reply_to = str(as_message(notice)["Reply-To"])
        assert reply_to.startswith("support+") and reply_to.endswith("@provider.example")
        assert "Принтер в бухгалтерии" in body_text(notice)


def test_dedicated_engineer_gets_the_notice_and_english_ack(h: Harness) -> None:
    h.deliver(build(from_="bob@globex.example", subject="VPN down", body="VPN is down since 9am"))
    [ticket] = h.tickets()
    assert ticket.assignee == "boris@provider.example"
    assert [n.rcpt_tos for n in h.outbox("engineer_new")] == [["boris@provider.example"]]
    [ack] = h.outbox("ack")
    assert "VPN down" in str(as_message(ack)["Subject"])


def test_reply_threads_by_in_reply_to_our_ack(h: Harness) -> None:
    h.deliver(build(from_="ivan@acme.example"))
    [ack] = h.outbox("ack")
    h.deliver(build(from_="ivan@acme.example", subject="Re: something else entirely",
                    in_reply_to=ack.message_id, body="Ещё не работает"))
    [ticket] = h.tickets()
    assert [a.kind for a in ticket.articles] == ["customer", "ack", "customer"]
    assert len(h.outbox("ack")) == 1
    assert len(h.outbox("engineer_reply")) == 2


def test_reply_threads_by_references_to_their_own_mail(h: Harness) -> None:
    first = new_id()
    h.deliver(build(from_="ivan@acme.example", message_id=first))
    h.deliver(build(from_="petr@acme.example", subject="Fwd: nothing", references=[new_id(), first]))
    [ticket] = h.tickets()
    assert [a.from_addr for a in ticket.articles if a.kind == "customer"] == [
        "ivan@acme.example", "petr@acme.example"]


@pytest.mark.parametrize("subject", [
    "Re: [#MT-{n}] Принтер", "RE: [#MT-{n}] Принтер", "AW: Принтер [#MT-{n}]",
    "Ответ: [#MT-{n}] Принтер", "FW: [MT-{n}] Принтер", "[#MT-{n}] RE: Принтер",
])
def test_reply_threads_by_subject_tag(h: Harness, subject: str) -> None:
    h.deliver(build(from_="ivan@acme.example"))
    [ticket] = h.tickets()
    h.deliver(build(from_="ivan@acme.example", subject=subject.format(n=ticket.id),
                    body="Дополнение"))
    assert len(h.tickets()) == 1
    assert [a.kind for a in h.tickets()[0].articles] == ["customer", "ack", "customer"]


def test_foreign_sender_cannot_join_another_contracts_ticket(h: Harness) -> None:
    h.deliver(build(from_="ivan@acme.example"))
    [ticket] = h.tickets()
    [ack] = h.outbox("ack")
    h.deliver(build(from_="mallory@globex.example", subject=f"Re: [#MT-{ticket.id}] x",
                    in_reply_to=ack.message_id, body="hijack"))
    first, second = h.tickets()
    assert [a.kind for a in first.articles] == ["customer", "ack"]
    assert second.contract_id == "globex" and second.requester == "mallory@globex.example"


def test_duplicate_message_id_is_stored_once(h: Harness) -> None:
    raw = build(from_="ivan@acme.example", message_id=new_id())
    h.deliver(raw)
    second = h.deliver(raw, rcpt=("support+cc@provider.example",))
    assert len(h.tickets()) == 1
    assert len(h.tickets()[0].articles) == 2
    assert h.spool_row(second).outcome == "duplicate"
    assert len(h.outbox("ack")) == 1


def test_unknown_sender_gets_one_notice_per_day_and_no_ticket(h: Harness) -> None:
    first = h.deliver(build(from_="stranger@nowhere.example"))
    h.deliver(build(from_="stranger@nowhere.example", subject="again"))
    assert h.tickets() == []
    row = h.spool_row(first)
    assert (row.state, row.outcome) == (QueueState.REJECTED, "unknown_sender")
    [notice] = h.outbox("unknown_sender")
    assert notice.rcpt_tos == ["stranger@nowhere.example"]
    assert as_message(notice)["Auto-Submitted"] == "auto-replied"
    h.clock.advance(days=1, minutes=1)
    h.deliver(build(from_="stranger@nowhere.example", subject="next day"))
    assert len(h.outbox("unknown_sender")) == 2


@pytest.mark.parametrize("headers", [
    {"Auto-Submitted": "auto-replied"},
    {"Precedence": "bulk"},
    {"X-Auto-Response-Suppress": "All"},
    {"List-Id": "<news.acme.example>"},
])
def test_auto_mail_is_stored_on_its_thread_but_never_answered(h: Harness, headers: dict[str, str]) -> None:
    h.deliver(build(from_="ivan@acme.example"))
    [ticket] = h.tickets()
    [ack] = h.outbox("ack")
    before = len(h.outbox())
    h.deliver(build(from_="ivan@acme.example", subject="Автоматический ответ: Нет на месте",
                    in_reply_to=ack.message_id, headers=headers, body="Я в отпуске до понедельника"))
    [ticket] = h.tickets()
    assert ticket.articles[-1].kind == "auto"
    assert len(h.outbox()) == before


def test_auto_mail_does_not_reopen_or_open(h: Harness) -> None:
    spool_id = h.deliver(build(from_="ivan@acme.example", headers={"Auto-Submitted": "auto-generated"}))
    assert h.tickets() == []
    assert h.outbox() == []
    assert h.spool_row(spool_id).outcome == "auto_unthreaded"


def test_bounce_of_our_ack_is_recorded_and_not_answered(h: Harness) -> None:
    h.deliver(build(from_="ivan@acme.example"))
    [ack] = h.outbox("ack")
    before = len(h.outbox())
    dsn = raw_8bit(
        "From: MAILER-DAEMON@mx.acme.example\nTo: " + ack.envelope_from + "\n"
        "Subject: Undelivered Mail Returned to Sender\nMessage-ID: <dsn1@mx.acme.example>\n"
        "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n",
        b"--B\nContent-Type: text/plain\n\nI'm sorry.\n--B\n"
        b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.acme.example\n\n"
        b"Final-Recipient: rfc822; ivan@acme.example\nAction: failed\nStatus: 5.1.1\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 no such user\n--B--\n",
    )
    spool_id = h.deliver(dsn, mail_from="", rcpt=(ack.envelope_from,))
    assert h.spool_row(spool_id).outcome == "bounce"
    assert len(h.outbox()) == before
    assert len(h.tickets()) == 1


def test_koi8r_cp1251_and_mislabelled_bodies(h: Harness) -> None:
    text = "Не работает почта у всего отдела продаж"
    h.deliver(raw_8bit("From: ivan@acme.example\nTo: support@provider.example\nSubject: koi\n"
                       "Message-ID: <k1@acme.example>\nContent-Type: text/plain; charset=koi8-r\n"
                       "Content-Transfer-Encoding: 8bit\n", text.encode("koi8-r")))
    h.deliver(raw_8bit("From: ivan@acme.example\nTo: support@provider.example\nSubject: cp\n"
                       "Message-ID: <c1@acme.example>\nContent-Type: text/plain; charset=windows-1251\n"
                       "Content-Transfer-Encoding: 8bit\n", text.encode("cp1251")))
    h.deliver(raw_8bit("From: ivan@acme.example\nTo: support@provider.example\nSubject: lie\n"
                       "Message-ID: <l1@acme.example>\nContent-Type: text/plain; charset=iso-8859-1\n"
                       "Content-Transfer-Encoding: 8bit\n", text.encode("cp1251")))
    texts = [t.articles[0].text.strip() for t in h.tickets()]
    assert texts == [text, text, text]


def test_encoded_word_subject_and_attachment(h: Harness) -> None:
    raw = build(from_="ivan@acme.example", subject="Счёт за ноябрь",
                attachments=[("счёт.pdf", "application/pdf", b"%PDF-1.4 test")])
    h.deliver(raw)
    [ticket] = h.tickets()
    assert ticket.subject == "Счёт за ноябрь"
    [att] = ticket.articles[0].attachments
    assert (att.filename, att.size) == ("счёт.pdf", 13)


def test_poison_message_is_quarantined_and_does_not_block(db_url: str, tmp_path: Path) -> None:
    # A missing template is a real deployment fault: every attempt fails the same way.
    broken = tmp_path / "no-templates"
    broken.mkdir()
    h = Harness(make_config(tmp_path, db_url, templates_dir=broken))
    try:
        poison = h.spool(build(from_="ivan@acme.example"))
        unknown_noise = h.spool(build(from_="x@nowhere.example", headers={"Precedence": "bulk"}))
        for _ in range(5):
            h.worker.drain()
            h.clock.advance(seconds=10)
        row = h.spool_row(poison)
        assert row.state == QueueState.QUARANTINED
        assert row.attempts == 3
        assert "TemplateNotFound" in (row.last_error or "")
        # The next message in the queue was processed while the poison one waited.
        noise = h.spool_row(unknown_noise)
        assert (noise.state, noise.outcome) == (QueueState.DONE, "auto_unthreaded")
        assert h.tickets() == []
    finally:
        h.close()


def test_reply_that_overtakes_its_original_waits_for_it(h: Harness) -> None:
    from datetime import timedelta

    from mailticket.store.db import transaction
    from mailticket.store.schema import SpoolItem

    first = new_id()
    original = h.spool(build(from_="ivan@acme.example", message_id=first))
    reply = h.spool(build(from_="ivan@acme.example", subject="Re: Принтер", in_reply_to=first,
                          body="Забыл добавить: модель HP 1020"))
    # As if another worker still held the original: it is not due yet, the reply is.
    with transaction(h.factory) as s:
        row = s.get(SpoolItem, original)
        assert row is not None
        row.next_attempt_at = h.clock.now + timedelta(seconds=5)
    h.worker.drain()
    assert h.tickets() == []
    deferred = h.spool_row(reply)
    assert (deferred.state, deferred.attempts) == (QueueState.QUEUED, 0)
    h.clock.advance(seconds=6)
    h.worker.drain()
    h.clock.advance(seconds=2)
    h.worker.drain()
    [ticket] = h.tickets()
    assert [a.kind for a in ticket.articles] == ["customer", "ack", "customer"]
