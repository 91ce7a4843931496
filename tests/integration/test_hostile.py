"""Hostile mail over the real listener (issue 7): the SMTP dialogue, and who may act where.

Every test sends its input through a real socket into the in-process stack
(aiosmtpd listener → spool → worker → pipeline → outbox → relay → SmtpSink)
and asserts the exact outcome: the SMTP reply code, what was stored, and what
reached (or did not reach) the sink. Raw sockets are used where smtplib would
tidy up the hostile bytes. The other hostile cases live beside this file:
content (``test_hostile_content.py``), robots and loops
(``test_hostile_robots.py``) and bounces (``test_hostile_bounces.py``).
"""

from __future__ import annotations

import time
from pathlib import Path

from hostile_kit import (
    ANNA,
    AUTH_NEEDS_TLS,
    BOGUS_LIMIT,
    CUSTOMER,
    ENGINEERS,
    MUST_STARTTLS,
    OK,
    OTHER_CUSTOMER,
    RECIPIENT_REFUSED,
    TOO_BIG,
    TOO_MANY_COMMANDS,
    TOO_MANY_RECIPIENTS,
    UNRECOGNISED,
    RawSmtp,
    envelope,
    listener,
    open_ticket,
    outcomes,
    raw_mail,
    recipients,
    std_headers,
)
from stack import Stack, text_of
from support.mails import build, new_id

# --- 1. the SMTP dialogue: refusals with clear codes ---------------------------


def test_rcpt_flood_of_50000_recipients_gets_452_after_the_cap_and_stores_nothing(
    stack: Stack,
) -> None:
    port = listener(stack, max_commands=1000)
    client = RawSmtp(port)
    envelope(client)
    # Pipelined in batches of 100, each read before the next is sent: when the
    # server hangs up, unread input would make its kernel reset the connection
    # and drop replies still in flight.
    codes: list[int] = []
    for first in range(0, 50_000, 100):
        batch = b"".join(b"RCPT TO:<support+%d@provider.example>\r\n" % i
                         for i in range(first, first + 100))
        try:
            client.sock.sendall(batch)
            for _ in range(100):
                codes.append(client.reply()[0])
                if codes[-1] == TOO_MANY_COMMANDS:
                    break
        except (EOFError, OSError):
            break
        if codes[-1] == TOO_MANY_COMMANDS:
            break
    assert client.closed(within=2)
    # EHLO and MAIL used 2 commands, the first RCPT 1: 19 more fit under the cap of 20,
    # then 452 until the command budget of the session is spent and it is closed.
    assert codes[:19] == [OK] * 19
    assert set(codes[19:-1]) == {TOO_MANY_RECIPIENTS} and len(codes[19:-1]) == 1000 - 3 - 19
    assert codes[-1] == TOO_MANY_COMMANDS
    assert stack.spool() == []


def test_recipients_past_the_cap_are_not_stored(stack: Stack) -> None:
    client = RawSmtp(stack.port)
    envelope(client)
    replies = [client.cmd(f"RCPT TO:<support+{i}@provider.example>")[0] for i in range(30)]
    assert replies == [OK] * 19 + [TOO_MANY_RECIPIENTS] * 11
    assert client.cmd("DATA")[0] == 354
    assert client.cmd(raw_mail(std_headers()) + b".\r\n")[0] == OK
    client.close()
    [row] = stack.spool()
    assert len(row.rcpt_tos) == 20


def test_100_mb_message_is_refused_with_552_and_nothing_is_spooled(stack: Stack) -> None:
    client = RawSmtp(stack.port, timeout=60)
    envelope(client)
    assert client.cmd("DATA")[0] == 354
    client.sock.sendall(raw_mail(std_headers(), ""))
    line = b"x" * 998 + b"\r\n"
    chunk = line * 1048  # one MiB, built once and sent a hundred times
    for _ in range(100):
        client.sock.sendall(chunk)
    code, text = client.cmd(b".\r\n")
    assert (code, text) == (TOO_BIG, "552 Error: Too much mail data")
    # The session goes on: the next mail is fine.
    assert client.cmd("RSET")[0] == OK
    client.close()
    assert stack.spool() == []


