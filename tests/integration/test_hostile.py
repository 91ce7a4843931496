"""Hostile and broken mail over the real listener (issue 7): what each gets, stores and sends.

Every test sends its input through a real socket into the in-process stack
(aiosmtpd listener → spool → worker → pipeline → outbox → relay → SmtpSink)
and asserts the exact outcome: the SMTP reply code, what was stored, and what
reached (or did not reach) the sink. Raw sockets are used where smtplib would
tidy up the hostile bytes. SQLite unless the backend matters (NUL bytes).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from stack import Stack, text_of
from support.mails import build, new_id
from support.smtp_sink import Received, SmtpSink

from mailticket import notify, suppression
from mailticket.config import ListenerConfig
from mailticket.store.db import transaction
from mailticket.store.schema import (
    AddressSuppression,
    AutoReplyLog,
    Blob,
    DeliveryFailure,
    QueueState,
    Ticket,
)
from mailticket.transport.lmtp import start_listener

CUSTOMER = "ivan@acme.example"
OTHER_CUSTOMER = "john@globex.example"
ANNA = "anna@provider.example"
BORIS = "boris@provider.example"
SUPPORT = "support@provider.example"
ENGINEERS = [[ANNA], [BORIS]]

OK = 250
TOO_MANY_COMMANDS = 421
TOO_MANY_RECIPIENTS = 452
UNRECOGNISED = 500
BOGUS_LIMIT = 502
MUST_STARTTLS = 530
AUTH_NEEDS_TLS = 538
RECIPIENT_REFUSED = 550
TOO_BIG = 552


@pytest.fixture
def stack(sqlite_url: str, tmp_path: Path) -> Iterator[Stack]:
    with SmtpSink() as sink:
        s = Stack(tmp_path, sqlite_url, sink)
        try:
            yield s
        finally:
            s.close()


def make_stack(tmp_path: Path, url: str, sink: SmtpSink, **overrides: Any) -> Stack:
    return Stack(tmp_path, url, sink, **overrides)


# --- helpers -----------------------------------------------------------------


def raw_mail(headers: list[str], body: str | bytes = "Hello.\n") -> bytes:
    """A mail assembled byte by byte: hostile headers survive exactly as written."""
    data = body.encode() if isinstance(body, str) else body
    head = b"".join((h if isinstance(h, bytes) else h.encode("utf-8")) + b"\r\n" for h in headers)
    return head + b"\r\n" + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def std_headers(from_: str = CUSTOMER, subject: str = "Help", mid: str | None = None) -> list[str]:
    return [f"From: {from_}", f"To: {SUPPORT}", f"Subject: {subject}",
            f"Message-ID: <{mid or new_id('acme.example')}>",
            "Date: Fri, 20 Nov 2026 19:50:00 +0300"]


class RawSmtp:
    """A bare SMTP client over a socket: sends exactly the bytes it is given."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.greeting = self.reply()

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self) -> tuple[int, str]:
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return int(lines[-1][:3]), b"\n".join(lines).decode("utf-8", "replace")

    def cmd(self, data: bytes | str) -> tuple[int, str]:
        self.sock.sendall(data.encode() + b"\r\n" if isinstance(data, str) else data)
        return self.reply()

    def closed(self, within: float) -> bool:
        """Whether the server closes the connection within ``within`` seconds."""
        self.sock.settimeout(within)
        try:
            while self.sock.recv(4096):
                pass
        except TimeoutError:
            return False
        except OSError:
            return True
        return True

    def close(self) -> None:
        self.sock.close()


def envelope(client: RawSmtp, mail_from: str = CUSTOMER) -> None:
    assert client.cmd("EHLO hostile.example")[0] == OK
    assert client.cmd(f"MAIL FROM:<{mail_from}>")[0] == OK
    assert client.cmd(f"RCPT TO:<{SUPPORT}>")[0] == OK


