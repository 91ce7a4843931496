"""Customer ↔ engineer conversations over real sockets (listener → pipeline → relay → sink).

These run at the evidence level a site with a trusted MTA gets by default,
``token+authenticated``: engineers reply with their token and a DKIM pass that
the trusted MTA (``mx.provider.example``) vouches for, as a signing mail system does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from stack import Stack, text_of
from support.mails import build, new_id
from support.smtp_sink import SmtpSink

CUSTOMER = "ivan@acme.example"
ANNA = "anna@provider.example"
BORIS = "boris@provider.example"


# What the trusted MTA writes for a mail from provider.example's own signing mail system.
SIGNED = {"Authentication-Results": "mx.provider.example; dkim=pass header.d=provider.example"}
STRICT = {"engineer_evidence": "token+authenticated"}


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    with SmtpSink() as sink:
        s = Stack(tmp_path, db_url, sink, mail=STRICT)
        try:
            yield s
        finally:
            s.close()


def open_ticket(stack: Stack) -> tuple[int, str, dict[str, str]]:
    """Customer writes; returns ticket number, customer Message-ID and each engineer's Reply-To."""
    mid = new_id("acme.example")
    sent = stack.deliver(build(from_=f"Иван <{CUSTOMER}>", message_id=mid), mail_from=CUSTOMER)
    [ticket] = stack.tickets()
    reply_to = {r.rcpt_tos[0]: str(r.message["Reply-To"]) for r in sent if r.rcpt_tos[0] != CUSTOMER}
    assert set(reply_to) == {ANNA, BORIS}
    return ticket.id, mid, reply_to


def engineer_reply(stack: Stack, reply_to: str, body: str, *, from_: str = ANNA,
                   subject: str = "Re: notice", in_reply_to: str | None = None,
                   headers: dict[str, str] | None = None) -> list:  # type: ignore[type-arg]
    """An engineer's reply through their token, DKIM-signed unless ``headers`` say otherwise."""
    return stack.deliver(
        build(from_=from_, to=reply_to, subject=subject, body=body, in_reply_to=in_reply_to,
              headers=SIGNED if headers is None else headers),
        mail_from=from_, rcpt=(reply_to,),
    )


GMAIL_QUOTE = (
    "\n\nпт, 20 нояб. 2026 г. в 19:50, Support <support@provider.example>:\n"
    "> Новая заявка MT-1\n> Принтер не печатает\n"
)


def test_full_conversation(stack: Stack) -> None:
    number, customer_mid, reply_to = open_ticket(stack)

    # Engineer answers with a command and text, above Gmail's quoted notice.
    sent = engineer_reply(stack, reply_to[ANNA],
                          "#priority critical\n\nПерезагрузите принтер, пожалуйста.\n\n--\nАнна"
                          + GMAIL_QUOTE)
    to_customer = [r for r in sent if CUSTOMER in r.rcpt_tos]
    to_anna = [r for r in sent if list(r.rcpt_tos) == [ANNA]]
    assert len(to_customer) == 1 and len(to_anna) == 1
    reply = to_customer[0]
    assert text_of(reply).strip().startswith("Перезагрузите принтер, пожалуйста.")
    assert "#priority" not in text_of(reply) and "Новая заявка" not in text_of(reply)
    assert ANNA not in str(reply.message["From"]) and ANNA not in reply.data.decode(errors="replace")
    assert reply.message["In-Reply-To"] == f"<{customer_mid}>"
    assert f"[#MT-{number}]" in str(reply.message["Subject"])
    assert reply.message["Auto-Submitted"] == "no"
    assert "priority" in text_of(to_anna[0]).lower() or "приоритет" in text_of(to_anna[0]).lower()
    ticket = stack.ticket(number)
    assert (ticket.priority, ticket.status, ticket.assignee) == ("critical", "open", ANNA)
    assert ticket.first_response_at is not None

    # Customer answers our reply: it threads, and the assignee (only) hears of it.
    sent = stack.deliver(build(from_=CUSTOMER, subject=f"Re: [#MT-{number}] x", body="Не помогло",
                               in_reply_to=reply.message["Message-ID"].strip("<>")),
                         mail_from=CUSTOMER)
    assert [list(r.rcpt_tos) for r in sent] == [[ANNA]]
    notice_reply_to = str(sent[0].message["Reply-To"])
    assert "Не помогло" in text_of(sent[0])

    # Engineer resolves with a final word.
    sent = engineer_reply(stack, notice_reply_to, "#status resolved\nЗаменили картридж.")
    personal = [r for r in sent if CUSTOMER in r.rcpt_tos and r.message["Auto-Submitted"] == "no"]
    assert [text_of(r).strip().splitlines()[0] for r in personal] == ["Заменили картридж."]
    ticket = stack.ticket(number)
    assert ticket.status == "resolved"
    actions = [(e.action, e.evidence) for e in stack.audit(number)]
    assert ("priority", "reply_token") in actions and ("status", "reply_token") in actions