def test_slowloris_idle_client_is_disconnected_after_the_timeout(stack: Stack) -> None:
    client = RawSmtp(listener(stack, timeout=1))
    assert client.cmd("EHLO slow.example")[0] == OK
    started = time.monotonic()
    assert client.closed(within=5)
    assert 0.8 < time.monotonic() - started < 3


def test_slowloris_trickling_data_is_cut_off_and_nothing_is_spooled(stack: Stack) -> None:
    client = RawSmtp(listener(stack, timeout=1))
    envelope(client)
    assert client.cmd("DATA")[0] == 354
    started = time.monotonic()
    # One byte every 0.2 s: each keeps the socket busy, none completes a command,
    # so aiosmtpd's timer (reset only by commands) runs out.
    cut = False
    for byte in raw_mail(std_headers())[:40]:
        try:
            client.sock.sendall(bytes([byte]))
        except OSError:
            cut = True
            break
        if client.closed(within=0.2):
            cut = True
            break
    assert cut and time.monotonic() - started < 3
    assert stack.spool() == []


def test_keepalive_by_rset_is_ended_by_the_session_time_limit(stack: Stack) -> None:
    client = RawSmtp(listener(stack, timeout=5, max_session_seconds=1.0))
    assert client.cmd("EHLO slow.example")[0] == OK
    started = time.monotonic()
    reply = client.cmd("RSET")
    while reply[0] == OK and time.monotonic() - started < 5:
        time.sleep(0.1)
        reply = client.cmd("RSET")
    # The 421 arrives unasked, and the client reads it as the answer to its next RSET.
    assert reply == (421, "421 4.4.2 Session time limit reached, goodbye")
    assert 0.9 < time.monotonic() - started < 2
    assert client.closed(within=2)


def test_command_flood_gets_421_and_the_session_is_closed(stack: Stack) -> None:
    client = RawSmtp(listener(stack, max_commands=50))
    codes = [client.cmd("RSET")[0] for _ in range(50)]
    assert codes == [OK] * 50
    assert client.cmd("RSET") == (TOO_MANY_COMMANDS,
                                  "421 4.7.0 Too many commands in one session, goodbye")
    assert client.closed(within=2)


def test_noop_flood_gets_421_from_the_per_command_budget(stack: Stack) -> None:
    client = RawSmtp(stack.port)
    codes = [client.cmd("NOOP")[0] for _ in range(21)]
    assert codes == [OK] * 20 + [TOO_MANY_COMMANDS]
    assert client.closed(within=2)


def test_bogus_commands_are_refused_then_the_session_is_closed(stack: Stack) -> None:
    client = RawSmtp(stack.port)
    codes = [client.cmd(f"XPLOIT{i}")[0] for i in range(5)]
    assert codes == [UNRECOGNISED] * 4 + [BOGUS_LIMIT]
    assert client.closed(within=2)


def test_open_relay_attempt_is_refused_at_rcpt(stack: Stack) -> None:
    client = RawSmtp(stack.port)
    assert client.cmd("EHLO spammer.example")[0] == OK
    assert client.cmd("MAIL FROM:<spammer@evil.example>")[0] == OK
    code, text = client.cmd("RCPT TO:<victim@gmail.example>")
    assert (code, text) == (RECIPIENT_REFUSED,
                            "550 5.1.1 <victim@gmail.example>: recipient not accepted here")
    assert client.cmd("DATA")[0] == 503
    assert stack.spool() == []


