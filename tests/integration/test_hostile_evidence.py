"""Engineer evidence over real sockets (issue 18): what a reply token alone may do.

Each test sends through the in-process stack (aiosmtpd listener or the
submission listener → spool → worker → pipeline → outbox → SmtpSink) and
checks what changed, what reached the sink, the spool outcome, the audit
event and the log line. The stack runs at ``token+authenticated`` unless a
test says otherwise: the test config trusts ``mx.provider.example``, so that
is the level such a site gets by default.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hostile_kit import ANNA, BORIS, CUSTOMER, SUPPORT, outcomes, raw_mail, recipients
from stack import Stack, text_of
from support.configs import SECRET, engineers
from support.mails import build, new_id
from support.smtp_sink import Received, SmtpSink, make_test_cert

from mailticket.cli.entry import main
from mailticket.config.passwords import hash_password
from mailticket.mail.addresses import make_reply_token, reply_address

STRICT = {"engineer_evidence": "token+authenticated"}
MX = "mx.provider.example"
SIGNED = {"Authentication-Results": f"{MX}; dkim=pass header.d=provider.example"}
PASSWORD = "s3cret-pass"


@pytest.fixture
def stack(sqlite_url: str, tmp_path: Path) -> Iterator[Stack]:
    """The stack with a submission listener; Anna and Boris may log in."""
    cert, key = make_test_cert(tmp_path)
    people = {address: dataclasses.replace(person, password_hash=hash_password(PASSWORD))
              for address, person in engineers().items()}
    with SmtpSink() as sink:
        s = Stack(tmp_path, sqlite_url, sink, submission_tls=(cert, key), engineers=people,
                  mail=STRICT)
        try:
            yield s
        finally:
            s.close()


def open_ticket(stack: Stack) -> tuple[int, dict[str, str]]:
    """The customer writes; returns the ticket number and each engineer's Reply-To."""
    sent = stack.deliver(build(from_=CUSTOMER, subject="Принтер не печатает"), mail_from=CUSTOMER)
    number = stack.tickets()[-1].id
    return number, {r.rcpt_tos[0]: str(r.message["Reply-To"]) for r in sent
                    if r.rcpt_tos[0] in (ANNA, BORIS)}


def reply(stack: Stack, token_address: str, body: str, *, from_: str = ANNA,
          headers: dict[str, str] | None = None) -> list[Received]:
    """An engineer's reply through a token address, over plain SMTP."""
    return stack.deliver(build(from_=from_, to=token_address, subject="Re: notice", body=body,
                               headers=headers),
                         mail_from=from_, rcpt=(token_address,))


def submit(stack: Stack, login: str, raw: bytes, rcpt: str) -> list[Received]:
    return stack.submit(login, PASSWORD, raw, rcpt)


def refusals(stack: Stack, ticket_id: int | None = None) -> list[str]:
    return [str(e.detail["reason"]) for e in stack.audit(ticket_id)
            if e.action == "evidence_refused"]


def to_customer(sent: list[Received]) -> list[Received]:
    return [r for r in sent if CUSTOMER in r.rcpt_tos]


def write_cli_config(tmp_path: Path, stack: Stack) -> str:
    path = tmp_path / "cli.toml"
    path.write_text(f'[database]\nurl = "{stack.config.database.url}"\n', encoding="utf-8")
    return str(path)


# --- 1. evidence levels -------------------------------------------------------------------


def test_token_and_from_alone_keep_an_unverified_note_and_tell_the_engineer(
    stack: Stack, caplog: pytest.LogCaptureFixture,
) -> None:
    number, reply_to = open_ticket(stack)
    caplog.set_level(logging.WARNING, logger="mailticket.engineer")
    sent = reply(stack, reply_to[ANNA], "#status closed\nЗакрываем, всё работает.")
    assert to_customer(sent) == []
    assert recipients(sent) == [[ANNA]]
    assert "через порт отправки" in text_of(sent[0]) and "DKIM" in text_of(sent[0])
    ticket = stack.ticket(number)
    assert ticket.status == "new"
    note = ticket.articles[-1]
    assert (note.kind, note.text) == ("note", "[unverified] #status closed\nЗакрываем, всё работает.")
    assert outcomes(stack)[-1] == "unverified_note"
    assert refusals(stack, number) == ["weak_evidence"]
    assert [r.reason for r in caplog.records  # type: ignore[attr-defined]
            if r.getMessage() == "engineer evidence refused"] == ["weak_evidence"]


