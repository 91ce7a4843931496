"""Issue 8 end to end over real sockets: monitoring alerts, #kb, ratings, routing.

Every mail goes listener → spool → worker → outbox → relay → SmtpSink, on
SQLite and on PostgreSQL, with the test config's "initech" contract (Zabbix and
Alertmanager senders, a dedicated engineer with a deputy, subject priorities).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from stack import Stack, text_of
from support.mails import build, new_id
from support.smtp_sink import Received, SmtpSink

from mailticket.config import FeedbackConfig, KbConfig

REPO = Path(__file__).resolve().parents[2]
ZABBIX = "zabbix@initech.example"
AM = "alertmanager@initech.example"
OPS = "ops@initech.example"
IVAN = "ivan@acme.example"
ANNA, VERA, LEAD = "anna@provider.example", "vera@provider.example", "lead@provider.example"
SUPPORT = "support@provider.example"
RATE = re.compile(r"support\+rate-(\d+)-([1-5])-[a-z2-7]{16}@provider\.example")


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    with SmtpSink() as sink:
        s = Stack(tmp_path, db_url, sink, kb=KbConfig(dir=REPO / "kb"),
                  feedback=FeedbackConfig(enabled=True))
        try:
            yield s
        finally:
            s.close()


def zabbix(stack: Stack, kind: str, severity: str = "High") -> list[Received]:
    subject = {"problem": "Problem: Disk space is low on /var",
               "ok": "Resolved in 3m 0s: Disk space is low on /var"}[kind]
    body = (f"Problem name: Disk space is low on /var\nHost: fs01\nSeverity: {severity}\n"
            "Original problem ID: 4711\n")
    return stack.deliver(build(from_=f"Zabbix <{ZABBIX}>", subject=subject, body=body,
                               headers={"Auto-Submitted": "auto-generated"}),
                         mail_from=ZABBIX)


def plain(received: Received) -> str:
    """The text part with LF line ends (it travels with CRLF)."""
    return text_of(received).replace("\r\n", "\n")


def recipients(sent: list[Received]) -> list[list[str]]:
    return sorted(list(r.rcpt_tos) for r in sent)


def test_zabbix_problem_repeat_recovery_flap_is_one_ticket(stack: Stack) -> None:
    sent = zabbix(stack, "problem")
    [ticket] = stack.tickets()
    assert (ticket.subject, ticket.priority, ticket.status, ticket.line) == (
        "fs01: Disk space is low on /var", "major", "new", "L1")
    assert (ticket.assignee, ticket.contract_type, ticket.alert_count) == (VERA, "complex", 1)
    assert [c.address for c in ticket.contacts] == [OPS]
    # The dedicated engineer and the deputy hear of it; the robot gets nothing.
    assert recipients(sent) == [[ANNA], [VERA]]
    assert "fs01" in plain(sent[0])

    assert zabbix(stack, "problem") == []  # a repeat is appended quietly
    sent = zabbix(stack, "ok")
    assert recipients(sent) == [[ANNA], [VERA]]
    ticket = stack.ticket(ticket.id)
    assert (ticket.status, ticket.alert_state, ticket.alert_count) == ("resolved", "ok", 3)

    # Flapping: the problem returns soon after the recovery, twice.
    assert recipients(zabbix(stack, "problem")) == [[ANNA], [VERA]]
    zabbix(stack, "ok")
    zabbix(stack, "problem")
    [ticket] = stack.tickets()
    assert (ticket.status, ticket.alert_flaps, ticket.alert_count) == ("open", 2, 6)
    assert [a.kind for a in ticket.articles] == ["auto"] * 6
    actions = [e.action for e in stack.audit(ticket.id)]
    assert actions.count("alert_flap") == 2 and actions.count("alert_repeat") == 1
    assert [s.outcome for s in stack.spool()] == [
        "alert_new", "alert_repeat", "alert_resolved", "alert_flap", "alert_resolved",
        "alert_flap"]
    assert all(ZABBIX not in r.rcpt_tos for r in stack.sink.messages)
    # No rating request for a ticket a robot opened and closed.
    assert all("rate-" not in r.data.decode() for r in stack.sink.messages)


def test_alertmanager_routing_and_note_on_recovery(stack: Stack) -> None:
    firing = build(from_=AM, subject="[FIRING:1] PostgresDown (db01:9187 postgres critical)",
                   body="Labels\nalertname = PostgresDown\ninstance = db01:9187\njob = postgres\n"
                        "severity = critical\n")
    sent = stack.deliver(firing, mail_from=AM)
    [ticket] = stack.tickets()
    # The "initech databases" rule: L3 and the lead; critical from the label.
    assert (ticket.priority, ticket.line, ticket.assignee) == ("critical", "L3", LEAD)
    assert recipients(sent) == [[LEAD]]
    resolved = build(from_=AM, subject="[RESOLVED] PostgresDown (db01:9187 postgres critical)",
                     body="alertname = PostgresDown\ninstance = db01:9187\n")
    assert stack.deliver(resolved, mail_from=AM) == []
    ticket = stack.ticket(ticket.id)
    assert (ticket.status, ticket.alert_state) == ("new", "ok")  # on_recovery = "note"
    stack.deliver(build(from_=AM, subject="[FIRING:1] PostgresDown (db01:9187 postgres critical)",
                        body="alertname = PostgresDown\ninstance = db01:9187\n"), mail_from=AM)
    [ticket] = stack.tickets()
    assert (ticket.alert_flaps, ticket.alert_state, ticket.alert_count) == (1, "problem", 3)
    assert [s.outcome for s in stack.spool()] == ["alert_new", "alert_ok_noted", "alert_flap_noted"]
    assert all(AM not in r.rcpt_tos for r in stack.sink.messages)


def open_acme_ticket(stack: Stack) -> tuple[int, str, str]:
    """Ivan reports a printer problem; returns the ticket, Anna's Reply-To and her notice."""
    body = "Принтер в бухгалтерии не печатает, документы висят в очереди."
    sent = stack.deliver(build(from_=IVAN, subject="Принтер не печатает", body=body),
                         mail_from=IVAN)
    [ticket] = stack.tickets()
    notice = next(r for r in sent if list(r.rcpt_tos) == [ANNA])
    return ticket.id, str(notice.message["Reply-To"]), plain(notice)