def test_smuggled_second_message_stays_inside_the_first(stack: Stack) -> None:
    client = RawSmtp(stack.port)
    envelope(client)
    assert client.cmd("DATA")[0] == 354
    smuggled = (raw_mail(std_headers(subject="First"), "Body one.")
                + b"\n.\nMAIL FROM:<ceo@acme.example>\nRCPT TO:<support@provider.example>\n"
                b"DATA\nFrom: ceo@acme.example\nSubject: Smuggled\n\nPay now.\n")
    assert client.cmd(smuggled + b"\r\n.\r\n")[0] == OK
    client.close()
    stack.settle()
    [ticket] = stack.tickets()
    assert ticket.subject == "First"
    assert "Smuggled" in ticket.articles[0].text
    assert len(stack.spool()) == 1


def test_starttls_required_before_mail_and_auth_only_after_tls(stack: Stack,
                                                              tmp_path: Path) -> None:
    from support.smtp_sink import make_test_cert

    cert, key = make_test_cert(tmp_path)
    client = RawSmtp(listener(stack, require_starttls=True, tls_cert=cert, tls_key=key))
    code, ehlo = client.cmd("EHLO client.example")
    assert code == OK and "STARTTLS" in ehlo and "AUTH" not in ehlo
    assert client.cmd("MAIL FROM:<ivan@acme.example>") == (
        MUST_STARTTLS, "530 Must issue a STARTTLS command first")
    assert client.cmd("AUTH PLAIN AGFubmEAc2VjcmV0")[0] == MUST_STARTTLS
    assert stack.spool() == []


def test_auth_before_tls_is_refused_with_538(stack: Stack, tmp_path: Path) -> None:
    from aiosmtpd.smtp import AuthResult
    from support.smtp_sink import make_test_cert

    cert, key = make_test_cert(tmp_path)

    def accept_all(*args: object) -> AuthResult:
        return AuthResult(success=True)

    client = RawSmtp(listener(stack, tls_cert=cert, tls_key=key, authenticator=accept_all))
    code, ehlo = client.cmd("EHLO client.example")
    assert code == OK and "AUTH" not in ehlo
    assert client.cmd("AUTH PLAIN AGFubmEAc2VjcmV0") == (
        AUTH_NEEDS_TLS, "538 5.7.11 Encryption required for requested authentication mechanism")


# --- 3. who may act and which thread they may join ---------------------------


def test_forged_engineer_command_changes_nothing_and_warns_only_the_real_engineer(
    stack: Stack,
) -> None:
    ticket, _ = open_ticket(stack)
    sent = stack.deliver(
        build(from_=ANNA, subject=f"Re: [#MT-{ticket.id}] x",
              body="#status closed\n#cc attacker@evil.example\nЗакрываем."),
        mail_from="attacker@evil.example")
    assert recipients(sent) == [[ANNA]]
    assert f"MT-{ticket.id}" in text_of(sent[0]) and ANNA in text_of(sent[0])
    after = stack.ticket(ticket.id)
    assert after.status == "new" and [c.address for c in after.contacts] == [CUSTOMER]
    assert outcomes(stack)[-1] == "forged_engineer"


def test_forged_authentication_results_below_the_trusted_one_are_ignored(stack: Stack) -> None:
    ticket, _ = open_ticket(stack)
    sent = stack.deliver(
        build(from_=ANNA, subject=f"Re: [#MT-{ticket.id}] x", body="#status closed\nok",
              headers={"Authentication-Results": "mx.provider.example; dkim=fail"
                       " header.d=provider.example",
                       "X-Original-Authentication-Results":
                       "mx.provider.example; dkim=pass header.d=provider.example"}),
        mail_from=ANNA)
    assert CUSTOMER not in [r for m in sent for r in m.rcpt_tos]
    assert stack.ticket(ticket.id).status == "new"