def test_the_same_reply_acts_when_sent_through_submission(stack: Stack) -> None:
    number, reply_to = open_ticket(stack)
    sent = submit(stack, ANNA, build(from_=ANNA, to=reply_to[ANNA], subject="Re: notice",
                                     body="#status waiting\nПришлите логи."), reply_to[ANNA])
    [answer] = to_customer(sent)
    assert text_of(answer).strip().startswith("Пришлите логи.")
    assert stack.ticket(number).status == "waiting"
    assert refusals(stack) == []


def test_token_plus_sender_level_lets_the_token_act(sqlite_url: str, tmp_path: Path) -> None:
    with SmtpSink() as sink:
        stack = Stack(tmp_path, sqlite_url, sink, mail={"engineer_evidence": "token+sender"})
        try:
            number, reply_to = open_ticket(stack)
            sent = reply(stack, reply_to[ANNA], "#status waiting\nПришлите логи.")
            assert len(to_customer(sent)) == 1
            assert stack.ticket(number).status == "waiting"
        finally:
            stack.close()


# --- 2. replays and old tokens ------------------------------------------------------------


def test_a_replayed_command_mail_with_a_new_message_id_does_nothing(stack: Stack) -> None:
    number, reply_to = open_ticket(stack)
    body = "#time 30\nЗаменили картридж."
    first = reply(stack, reply_to[ANNA], body, headers=SIGNED)
    assert len(to_customer(first)) == 1
    again = reply(stack, reply_to[ANNA], body, headers=SIGNED)  # build() makes a new Message-ID
    assert to_customer(again) == []
    assert recipients(again) == [[ANNA]]
    assert stack.ticket(number).time_spent_minutes == 30
    assert outcomes(stack)[-1] == "replayed"
    assert refusals(stack, number) == ["replayed"]


def test_commands_from_a_token_older_than_command_token_days_are_refused(stack: Stack) -> None:
    number, _ = open_ticket(stack)
    issued = datetime.now(UTC).date() - timedelta(days=20)
    old = reply_address(SUPPORT, make_reply_token(SECRET, number, ANNA, issued))
    sent = reply(stack, old, "#status closed\nЗакрываем.", headers=SIGNED)
    assert to_customer(sent) == [] and recipients(sent) == [[ANNA]]
    assert stack.ticket(number).status == "new"
    assert outcomes(stack)[-1] == "command_token_expired"
    assert refusals(stack, number) == ["token_expired"]
    # A plain reply keeps the 90-day window.
    sent = reply(stack, old, "Проверьте ещё раз, пожалуйста.", headers=SIGNED)
    assert len(to_customer(sent)) == 1


# --- 3. duplicate single-occurrence fields ------------------------------------------------


def test_two_from_fields_one_signed_run_no_command(stack: Stack) -> None:
    number, reply_to = open_ticket(stack)
    raw = raw_mail([f"From: {ANNA}", "From: attacker@evil.example", f"To: {reply_to[ANNA]}",
                    f"Subject: Re: [#MT-{number}] x", f"Message-ID: <{new_id('evil.example')}>",
                    f"Authentication-Results: {MX}; dkim=pass header.d=provider.example"],
                   "#status closed\nЗакрываем.\n")
    sent = stack.deliver(raw, mail_from="attacker@evil.example", rcpt=(reply_to[ANNA],))
    assert sent == []
    assert stack.ticket(number).status == "new"
    row = stack.spool()[-1]
    assert (row.state, row.outcome) == ("quarantined", "ambiguous_headers")
    assert row.last_error is not None and row.last_error.startswith("duplicate_from:")
    assert refusals(stack) == ["duplicate_from"]