def listener(stack: Stack, **kwargs: Any) -> int:
    """A second listener on the stack's loop and database with its own limits; returns its port."""
    config_keys = {"timeout", "require_starttls", "tls_cert", "tls_key", "max_recipients",
                   "max_message_size", "submission"}
    cfg = ListenerConfig(host="127.0.0.1", port=0,
                         **{k: v for k, v in kwargs.items() if k in config_keys})
    extra = {k: v for k, v in kwargs.items() if k not in config_keys}
    server = asyncio.run_coroutine_threadsafe(
        start_listener(cfg, stack.factory, stack.config.mail.support_addresses,
                       hostname="mt.test", **extra), stack.loop).result(10)
    return int(server.sockets[0].getsockname()[1])


def recipients(sent: list[Received]) -> list[list[str]]:
    return sorted(list(r.rcpt_tos) for r in sent)


def outcomes(stack: Stack) -> list[str | None]:
    return [row.outcome for row in stack.spool()]


def open_ticket(stack: Stack, subject: str = "Принтер не печатает") -> tuple[Ticket, Received]:
    """The customer writes; returns the new ticket and our acknowledgement."""
    sent = stack.deliver(build(from_=CUSTOMER, subject=subject), mail_from=CUSTOMER)
    [ack] = [r for r in sent if list(r.rcpt_tos) == [CUSTOMER]]
    return stack.tickets()[-1], ack


def dsn(verp: str, *, status: str = "5.1.1", action: str = "failed",
        recipient: str = CUSTOMER) -> bytes:
    """An RFC 3464 delivery status notification, as Postfix writes it."""
    return raw_mail(
        ["From: MAILER-DAEMON@mx.acme.example", f"To: {verp}",
         "Subject: Undelivered Mail Returned to Sender",
         f"Message-ID: <{new_id('mx.acme.example')}>",
         'Content-Type: multipart/report; report-type=delivery-status; boundary="B"',
         "MIME-Version: 1.0"],
        "--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.acme.example\n\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; 550 {status} user unknown\n\n--B--\n",
    )


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


# --- 2. content safety ---------------------------------------------------------


def test_encoded_crlf_bcc_in_subject_adds_no_recipient(stack: Stack) -> None:
    headers = std_headers(subject="=?UTF-8?Q?Hello=0D=0ABcc:_evil@attacker.example?=")
    sent = stack.deliver(raw_mail(headers), mail_from=CUSTOMER)
    assert recipients(sent) == sorted([[CUSTOMER], *ENGINEERS])
    for mail in sent:
        assert "bcc" not in [k.lower() for k in mail.message]
        assert "\n" not in str(mail.message["Subject"])
        assert "evil@attacker.example" not in mail.rcpt_tos
    assert stack.tickets()[0].subject == "Hello Bcc: evil@attacker.example"


def test_crlf_in_display_name_injects_no_header(stack: Stack) -> None:
    headers = std_headers(from_=f"=?UTF-8?Q?Ivan=0D=0ABcc:_evil@attacker.example?= <{CUSTOMER}>")
    sent = stack.deliver(raw_mail(headers), mail_from=CUSTOMER)
    assert recipients(sent) == sorted([[CUSTOMER], *ENGINEERS])
    assert all("bcc" not in [k.lower() for k in m.message] for m in sent)
    assert all("evil@attacker.example" not in m.rcpt_tos for m in sent)


def test_unicode_line_separators_in_subject_stay_on_one_line(stack: Stack) -> None:
    headers = std_headers(subject="=?UTF-8?B?" + _b64("Привет\u2028Bcc: x@evil.example\u0085y")
                          + "?=")
    sent = stack.deliver(raw_mail(headers), mail_from=CUSTOMER)
    [ack] = [m for m in sent if list(m.rcpt_tos) == [CUSTOMER]]
    assert "\u2028" not in str(ack.message["Subject"]) and "bcc" not in ack.message


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