def test_internal_note_reaches_no_customer(stack: Stack) -> None:
    number, _, reply_to = open_ticket(stack)
    secret_text = "Клиент должен нам за три месяца"
    sent = engineer_reply(stack, reply_to[BORIS], f"#internal\n{secret_text}", from_=BORIS)
    assert all(CUSTOMER not in r.rcpt_tos for r in sent)
    assert all(secret_text not in r.data.decode("utf-8", "replace") for r in sent if list(r.rcpt_tos) != [BORIS])
    ticket = stack.ticket(number)
    assert ticket.articles[-1].kind == "note" and secret_text in ticket.articles[-1].text


def test_forged_from_without_token_changes_nothing(stack: Stack) -> None:
    number, _, _ = open_ticket(stack)
    sent = stack.deliver(build(from_=ANNA, subject=f"Re: [#MT-{number}] x",
                               body="#status closed\nЗакрываем."), mail_from="attacker@evil.example")
    assert [list(r.rcpt_tos) for r in sent] == [[ANNA]]
    assert "от вашего имени" in text_of(sent[0]) and f"[#MT-{number}]" in text_of(sent[0])
    ticket = stack.ticket(number)
    assert ticket.status == "new"
    assert [a.kind for a in ticket.articles] == ["customer", "ack"]
    assert stack.spool()[-1].outcome == "forged_engineer"


def test_token_of_another_engineer_is_refused(stack: Stack) -> None:
    number, _, reply_to = open_ticket(stack)
    sent = engineer_reply(stack, reply_to[ANNA], "#status closed\nok", from_=BORIS)
    assert all(CUSTOMER not in r.rcpt_tos for r in sent)
    assert stack.ticket(number).status == "new"


def test_token_for_another_ticket_is_refused(stack: Stack) -> None:
    first, _, reply_to = open_ticket(stack)
    stack.deliver(build(from_=CUSTOMER, subject="Второй вопрос"), mail_from=CUSTOMER)
    second = stack.tickets()[-1].id
    sent = engineer_reply(stack, reply_to[ANNA], "#status closed\nok",
                          subject=f"Re: [#MT-{second}] Второй вопрос")
    assert all(CUSTOMER not in r.rcpt_tos for r in sent)
    assert stack.ticket(first).status == "new" and stack.ticket(second).status == "new"
    assert stack.spool()[-1].outcome == "token_mismatch"


def test_untrusted_authentication_results_are_ignored(stack: Stack) -> None:
    number, _, _ = open_ticket(stack)
    sent = stack.deliver(
        build(from_=ANNA, subject=f"Re: [#MT-{number}] x", body="#status closed\nok",
              headers={"Authentication-Results": "evil.example; dkim=pass header.d=provider.example"}),
        mail_from=ANNA)
    assert all(CUSTOMER not in r.rcpt_tos for r in sent)
    assert stack.ticket(number).status == "new"


def test_trusted_dkim_pass_authenticates_an_engineer(stack: Stack) -> None:
    number, _, _ = open_ticket(stack)
    sent = stack.deliver(
        build(from_=ANNA, subject=f"Re: [#MT-{number}] x", body="#status waiting\nПришлите логи.",
              headers={"Authentication-Results":
                       "mx.provider.example; dkim=pass header.d=provider.example header.i=@provider.example"}),
        mail_from=ANNA)
    assert [text_of(r).strip().splitlines()[0] for r in sent if CUSTOMER in r.rcpt_tos] == [
        "Пришлите логи."]
    assert stack.ticket(number).status == "waiting"


def test_bad_command_sends_nothing_to_the_customer(stack: Stack) -> None:
    number, _, reply_to = open_ticket(stack)
    sent = engineer_reply(stack, reply_to[ANNA], "#priority critical\n#status flying\nТекст ответа")
    assert [list(r.rcpt_tos) for r in sent] == [[ANNA]]
    body = text_of(sent[0])
    assert "flying" in body
    ticket = stack.ticket(number)
    assert (ticket.priority, ticket.status) == ("minor", "new")