def engineer(stack: Stack, reply_to: str, body: str) -> list[Received]:
    return stack.deliver(build(from_=ANNA, to=reply_to, subject="Re: notice", body=body),
                         mail_from=ANNA, rcpt=(reply_to,))


def test_kb_suggestions_and_insertion(stack: Stack) -> None:
    _, reply_to, notice = open_acme_ticket(stack)
    assert ("Принтер не печатает: как очистить очередь печати [printer-queue-reset]"
            in notice)
    sent = engineer(stack, reply_to, "#kb printer-queue-reset\nИван, добрый день! Попробуйте так:")
    [to_ivan] = [r for r in sent if IVAN in r.rcpt_tos]
    text = plain(to_ivan)
    assert text.startswith("Иван, добрый день! Попробуйте так:\n\nПринтер не печатает: как "
                           "очистить очередь печати\n\nЕсли принтер не печатает")
    assert "C:\\Windows\\System32\\spool\\PRINTERS" in text and "#kb" not in text
    [result] = [r for r in sent if list(r.rcpt_tos) == [ANNA]]
    assert "article printer-queue-reset (ru) inserted into the reply" in plain(result)
    # An unknown article refuses the whole reply.
    sent = engineer(stack, reply_to, "#kb no-such-article\nвот")
    assert [list(r.rcpt_tos) for r in sent] == [[ANNA]]
    assert "no knowledge-base article 'no-such-article'" in plain(sent[0])
    assert stack.spool()[-1].outcome == "commands_refused"


def resolve_acme_ticket(stack: Stack) -> tuple[int, Received]:
    number, reply_to, _ = open_acme_ticket(stack)
    sent = engineer(stack, reply_to, "#status resolved\nЗаменили картридж.")
    to_ivan = [r for r in sent if IVAN in r.rcpt_tos]
    assert [plain(r).splitlines()[0] for r in to_ivan] == [
        "Заменили картридж.", "Здравствуйте!"]
    return number, to_ivan[1]