TRAVERSAL_NAMES = [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\system32\\evil.exe", "evil.exe"),
    ("CON.txt", "_CON.txt"),
    ("in\x00voice.pdf", "invoice.pdf"),
    ("invoice\u202egpj.exe", "invoicegpj.exe"),
    (".htaccess", "htaccess"),
]


def test_traversal_filenames_are_sanitised_and_stored_by_content_hash(stack: Stack) -> None:
    attachments = [(name, "application/octet-stream", f"content {i}".encode())
                   for i, (name, _) in enumerate(TRAVERSAL_NAMES)]
    stack.deliver(build(from_=CUSTOMER, attachments=attachments), mail_from=CUSTOMER)
    stored = stack.ticket(stack.tickets()[0].id).articles[0].attachments
    assert [a.filename for a in stored] == [safe for _, safe in TRAVERSAL_NAMES]
    assert [a.sha256 for a in stored] == [hashlib.sha256(d).hexdigest() for _, _, d in attachments]
    with transaction(stack.factory) as s:
        blobs = {b.sha256: b.data for b in s.scalars(select(Blob))}
    assert blobs == {hashlib.sha256(d).hexdigest(): d for _, _, d in attachments}


def test_html_is_sanitised_before_it_is_kept(stack: Stack) -> None:
    body = ('<p onclick="steal()">Принтер сломан</p><script>alert(1)</script>'
            '<img src="http://tracker.example/pixel.gif"><a href="javascript:alert(2)">x</a>'
            '<style>p{}</style><iframe src="https://evil.example"></iframe>')
    headers = [*std_headers(), "MIME-Version: 1.0", "Content-Type: text/html; charset=utf-8"]
    stack.deliver(raw_mail(headers, body), mail_from=CUSTOMER)
    [article] = stack.tickets()[0].articles[:1]
    assert article.html is not None and "Принтер сломан" in article.html
    for bad in ("<script", "onclick", "javascript:", "tracker.example", "<iframe", "<style"):
        assert bad not in article.html
    assert article.text == "Принтер сломан\n\nx"


def deep_mime(levels: int) -> bytes:
    head = [*std_headers(), "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="b0"']
    body = ""
    for i in range(1, levels):
        body += f"--b{i - 1}\nContent-Type: multipart/mixed; boundary=\"b{i}\"\n\n"
    body += f"--b{levels - 1}\nContent-Type: text/plain\n\ndeep\n"
    for i in reversed(range(levels)):
        body += f"--b{i}--\n"
    return raw_mail(head, body)


def many_parts(count: int) -> bytes:
    head = [*std_headers(), "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="P"']
    body = "".join(f"--P\nContent-Type: text/plain\n\npart {i}\n" for i in range(count)) + "--P--\n"
    return raw_mail(head, body)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(deep_mime(100), "MIME nesting deeper than 20 levels", id="deep-mime-100"),
        pytest.param(many_parts(500), "more than 200 MIME parts", id="500-parts"),
        pytest.param(raw_mail([*std_headers(), *[f"X-Junk-{i}: x" for i in range(1500)]]),
                     "more than 1000 header fields", id="1500-headers"),
        # Folded, since the listener refuses any line over 1000 octets (500) by itself.
        pytest.param(raw_mail([*std_headers()[:2], "Subject: x" + "\r\n A" * 40_000,
                               *std_headers()[3:]]),
                     "a header field is longer than 64 KiB", id="folded-100k-header"),
    ],
)
def test_mail_beyond_the_safety_limits_is_quarantined_with_a_polite_notice(
    stack: Stack, raw: bytes, reason: str
) -> None:
    sent = stack.deliver(raw, mail_from=CUSTOMER)
    [row] = stack.spool()
    assert (row.state, row.outcome, row.last_error) == (QueueState.QUARANTINED, "unparseable",
                                                        reason)
    [notice] = sent
    assert list(notice.rcpt_tos) == [CUSTOMER]
    assert notice.message["Auto-Submitted"] == "auto-replied"
    assert reason in text_of(notice)
    assert stack.tickets() == []