def test_guessed_message_id_cannot_join_another_customers_ticket(stack: Stack) -> None:
    ticket, ack = open_ticket(stack)
    customer_mid = ticket.articles[0].message_id
    sent = stack.deliver(
        build(from_=OTHER_CUSTOMER, subject="Re: hello", body="Let me in",
              in_reply_to=customer_mid,
              references=[str(ack.message["Message-ID"]).strip("<>")]),
        mail_from=OTHER_CUSTOMER)
    first, second = stack.tickets()
    assert [a.kind for a in stack.ticket(first.id).articles] == ["customer", "ack"]
    assert second.requester == OTHER_CUSTOMER and second.contract_id == "globex"
    [their_ack] = [m for m in sent if OTHER_CUSTOMER in m.rcpt_tos]
    assert "Принтер" not in their_ack.data.decode("utf-8", "replace")
    assert f"MT-{first.id}" not in str(their_ack.message["Subject"])


def test_guessed_ticket_tag_cannot_join_another_customers_ticket(stack: Stack) -> None:
    ticket, _ = open_ticket(stack)
    stack.deliver(build(from_=OTHER_CUSTOMER, subject=f"Re: [#MT-{ticket.id}] hijack",
                        body="close it"), mail_from=OTHER_CUSTOMER)
    assert len(stack.tickets()) == 2
    assert [a.kind for a in stack.ticket(ticket.id).articles] == ["customer", "ack"]


def test_guessed_thread_root_id_cannot_join_another_customers_ticket(stack: Stack) -> None:
    ticket, _ = open_ticket(stack)
    stack.deliver(build(from_=OTHER_CUSTOMER, subject="x",
                        references=[f"ticket-{ticket.id}@mt.provider.example"]),
                  mail_from=OTHER_CUSTOMER)
    assert len(stack.tickets()) == 2
    assert len(stack.ticket(ticket.id).articles) == 2


def test_guessed_reply_token_gives_no_engineer_rights(stack: Stack) -> None:
    ticket, _ = open_ticket(stack)
    fake_token = f"support+r1-{ticket.id}-20000-{'a' * 26}@provider.example"
    stack.deliver(build(from_=ANNA, to=fake_token, subject="x", body="#status closed\nok"),
                  mail_from=ANNA, rcpt=(fake_token,))
    assert stack.ticket(ticket.id).status == "new"
    assert outcomes(stack)[-1] == "forged_engineer"


def test_duplicate_message_id_flood_is_stored_once(stack: Stack) -> None:
    mid = new_id("acme.example")
    raw = build(from_=CUSTOMER, message_id=mid)
    for _ in range(50):
        stack.send(raw, mail_from=CUSTOMER)
    stack.settle(30)
    [ticket] = stack.tickets()
    assert [a.kind for a in ticket.articles] == ["customer", "ack"]
    assert sorted(outcomes(stack)) == sorted(["new"] + ["duplicate"] * 49)
    assert recipients(stack.sink.messages) == sorted([[CUSTOMER], *ENGINEERS])


def test_bare_cr_and_bare_lf_inside_the_header_block_do_not_end_it(stack: Stack) -> None:
    """Issue 18 point 6, with the exact bytes over a real socket (smtplib sends bytes as given).

    Before the fix a bare CR ended the header block: the Message-ID fell into
    the body, so the same mail delivered twice opened two tickets.
    """
    mid = new_id("acme.example")
    raw = (f"From: {CUSTOMER}\r\nTo: support@provider.example\r\n"
           "Subject: broken\rheader\r\n"
           "X-Mailer: old\nthing\r\n"
           f"Message-ID: <{mid}>\r\n"
           "Date: Fri, 20 Nov 2026 19:50:00 +0300\r\n"
           "\r\nThe printer is down.\r\n").encode()
    assert b"\rh" in raw and b"d\nt" in raw
    stack.send(raw, mail_from=CUSTOMER)
    stack.send(raw, mail_from=CUSTOMER)
    stack.settle()
    [ticket] = stack.tickets()
    customer = [a for a in ticket.articles if a.kind == "customer"]
    assert [(a.subject, a.message_id, a.text.strip()) for a in customer] == [
        ("broken header", mid, "The printer is down.")]
    assert sorted(outcomes(stack)) == ["duplicate", "new"]