def test_rating_by_reply_digit_alerts_l3_and_does_not_reopen(stack: Stack) -> None:
    number, request = resolve_acme_ticket(stack)
    assert f"[#MT-{number}] Оцените, пожалуйста, нашу работу" in str(request.message["Subject"])
    assert sorted(int(m.group(2)) for m in RATE.finditer(plain(request))) == [1, 2, 3, 4, 5]
    assert request.message["Auto-Submitted"] == "auto-generated"
    sent = stack.deliver(build(from_=IVAN, subject=f"Re: [#MT-{number}] Оцените",
                               body="2\nДолго ждали ответа.\n\n> Оцените нашу помощь",
                               in_reply_to=request.message["Message-ID"].strip("<>")),
                         mail_from=IVAN)
    ticket = stack.ticket(number)
    assert (ticket.rating, ticket.rating_comment, ticket.status) == (
        2, "Долго ждали ответа.", "resolved")
    assert stack.spool()[-1].outcome == "rated"
    # acme has no dedicated engineer: the L3 lead hears of it, nobody else.
    assert recipients(sent) == [[LEAD]]
    assert "Клиент оценил работу по обращению" in plain(sent[0])
    assert "Долго ждали ответа." in plain(sent[0])


def test_rating_by_mailto_token_and_a_forged_token(stack: Stack) -> None:
    number, request = resolve_acme_ticket(stack)
    five = next(m.group(0) for m in RATE.finditer(plain(request)) if m.group(2) == "5")
    assert stack.deliver(build(from_=IVAN, to=five, subject=f"Rating 5 [#MT-{number}]", body=""),
                         mail_from=IVAN, rcpt=(five,)) == []
    ticket = stack.ticket(number)
    assert (ticket.rating, ticket.rating_comment, ticket.status) == (5, None, "resolved")
    # The same MAC with another score, and a made-up MAC: no effect at all.
    forged = five.replace(f"rate-{number}-5-", f"rate-{number}-1-")
    for address in (forged, f"support+rate-{number}-1-aaaaaaaaaaaaaaaa@provider.example"):
        assert stack.deliver(build(from_=IVAN, to=address, subject="Rating 1", body="плохо"),
                             mail_from=IVAN, rcpt=(address,)) == []
        assert stack.spool()[-1].outcome == "rating_forged"
    ticket = stack.ticket(number)
    assert (ticket.rating, len(stack.tickets())) == (5, 1)
    assert [e.detail["score"] for e in stack.audit(number) if e.action == "rated"] == [5]


def resolve_ticket_of(stack: Stack, customer: str) -> tuple[int, Received]:
    """``customer`` reports a problem and Anna resolves it: the ticket and the rating request."""
    sent = stack.deliver(build(from_=customer, subject="Принтер не печатает"), mail_from=customer)
    [ticket] = stack.tickets()
    reply_to = str(next(r for r in sent if list(r.rcpt_tos) == [ANNA]).message["Reply-To"])
    sent = engineer(stack, reply_to, "#status resolved\nЗаменили картридж.")
    [request] = [r for r in sent if RATE.search(plain(r))]
    assert list(request.rcpt_tos) == [customer]
    return ticket.id, request


def answer(stack: Stack, sender: str, number: int, body: str, in_reply_to: str) -> list[Received]:
    return stack.deliver(build(from_=sender, subject=f"Re: [#MT-{number}] Оцените",
                               body=f"{body}\n\n> Оцените, пожалуйста, нашу работу",
                               in_reply_to=in_reply_to.strip("<>")), mail_from=sender)


def test_score_and_comment_on_one_line_answering_the_request(stack: Stack) -> None:
    """Issue 14 class 13: '5 Спасибо!' to the request rates 5 with a comment, no reopening."""
    number, request = resolve_ticket_of(stack, IVAN)
    assert answer(stack, IVAN, number, "5 Спасибо!", request.message["Message-ID"]) == []
    ticket = stack.ticket(number)
    assert (ticket.rating, ticket.rating_comment, ticket.status) == (5, "Спасибо!", "resolved")
    assert stack.spool()[-1].outcome == "rated"


def test_low_score_with_a_word_reaches_the_dedicated_engineer_and_l3(stack: Stack) -> None:
    """'1 ужасно' to initech's request: the dedicated engineer, the deputy and L3 hear of it."""
    number, request = resolve_ticket_of(stack, OPS)
    sent = answer(stack, OPS, number, "1 ужасно", request.message["Message-ID"])
    ticket = stack.ticket(number)
    assert (ticket.rating, ticket.rating_comment, ticket.status) == (1, "ужасно", "resolved")
    assert recipients(sent) == [[ANNA], [LEAD], [VERA]]
    assert all("ужасно" in plain(r) for r in sent)