def test_binary_garbage_from_the_null_sender_is_quarantined_without_backscatter(
    stack: Stack,
) -> None:
    sent = stack.deliver(b"\x00\x01\x02" * 25 + b"\r\n" * 40, mail_from="")
    [row] = stack.spool()
    assert (row.state, row.outcome, row.last_error) == (
        QueueState.QUARANTINED, "unparseable", "binary data without mail headers")
    assert sent == []


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_nul_bytes_in_headers_and_body_are_stored_without_them(
    db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from support import databases

    ctx = (databases.sqlite_database(tmp_path) if db == "sqlite"
           else databases.postgres_database())
    with ctx as url, SmtpSink() as sink:
        stack = Stack(tmp_path, url, sink)
        try:
            headers = std_headers(subject="Bad\x00subject")
            sent = stack.deliver(raw_mail(headers, b"Line\x00one\nline two\n"),
                                 mail_from=CUSTOMER)
            [ticket] = stack.tickets()
            assert ticket.subject == "Bad subject"
            assert ticket.articles[0].text == "Lineone\nline two"
            assert recipients(sent) == sorted([[CUSTOMER], *ENGINEERS])
        finally:
            stack.close()


def test_raw_8bit_headers_are_decoded(stack: Stack) -> None:
    headers = [f"From: {'Иван Петров'} <{CUSTOMER}>".encode(), f"To: {SUPPORT}".encode(),
               "Subject: Не работает принтер".encode("cp1251"),
               f"Message-ID: <{new_id('acme.example')}>".encode()]
    sent = stack.deliver(raw_mail(headers, "Текст письма".encode("cp1251")), mail_from=CUSTOMER)
    [ticket] = stack.tickets()
    assert ticket.subject == "Не работает принтер"
    assert ticket.articles[0].text == "Текст письма"
    assert recipients(sent) == sorted([[CUSTOMER], *ENGINEERS])


@pytest.mark.parametrize(
    ("declared", "actual"),
    [("utf-8", "cp1251"), ("koi8-r", "utf-8"), ("x-no-such-charset", "koi8-r"),
     ("us-ascii", "cp1251")],
)
def test_charset_lies_are_detected(stack: Stack, declared: str, actual: str) -> None:
    body = "Здравствуйте! Принтер в бухгалтерии не печатает уже третий день подряд."
    headers = [*std_headers(), "MIME-Version: 1.0",
               f"Content-Type: text/plain; charset={declared}",
               "Content-Transfer-Encoding: 8bit"]
    stack.deliver(raw_mail(headers, body.encode(actual)), mail_from=CUSTOMER)
    [ticket] = stack.tickets()
    assert ticket.articles[0].text == body


def test_encoded_address_in_display_name_does_not_change_the_sender(stack: Stack) -> None:
    # The display name decodes to "anna@provider.example <": identity comes from the addr-spec.
    headers = std_headers(from_=f"=?UTF-8?Q?anna=40provider.example_=3C?= <{CUSTOMER}>")
    stack.deliver(raw_mail(headers, "#status closed\nhello"), mail_from=CUSTOMER)
    [ticket] = stack.tickets()
    assert (ticket.requester, ticket.status) == (CUSTOMER, "new")
    assert ticket.articles[0].kind == "customer"


def test_lookalike_contract_domain_is_an_unknown_sender(stack: Stack) -> None:
    # "аcme.example" with a Cyrillic "а", as the punycode a mail client sends.
    fake = "ivan@" + "\u0430cme.example".encode("idna").decode()
    sent = stack.deliver(raw_mail(std_headers(from_=f"Иван <{fake}>")), mail_from=fake)
    assert stack.tickets() == []
    assert outcomes(stack) == ["unknown_sender"]
    assert [(list(m.rcpt_tos), m.message["Auto-Submitted"]) for m in sent] == [
        ([fake], "auto-replied")]


def test_raw_utf8_address_without_smtputf8_is_no_sender_and_gets_no_notice(
    stack: Stack,
) -> None:
    headers = ["From: Иван <ivan@\u0430cme.example>".encode(), *std_headers()[1:]]
    sent = stack.deliver(raw_mail(headers), mail_from="ivan@xn--cme-8cd.example")
    assert (sent, stack.tickets(), outcomes(stack)) == ([], [], ["unknown_sender"])


def test_references_flood_is_capped_and_the_mail_is_processed(stack: Stack) -> None:
    refs = "\r\n ".join(f"<{i}.flood@evil.example>" for i in range(2000))
    headers = [*std_headers(), f"References: {refs}"]
    started = time.monotonic()
    sent = stack.deliver(raw_mail(headers), mail_from=CUSTOMER)
    assert time.monotonic() - started < 5
    [ticket] = stack.tickets()
    assert "References cut to the last 100 ids" in ticket.articles[0].defects
    assert recipients(sent) == sorted([[CUSTOMER], *ENGINEERS])


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


# --- 4. robots, loops and bounces ------------------------------------------------


def test_autoresponder_answering_our_ack_is_stored_and_not_answered(stack: Stack) -> None:
    ticket, ack = open_ticket(stack)
    before = len(stack.sink.messages)
    sent = stack.deliver(
        build(from_=CUSTOMER, subject="Автоответ: Re: [#MT-1] Принтер не печатает",
              body="Я в отпуске до понедельника.",
              in_reply_to=str(ack.message["Message-ID"]).strip("<>"),
              headers={"Auto-Submitted": "auto-replied"}),
        mail_from="")
    assert sent == [] and len(stack.sink.messages) == before
    after = stack.ticket(ticket.id)
    assert [a.kind for a in after.articles] == ["customer", "ack", "auto"]
    assert outcomes(stack)[-1] == "auto"


def test_dumb_autoresponder_loop_is_stopped_by_the_daily_cap(
    sqlite_url: str, tmp_path: Path
) -> None:
    with SmtpSink() as sink:
        stack = make_stack(tmp_path, sqlite_url, sink,
                           mail={"auto_replies_per_recipient_per_day": 5})
        try:
            # A robot without any robot headers that answers every mail with a new one.
            acks = 0
            for round_ in range(10):
                sent = stack.deliver(build(from_=CUSTOMER, subject=f"Thank you ({round_})",
                                           body="I got your mail."), mail_from=CUSTOMER)
                new_acks = [m for m in sent if CUSTOMER in m.rcpt_tos]
                acks += len(new_acks)
                if not new_acks:
                    break
            assert (acks, round_) == (5, 5)
            with transaction(stack.factory) as s:
                logged = s.scalars(select(AutoReplyLog.recipient).where(
                    AutoReplyLog.recipient == CUSTOMER)).all()
            assert len(logged) == 5
        finally:
            stack.close()


@pytest.mark.parametrize(
    ("headers", "mail_from"),
    [
        ({"X-Mailticket-Loop": "mt-test"}, CUSTOMER),
        ({}, SUPPORT),
    ],
    ids=["loop-header", "from-our-address"],
)
def test_our_own_mail_coming_back_is_dropped(stack: Stack, headers: dict[str, str],
                                             mail_from: str) -> None:
    sent = stack.deliver(build(from_=mail_from, headers=headers), mail_from=mail_from)
    assert sent == [] and stack.tickets() == []
    assert outcomes(stack) == ["loop"]


def test_our_message_id_redirected_back_is_a_loop(stack: Stack) -> None:
    _, ack = open_ticket(stack)
    # A forwarding rule resends our ack with the customer's From and our Message-ID.
    our_id = str(ack.message["Message-ID"]).strip("<>")
    sent = stack.deliver(build(from_=CUSTOMER, message_id=our_id, subject="Fwd"),
                         mail_from=CUSTOMER)
    assert sent == []
    assert outcomes(stack)[-1] == "loop"


@pytest.mark.parametrize(
    ("from_", "mail_from", "headers"),
    [
        ("noreply@acme.example", "noreply@acme.example", {}),
        ("news@acme.example", "news@acme.example", {"Precedence": "bulk"}),
        ("list@acme.example", "list@acme.example", {"List-Id": "<it.acme.example>"}),
        (CUSTOMER, "", {}),
        (CUSTOMER, CUSTOMER, {"X-Auto-Response-Suppress": "All"}),
    ],
    ids=["noreply", "precedence-bulk", "list-id", "null-sender", "exchange-suppress"],
)
def test_robots_get_no_answer_and_open_no_ticket(stack: Stack, from_: str, mail_from: str,
                                                 headers: dict[str, str]) -> None:
    sent = stack.deliver(build(from_=from_, headers=headers), mail_from=mail_from)
    assert sent == [] and stack.tickets() == []
    assert outcomes(stack) == ["auto_unthreaded"]


def test_out_of_office_does_not_reopen_a_resolved_ticket(stack: Stack) -> None:
    ticket, ack = open_ticket(stack)
    with transaction(stack.factory) as s:
        row = s.get(Ticket, ticket.id)
        assert row is not None
        row.status, row.resolved_at = "resolved", datetime.now(UTC)
    sent = stack.deliver(
        build(from_=CUSTOMER, subject="Automatic reply: Принтер не печатает",
              in_reply_to=str(ack.message["Message-ID"]).strip("<>"),
              headers={"X-Auto-Response-Suppress": "All", "Auto-Submitted": "auto-replied"}),
        mail_from=CUSTOMER)
    after = stack.ticket(ticket.id)
    assert sent == [] and after.status == "resolved"
    assert after.articles[-1].kind == "auto"


def test_out_of_office_does_not_stop_the_sla_timer(stack: Stack) -> None:
    ticket, ack = open_ticket(stack)
    stack.deliver(
        build(from_=CUSTOMER, subject="Автоответ: нахожусь в отпуске",
              in_reply_to=str(ack.message["Message-ID"]).strip("<>")),
        mail_from=CUSTOMER)
    after = stack.ticket(ticket.id)
    assert after.articles[-1].kind == "auto"
    assert (after.status, after.first_response_at, after.sla_paused_since) == ("new", None, None)
    assert after.first_response_due == ticket.first_response_due


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


def test_forged_bounces_with_a_wrong_verp_mac_count_for_nothing(stack: Stack) -> None:
    open_ticket(stack)
    before = len(stack.sink.messages)
    for rcpt in ("support+b-1-aaaaaaaaaaaaaaaa@provider.example", SUPPORT) * 5:
        stack.send(dsn(rcpt), mail_from="", rcpt=(rcpt,))
    stack.settle()
    assert len(stack.sink.messages) == before
    assert outcomes(stack)[1:] == ["bounce_unmatched"] * 10
    with transaction(stack.factory) as s:
        assert s.scalars(select(DeliveryFailure)).all() == []
        assert not suppression.is_suppressed(s, CUSTOMER)


def test_bounce_storm_is_never_answered_and_suppresses_after_the_threshold(stack: Stack) -> None:
    verps = [open_ticket(stack, f"Вопрос {i}")[1].mail_from for i in range(3)]
    before = len(stack.sink.messages)
    forged = "support+b-2-aaaaaaaaaaaaaaaa@provider.example"
    for i in range(100):
        rcpt = verps[i % 3] if i % 10 == 0 else forged
        stack.send(dsn(rcpt), mail_from="", rcpt=(rcpt,))
    stack.settle(60)
    assert len(stack.sink.messages) == before
    results = outcomes(stack)[3:]
    assert (results.count("bounce"), results.count("bounce_unmatched")) == (10, 90)
    with transaction(stack.factory) as s:
        failures = s.scalars(select(DeliveryFailure)).all()
        row = s.get(AddressSuppression, CUSTOMER)
        assert row is not None
        assert sorted(f.outbox_id for f in failures) == sorted(
            {f.outbox_id for f in failures})
        assert (len(failures), row.permanent_failures) == (3, 3)
        assert row.suppressed_at is not None and "5.1.1" in row.reason

    # Suppressed: a new request opens a ticket and tells the engineers, but sends no ack.
    sent = stack.deliver(build(from_=CUSTOMER, subject="Ещё вопрос"), mail_from=CUSTOMER)
    assert recipients(sent) == ENGINEERS
    # An admin clears the address; mail flows again.
    with transaction(stack.factory) as s:
        assert suppression.clear(s, CUSTOMER, datetime.now(UTC))
    sent = stack.deliver(build(from_=CUSTOMER, subject="И ещё"), mail_from=CUSTOMER)
    assert recipients(sent) == sorted([[CUSTOMER], *ENGINEERS])


def test_soft_bounces_are_recorded_but_never_suppress(stack: Stack) -> None:
    verps = [open_ticket(stack, f"Вопрос {i}")[1].mail_from for i in range(3)]
    for verp in verps:
        stack.send(dsn(verp, status="4.2.2", action="delayed"), mail_from="", rcpt=(verp,))
    stack.settle()
    with transaction(stack.factory) as s:
        failures = s.scalars(select(DeliveryFailure)).all()
        assert [f.permanent for f in failures] == [False] * 3
        assert not suppression.is_suppressed(s, CUSTOMER)


def test_bounce_naming_an_address_we_never_mailed_suppresses_nobody(stack: Stack) -> None:
    verps = [open_ticket(stack, f"Вопрос {i}")[1].mail_from for i in range(3)]
    for verp in verps:
        stack.send(dsn(verp, recipient=ANNA), mail_from="", rcpt=(verp,))
    stack.settle()
    with transaction(stack.factory) as s:
        assert not suppression.is_suppressed(s, ANNA)
        # The one-recipient row still had a failure: its own recipient's.
        assert {f.address for f in s.scalars(select(DeliveryFailure))} == {CUSTOMER}


# --- 5. the caps on automatic mail -------------------------------------------------


def test_auto_mail_caps_per_recipient_per_day_and_per_ticket_per_hour(stack: Stack) -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    notifier = stack.worker.notifier
    with transaction(stack.factory) as s:
        s.add_all(AutoReplyLog(recipient="robot@acme.example", kind="ack", ticket_id=None,
                               sent_at=now - timedelta(hours=1)) for _ in range(40))
        s.add_all(AutoReplyLog(recipient=f"p{i}@acme.example", kind="ack", ticket_id=7,
                               sent_at=now - timedelta(minutes=30)) for i in range(10))
        s.add(AutoReplyLog(recipient="old@acme.example", kind="ack", ticket_id=8,
                           sent_at=now - timedelta(days=2)))
        s.flush()
        assert not notify.auto_mail_allowed(s, notifier, "robot@acme.example", "ack", now)
        assert notify.auto_mail_allowed(s, notifier, "robot@acme.example", "ack",
                                        now + timedelta(hours=23, minutes=1))
        assert not notify.auto_mail_allowed(s, notifier, "new@acme.example", "ack", now,
                                            ticket_id=7)
        assert notify.auto_mail_allowed(s, notifier, "new@acme.example", "ack",
                                        now + timedelta(minutes=31), ticket_id=7)
        assert notify.auto_mail_allowed(s, notifier, "old@acme.example", "ack", now,
                                        per_day=1, ticket_id=8)
