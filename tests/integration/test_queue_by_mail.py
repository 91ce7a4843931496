"""Issue 16, point 2: an engineer's queue by mail, on each kind of evidence; forgeries learn nothing.

The selection and the filters run on the pipeline harness (SMTP AUTH is the
spool's ``auth_user`` on a ``submission`` row, exactly what the listener
writes); the evidence cases run over real sockets: the submission listener
with STARTTLS and AUTH, trusted DKIM on plain SMTP, a reply token, a forgery.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from harness import Harness, as_message, body_text
from stack import Stack, text_of
from support.configs import engineers, make_config
from support.mails import build
from support.smtp_sink import SmtpSink, make_test_cert

from mailticket.config.passwords import hash_password
from mailticket.store.db import transaction
from mailticket.store.schema import Ticket

ANNA = "anna@provider.example"
QUEUE = "support+queue@provider.example"
MX = "mx.provider.example"
SIGNED = {"Authentication-Results": f"{MX}; dkim=pass header.d=provider.example"}
PASSWORD = "s3cret-pass"
REF = re.compile(r"^(MT-\d+)  ", re.MULTILINE)


@pytest.fixture
def h(sqlite_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(make_config(tmp_path, sqlite_url))
    yield harness
    harness.close()


def _tickets(h: Harness) -> None:
    """MT-1..6: Anna's, L1 unassigned, initech (Anna deputy) on L2, Boris's, L2 unassigned, done."""
    for sender, subject in (("ivan@acme.example", "Моё"), ("petr@acme.example", "Ничьё L1"),
                            ("ops@initech.example", "Инитех"), ("jane@globex.example", "Boris"),
                            ("maria@acme.example", "Ничьё L2"), ("ivan@acme.example", "Решено")):
        h.deliver(build(from_=sender, subject=subject), mail_from=sender)
    setup = {1: (ANNA, "L1", "open"), 2: (None, "L1", "new"),
             3: ("vera@provider.example", "L2", "open"),
             4: ("boris@provider.example", "L1", "open"), 5: (None, "L2", "new"),
             6: (ANNA, "L1", "resolved")}
    with transaction(h.factory) as s:
        for ticket_id, (assignee, line, status) in setup.items():
            ticket = s.get(Ticket, ticket_id)
            assert ticket is not None
            ticket.assignee, ticket.line, ticket.status = assignee, line, status
    h.new_outbox()


def _ask(h: Harness, body: str = "", *, to: str = QUEUE) -> tuple[str | None, str]:
    """Anna asks over SMTP AUTH; returns the spool outcome and the answer's text."""
    spool_id = h.deliver(build(from_=ANNA, to=to, subject="queue", body=body), mail_from=ANNA,
                         rcpt=(to,), source="submission", auth_user=ANNA)
    [answer] = [item for item in h.new_outbox() if item.kind == "queue_answer"]
    return h.spool_row(spool_id).outcome, body_text(answer)


def _sections(text: str) -> list[list[str]]:
    return [REF.findall(part) for part in text.split("\n== ")[1:]]


def test_queue_lists_mine_then_my_line_then_my_contracts(h: Harness) -> None:
    _tickets(h)
    outcome, text = _ask(h)
    assert outcome == "queue_answered"
    assert _sections(text) == [["MT-1"], ["MT-2"], ["MT-3"]]
    assert "== Назначены вам: 1 ==" in text and "== Не назначены, линия L1: 1 ==" in text
    [item] = h.outbox("queue_answer")
    msg = as_message(item)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Id"] == "<queue.mt.provider.example>"
    assert msg["References"] is None
    html = msg.get_body(("html",))
    assert html is not None and 'href="mailto:support+r' in str(html.get_content())
    # Each row's reply address is Anna's own token for that ticket.
    assert re.search(r"ответить: support\+r\d+-1-\d+-\w+@provider\.example", text)


@pytest.mark.parametrize(("words", "expected"), [
    ("#queue L2", [[], ["MT-5"], ["MT-3"]]),
    ("#queue acme", [["MT-1"], ["MT-2"], []]),
    ("#очередь initech", [[], [], ["MT-3"]]),
])
def test_queue_filters(h: Harness, words: str, expected: list[list[str]]) -> None:
    _tickets(h)
    _, text = _ask(h, words, to="support@provider.example")
    assert _sections(text) == expected


def test_queue_overdue_and_unknown_words(h: Harness) -> None:
    _tickets(h)
    with transaction(h.factory) as s:
        ticket = s.get(Ticket, 2)
        assert ticket is not None
        ticket.first_response_due = h.clock.now - timedelta(minutes=90)
    _, text = _ask(h, "#queue overdue soon")
    assert _sections(text) == [[], ["MT-2"], []]
    assert "просрочено на 1 ч 30 мин" in text
    assert "Не понятые слова фильтра (пропущены): soon." in text