def test_customer_colleague_in_cc_is_copied(stack: Stack) -> None:
    stack.deliver(build(from_=CUSTOMER, cc=["olga@acme.example", "outsider@other.example"]),
                  mail_from=CUSTOMER)
    [ticket] = stack.tickets()
    assert sorted(c.address for c in ticket.contacts) == ["ivan@acme.example", "olga@acme.example"]


def test_customer_closes_by_phrase(stack: Stack) -> None:
    number, _, _ = open_ticket(stack)
    sent = stack.deliver(build(from_=CUSTOMER, subject=f"Re: [#MT-{number}] x",
                               body="#закрыть\nСпасибо, всё заработало."), mail_from=CUSTOMER)
    assert stack.ticket(number).status == "closed"
    assert all(CUSTOMER not in r.rcpt_tos for r in sent)


def test_reply_after_reopen_window_opens_a_linked_ticket(stack: Stack) -> None:
    number, _, reply_to = open_ticket(stack)
    engineer_reply(stack, reply_to[ANNA], "#status resolved\nГотово.")
    # Age the resolution past the 14-day window, as if the customer wrote weeks later.
    from datetime import timedelta

    from mailticket.store.db import transaction
    from mailticket.store.schema import Ticket

    with transaction(stack.factory) as s:
        t = s.get(Ticket, number)
        assert t is not None and t.resolved_at is not None
        t.resolved_at -= timedelta(days=15)
    stack.deliver(build(from_=CUSTOMER, subject=f"Re: [#MT-{number}] Принтер",
                        body="Снова не печатает"), mail_from=CUSTOMER)
    old, new = stack.tickets()
    assert old.status == "resolved" and new.status == "new"
    assert new.subject == "[#MT-1] Принтер" or new.subject.endswith("Принтер")
    assert any(e.action == "opened" and e.detail.get("follows") == f"MT-{number}"
               for e in stack.audit(new.id))


def test_reply_within_window_reopens(stack: Stack) -> None:
    number, _, reply_to = open_ticket(stack)
    engineer_reply(stack, reply_to[ANNA], "#status resolved\nГотово.")
    sent = stack.deliver(build(from_=CUSTOMER, subject=f"Re: [#MT-{number}] x", body="Опять"),
                         mail_from=CUSTOMER)
    assert stack.ticket(number).status == "open"
    assert [list(r.rcpt_tos) for r in sent] == [[ANNA]]


def test_engineer_attachment_is_passed_to_the_customer(stack: Stack) -> None:
    _number, _, reply_to = open_ticket(stack)
    sent = stack.deliver(
        build(from_=ANNA, to=reply_to[ANNA], subject="Re: x", body="Инструкция во вложении.",
              attachments=[("инструкция.pdf", "application/pdf", b"%PDF-1.4 guide")],
              headers=SIGNED),
        mail_from=ANNA, rcpt=(reply_to[ANNA],))
    [reply] = [r for r in sent if CUSTOMER in r.rcpt_tos]
    files = [(p.get_filename(), p.get_content()) for p in reply.message.iter_attachments()]
    assert files == [("инструкция.pdf", b"%PDF-1.4 guide")]


def test_submission_auth_is_evidence_without_a_token(db_url: str, tmp_path: Path) -> None:
    import dataclasses
    import smtplib
    import ssl

    from support.configs import engineers
    from support.smtp_sink import make_test_cert

    from mailticket.config.passwords import hash_password

    cert, key = make_test_cert(tmp_path)
    people = engineers()
    people[ANNA] = dataclasses.replace(people[ANNA], password_hash=hash_password("s3cret-pass"))
    with SmtpSink() as sink:
        stack = Stack(tmp_path, db_url, sink, submission_tls=(cert, key), engineers=people,
                      mail=STRICT)
        try:
            number, _, _ = open_ticket(stack)
            raw = build(from_=ANNA, subject=f"Re: [#MT-{number}] x", body="#status waiting\nЖдём логи.")
            context = ssl.create_default_context(cafile=str(cert))
            assert stack.submission_port is not None
            with smtplib.SMTP("127.0.0.1", stack.submission_port, timeout=10) as client:
                client.starttls(context=context)
                client.ehlo()
                with pytest.raises(smtplib.SMTPAuthenticationError):
                    client.login(ANNA, "wrong-password")
                client.login(ANNA, "s3cret-pass")
                client.sendmail(ANNA, ["support@provider.example"], raw)
            stack.settle()
            assert stack.ticket(number).status == "waiting"
            assert ("status", "smtp_auth") in [(e.action, e.evidence) for e in stack.audit(number)]
        finally:
            stack.close()