@pytest.mark.parametrize("extra", [["Subject: Второй заголовок"], ["From: other@acme.example"]])
def test_a_customer_mail_with_a_duplicate_field_opens_nothing_and_is_listed(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
) -> None:
    raw = raw_mail([f"From: {CUSTOMER}", f"To: {SUPPORT}", "Subject: Помогите",
                    f"Message-ID: <{new_id('acme.example')}>", *extra])
    assert stack.deliver(raw, mail_from=CUSTOMER) == []
    assert stack.tickets() == []
    config = write_cli_config(tmp_path, stack)
    assert main(["-c", config, "spool", "list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["state"], row["outcome"]) == ("quarantined", "ambiguous_headers")
    assert row["last_error"].split(":")[0] in ("duplicate_header", "duplicate_from")


def test_from_with_two_addresses_and_no_sender_is_quarantined(stack: Stack) -> None:
    raw = raw_mail([f"From: {CUSTOMER}, other@acme.example", f"To: {SUPPORT}", "Subject: Hi",
                    f"Message-ID: <{new_id('acme.example')}>"])
    assert stack.deliver(raw, mail_from=CUSTOMER) == []
    assert stack.tickets() == []
    assert outcomes(stack) == ["ambiguous_headers"]
    assert refusals(stack) == ["multiple_from"]


# --- 4. DKIM evidence ---------------------------------------------------------------------


def test_a_dkim_pass_for_a_signature_with_a_length_tag_is_not_evidence(stack: Stack) -> None:
    number, _ = open_ticket(stack)
    signed_part = "Проверим завтра.\n"
    headers = {
        "DKIM-Signature": "v=1; a=rsa-sha256; c=relaxed/relaxed; d=provider.example; s=mail;"
                          f" l={len(signed_part.encode())}; h=from:to:subject; bh=AAAA; b=Zm9vYmFy",
        "Authentication-Results": f"{MX}; dkim=pass header.d=provider.example header.b=Zm9vYmFy",
    }
    sent = stack.deliver(build(from_=ANNA, subject=f"Re: [#MT-{number}] x",
                               body=signed_part + "#status closed\n#priority critical\nГотово.",
                               headers=headers), mail_from=ANNA)
    assert to_customer(sent) == []
    ticket = stack.ticket(number)
    assert (ticket.status, ticket.priority) == ("new", "minor")
    assert outcomes(stack)[-1] == "forged_engineer"
    assert refusals(stack, number) == ["dkim_length_tag"]


def test_a_dkim_pass_not_aligned_with_from_is_not_evidence(stack: Stack) -> None:
    number, _ = open_ticket(stack)
    sent = stack.deliver(build(from_=ANNA, subject=f"Re: [#MT-{number}] x",
                               body="#status closed\nok",
                               headers={"Authentication-Results":
                                        f"{MX}; dkim=pass header.d=evil.example"}),
                         mail_from=ANNA)
    assert to_customer(sent) == []
    assert stack.ticket(number).status == "new"
    assert refusals(stack, number) == ["dkim_unaligned"]


# --- 5. every refusal leaves a trace ------------------------------------------------------


def test_engineer_b_logged_in_replying_through_a_token_of_a_is_refused_with_the_reason(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    number, reply_to = open_ticket(stack)
    caplog.set_level(logging.WARNING, logger="mailticket.engineer")
    sent = submit(stack, BORIS, build(from_=BORIS, to=reply_to[ANNA], subject="Re: notice",
                                      body="#status closed\nЗакрываю."), reply_to[ANNA])
    assert to_customer(sent) == [] and recipients(sent) == [[BORIS]]
    assert stack.ticket(number).status == "new"
    row = stack.spool()[-1]
    assert row.outcome == "token_mismatch"
    assert row.last_error is not None and row.last_error.startswith("token_owner_mismatch:")
    assert [r.reason for r in caplog.records  # type: ignore[attr-defined]
            if r.getMessage() == "engineer evidence refused"] == ["token_owner_mismatch"]
    config = write_cli_config(tmp_path, stack)
    assert main(["-c", config, "tickets", "show", f"MT-{number}", "--json"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    refused = [e["detail"] for e in events if e["action"] == "evidence_refused"]
    assert [(d["reason"], ANNA in d["detail"]) for d in refused] == [("token_owner_mismatch", True)]


def test_forged_authentication_results_are_audited_on_the_ticket(stack: Stack) -> None:
    number, _ = open_ticket(stack)
    raw = raw_mail([f"Authentication-Results: {MX}; dkim=fail header.d=provider.example",
                    f"Authentication-Results: {MX}; dkim=pass header.d=provider.example",
                    f"From: {ANNA}", f"To: {SUPPORT}", f"Subject: Re: [#MT-{number}] x",
                    f"Message-ID: <{new_id('evil.example')}>"], "#status closed\nok\n")
    sent = stack.deliver(raw, mail_from=ANNA)
    assert to_customer(sent) == []
    assert stack.ticket(number).status == "new"
    assert outcomes(stack)[-1] == "forged_engineer"
    assert refusals(stack, number) == ["forged_authres"]