def test_an_unauthenticated_queue_request_is_refused_and_names_nothing(h: Harness) -> None:
    _tickets(h)
    for sender in (ANNA, "ivan@acme.example", "stranger@nowhere.example"):
        spool_id = h.deliver(build(from_=sender, to=QUEUE, subject="q", body="#queue"),
                             mail_from=sender, rcpt=(QUEUE,))
        assert h.spool_row(spool_id).outcome == "queue_refused"
        [refusal] = h.new_outbox()
        assert refusal.rcpt_tos == [sender] and refusal.kind == "queue_refused"
        assert "MT-" not in body_text(refusal) and "MT-" not in str(as_message(refusal)["Subject"])
    assert h.outbox("queue_answer") == []
    assert len(h.tickets()) == 6


# --- evidence over real sockets ----------------------------------------------------------


@pytest.fixture
def stack(sqlite_url: str, tmp_path: Path) -> Iterator[Stack]:
    """The stack with a submission listener at ``token+authenticated``; Anna may log in."""
    cert, key = make_test_cert(tmp_path)
    people = {address: dataclasses.replace(person, password_hash=hash_password(PASSWORD))
              for address, person in engineers().items()}
    with SmtpSink() as sink:
        s = Stack(tmp_path, sqlite_url, sink, submission_tls=(cert, key), engineers=people,
                  mail={"engineer_evidence": "token+authenticated"})
        try:
            yield s
        finally:
            s.close()



def _open(stack: Stack) -> str:
    """A customer's ticket; returns Anna's Reply-To token address from its notice."""
    sent = stack.deliver(build(from_="ivan@acme.example", subject="Принтер"),
                         mail_from="ivan@acme.example")
    [notice] = [r for r in sent if list(r.rcpt_tos) == [ANNA]]
    return str(notice.message["Reply-To"])


def _five_tickets(stack: Stack) -> str:
    """MT-1 Anna's, MT-2 Boris's, MT-3 initech on L2 (Anna is its deputy), MT-4 L1 unassigned,
    MT-5 L2 unassigned; returns Anna's reply-token address from MT-1's notice."""
    token_address = _open(stack)
    for sender, subject in (("jane@globex.example", "Boris"), ("ops@initech.example", "Инитех"),
                            ("petr@acme.example", "Ничьё L1"), ("maria@acme.example", "Ничьё L2")):
        stack.deliver(build(from_=sender, subject=subject), mail_from=sender)
    setup = {1: (ANNA, "L1"), 2: ("boris@provider.example", "L1"),
             3: ("vera@provider.example", "L2"), 4: (None, "L1"), 5: (None, "L2")}
    with transaction(stack.factory) as s:
        for ticket_id, (assignee, line) in setup.items():
            ticket = s.get(Ticket, ticket_id)
            assert ticket is not None
            ticket.assignee, ticket.line = assignee, line
    return token_address


def test_queue_on_each_evidence_over_smtp(stack: Stack) -> None:
    token_address = _five_tickets(stack)
    everything = [["MT-1"], ["MT-4"], ["MT-3"]]  # mine, my line's unassigned, my contracts'
    # SMTP AUTH on the submission listener.
    [answer] = stack.submit(ANNA, PASSWORD, build(from_=ANNA, to=QUEUE, subject="q", body=""),
                            QUEUE)
    assert list(answer.rcpt_tos) == [ANNA] and _sections(text_of(answer)) == everything
    # A trusted DKIM pass on plain SMTP, with a filter.
    [answer] = stack.deliver(build(from_=ANNA, to=QUEUE, subject="q", body="#queue acme",
                                   headers=SIGNED), mail_from=ANNA, rcpt=(QUEUE,))
    assert _sections(text_of(answer)) == [["MT-1"], ["MT-4"], []]
    # A reply to a notice, token and DKIM: '#queue' as the first line answers, the ticket is untouched.
    [answer] = stack.deliver(build(from_=ANNA, to=token_address, subject="Re: notice",
                                   body="#queue", headers=SIGNED),
                             mail_from=ANNA, rcpt=(token_address,))
    assert _sections(text_of(answer)) == everything
    ticket = stack.ticket(1)
    assert [a.kind for a in ticket.articles].count("reply") == 0


def test_token_alone_and_forgery_get_a_refusal_that_names_nothing(stack: Stack) -> None:
    token_address = _open(stack)
    # The token and a matching From only: not enough at token+authenticated.
    [refusal] = stack.deliver(build(from_=ANNA, to=token_address, subject="Re: notice",
                                    body="#queue"), mail_from=ANNA, rcpt=(token_address,))
    assert list(refusal.rcpt_tos) == [ANNA]
    assert "MT-1" not in text_of(refusal) and "Принтер" not in text_of(refusal)
    # A forged From with a DKIM result from an untrusted host: refused, nothing listed.
    sent = stack.deliver(build(from_=ANNA, to=QUEUE, subject="q", body="#queue",
                               headers={"Authentication-Results":
                                        "evil.example; dkim=pass header.d=provider.example"}),
                         mail_from="attacker@evil.example", rcpt=(QUEUE,))
    assert all("MT-1" not in text_of(r) for r in sent)
    assert all("attacker@evil.example" not in r.rcpt_tos for r in sent)
    assert [row.outcome for row in stack.spool()][-2:] == ["queue_refused", "queue_refused"]