def test_a_date_in_an_ordinary_reply_is_not_a_rating(stack: Stack) -> None:
    """'1 декабря вернусь' answering the engineer's reply (not the request) reopens as before."""
    number, _ = resolve_ticket_of(stack, IVAN)
    [resolution] = [r for r in stack.sink.messages
                    if IVAN in r.rcpt_tos and "Заменили картридж." in plain(r)]
    answer(stack, IVAN, number, "1 декабря вернусь, тогда проверю.",
           resolution.message["Message-ID"])
    ticket = stack.ticket(number)
    assert (ticket.rating, ticket.status) == (None, "open")
    assert stack.spool()[-1].outcome == "reopened"
    assert ticket.articles[-1].text.startswith("1 декабря вернусь, тогда проверю.")


def test_a_colleague_answering_the_request_is_a_comment_not_a_rating(stack: Stack) -> None:
    """Only the person asked rates; a colleague's '1 …' stays on the ticket, which stays resolved."""
    colleague = "petr@acme.example"
    number, request = resolve_ticket_of(stack, IVAN)
    sent = answer(stack, colleague, number, "1 у нас всё ещё не печатает",
                  request.message["Message-ID"])
    ticket = stack.ticket(number)
    assert (ticket.rating, ticket.status) == (None, "resolved")
    assert stack.spool()[-1].outcome == "reply"
    assert (ticket.articles[-1].from_addr, ticket.articles[-1].text.splitlines()[0]) == (
        colleague, "1 у нас всё ещё не печатает")
    assert LEAD not in {a for r in sent for a in r.rcpt_tos}  # no low-rating notice
    assert [e.action for e in stack.audit(number)].count("rating_answer_not_counted") == 1
    # Nor does the colleague rate by a link of the request.
    one = next(m.group(0) for m in RATE.finditer(plain(request)) if m.group(2) == "1")
    assert stack.deliver(build(from_=colleague, to=one, subject="1", body=""),
                         mail_from=colleague, rcpt=(one,)) == []
    assert stack.spool()[-1].outcome == "rating_refused"
    assert stack.ticket(number).rating is None
    # The person asked can still rate afterwards.
    answer(stack, IVAN, number, "4 хорошо", request.message["Message-ID"])
    assert (stack.ticket(number).rating, stack.ticket(number).rating_comment) == (4, "хорошо")


def test_customer_subject_priority_routing_and_deputy(stack: Stack) -> None:
    mid = new_id("initech.example")
    sent = stack.deliver(build(from_=OPS, subject="[АВАРИЯ] Ошибка в 1С при закрытии месяца",
                               message_id=mid), mail_from=OPS)
    [ticket] = stack.tickets()
    assert (ticket.priority, ticket.line, ticket.assignee, ticket.contract_type) == (
        "critical", "L2", VERA, "complex")
    assert recipients(sent) == [[ANNA], [OPS], [VERA]]  # deputy, ack, dedicated engineer
    [routed] = [e.detail for e in stack.audit(ticket.id) if e.action == "routed"]
    assert (routed["rule"], routed["priority_from"]) == ("initech 1C", "subject")


def test_follow_up_ticket_gets_the_routed_line_and_contract_type(stack: Stack) -> None:
    sent = stack.deliver(build(from_=OPS, subject="Ошибка в 1С при закрытии месяца"),
                         mail_from=OPS)
    [first] = stack.tickets()
    assert (first.line, first.contract_type) == ("L2", "complex")
    reply_to = str(next(r for r in sent if list(r.rcpt_tos) == [VERA]).message["Reply-To"])
    stack.deliver(build(from_=VERA, to=reply_to, subject="Re: notice",
                        body="#status resolved\nИсправили."), mail_from=VERA, rcpt=(reply_to,))
    # Age the resolution past the 14-day reopen window, as if ops wrote weeks later.
    from datetime import timedelta

    from mailticket.store.db import transaction
    from mailticket.store.schema import Ticket

    with transaction(stack.factory) as s:
        t = s.get(Ticket, first.id)
        assert t is not None and t.resolved_at is not None
        t.resolved_at -= timedelta(days=15)
    stack.deliver(build(from_=OPS, subject=f"Re: [#MT-{first.id}] Ошибка в 1С при закрытии месяца",
                        body="Снова та же ошибка."), mail_from=OPS)
    old, new = stack.tickets()
    assert (old.id, old.status) == (first.id, "resolved")
    assert (new.status, new.line, new.contract_type, new.priority, new.assignee) == (
        "new", "L2", "complex", first.priority, VERA)
    assert any(e.action == "opened" and e.detail.get("follows") == f"MT-{first.id}"
               for e in stack.audit(new.id))
