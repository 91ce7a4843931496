"""Helpers shared by the hostile-mail tests (issue 7): raw SMTP, hand-made mail, DSNs.

Kept out of the test modules so that each of them (listener abuse, content,
robots, bounces) stays small. ``RawSmtp`` sends exactly the bytes it is given,
where smtplib would tidy up the hostile ones.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from pathlib import Path
from typing import Any

from stack import Stack
from support.mails import build, new_id
from support.smtp_sink import Received, SmtpSink

from mailticket.config import ListenerConfig
from mailticket.intake.listener import start_listener
from mailticket.store.schema import Ticket

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


def make_stack(tmp_path: Path, url: str, sink: SmtpSink, **overrides: Any) -> Stack:
    return Stack(tmp_path, url, sink, **overrides)


# --- helpers -----------------------------------------------------------------


def raw_mail(headers: list[str], body: str | bytes = "Hello.\n") -> bytes:
    """A mail assembled byte by byte: hostile headers survive exactly as written."""
    data = body.encode() if isinstance(body, str) else body
    head = b"".join((h if isinstance(h, bytes) else h.encode("utf-8")) + b"\r\n" for h in headers)
    return head + b"\r\n" + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def b64(text: str) -> str:
    """``text`` as UTF-8 in base64, for hand-made encoded words."""
    return base64.b64encode(text.encode()).decode()


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


def ack_id(ack: Received) -> str:
    """The bare Message-ID of one of our mails, for a robot's In-Reply-To."""
    return str(ack.message["Message-ID"]).strip("<>")


class Robot:
    """A mailbox with an auto-responder: answers every mail we send it, as its mail system would.

    ``headers`` are the robot's own marks (empty for an RFC-blind robot); with
    ``fresh_subject`` it starts a new conversation each time instead of
    replying in the thread (the worst kind: each answer looks like a new request).
    """

    def __init__(self, stack: Stack, address: str, headers: dict[str, str] | None = None,
                 *, fresh_subject: bool = False, envelope_from: str | None = None) -> None:
        self.stack, self.address, self.headers = stack, address, headers or {}
        self.fresh_subject = fresh_subject
        self.envelope_from = address if envelope_from is None else envelope_from
        self.seen = 0
        self.answers = 0

    def inbox(self) -> list[Received]:
        """Everything we sent this robot so far."""
        return [m for m in self.stack.sink.messages if self.address in m.rcpt_tos]

    def answer_new(self) -> int:
        """Answer each mail that arrived since the last call; returns how many."""
        new = self.inbox()[self.seen:]
        self.seen += len(new)
        for got in new:
            self.answers += 1
            subject = (f"Thank you for your message ({self.answers})" if self.fresh_subject
                       else f"Re: {got.message['Subject']}")
            self.stack.send(build(from_=self.address, subject=subject,
                                  body="Your message has been received.",
                                  in_reply_to=None if self.fresh_subject else ack_id(got),
                                  headers=self.headers),
                            mail_from=self.envelope_from)
        self.stack.settle()
        return len(new)

    def run(self, max_rounds: int = 50) -> int:
        """Answer until we stop writing; returns the rounds it took (fails if we never stop)."""
        for rounds in range(max_rounds):
            if not self.answer_new():
                return rounds
        raise AssertionError(f"still looping after {max_rounds} rounds")
