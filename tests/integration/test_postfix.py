"""The deployment guide, run (issue 15.9): mailticket behind a real Postfix 3.7.

Postfix is built from ``docs/deploy-postfix.md``'s tested blocks (the support
domain and ports swapped for this sandbox's) plus a sandbox part of our own
(tests/support/postfix.py: its own queue and config dir, loopback ports, local
Maildirs for customers and engineers). mailticket runs as the real daemon
process with the guide's listener and relay settings. One scenario, because
one Postfix start and stop (about 3 s) is most of its cost:

1. a customer's mail through Postfix → LMTP → a ticket → the ack relayed back
   through Postfix into the customer's Maildir (the latency is printed);
2. the engineer's reply through Postfix reaches the customer;
3. an unknown support address is refused at RCPT (no back-scatter), a mail
   over ``max_message_size`` at MAIL;
4. an undeliverable contact → Postfix's DSN → the VERP address → recorded;
5. mailticket stopped while Postfix queues 20 mails → after the restart all
   20 tickets, none twice, and no delivery deferred with 421.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import smtplib
import socket
import sqlite3
import statistics
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from daemon_proc import REPO, Daemon, cli, free_port, wait_until
from support.configs import standard_plan_toml
from support.postfix import PostfixServer

GUIDE = REPO / "docs" / "deploy-postfix.md"
DOMAIN = "provider.example"
SUPPORT = f"support@{DOMAIN}"
CUSTOMER = "ivan@acme.example"
GHOST = "ghost@acme.example"  # accepted by Postfix, refused by its next hop: a DSN
ENGINEER = "anna@staff.example"
BACKLOG = 20
SAMPLES = 5

def guide_block(name: str) -> str:
    """The fenced block after ``<!-- test:NAME -->`` in the guide."""
    text = GUIDE.read_text()
    match = re.search(rf"<!-- test:{re.escape(name)} -->\n```[a-z]*\n(.*?)```", text, re.S)
    assert match, f"{GUIDE} has no tested block {name!r}"
    return match.group(1)


def setting(block: str, key: str) -> str:
    """The value of ``key = value`` in a main.cf or TOML block."""
    match = re.search(rf"^{key}\s*=\s*(.+)$", block, re.M)
    assert match, key
    return match.group(1).strip()


def mailticket_config(directory: Path, lmtp_port: int, relay_port: int) -> Path:
    """The guide's mailticket block for this sandbox, plus what any site has anyway."""
    facing = (guide_block("mailticket.toml").replace("example.com", DOMAIN)
              .replace("port = 2424", f"port = {lmtp_port}")
              .replace("port = 25\n", f"port = {relay_port}\n"))
    path = directory / "mailticket.toml"
    path.write_text(f"""
[daemon]
instance_id = "mt-postfix"
data_dir = "{directory}"
templates_dir = "{REPO / 'templates'}"
poll_interval = 0.05

[database]
url = "sqlite:///{directory / 'mt.db'}"

[worker]
lease_seconds = 30

{facing}
[calendars.24x7]
always_open = true

{standard_plan_toml()}

[engineers."{ENGINEER}"]
name = "Anna Petrova"
line = "L1"

[[contracts]]
id = "acme"
name = "ACME Ltd"
sla_plan = "standard"
domains = ["acme.example"]
locale = "ru"
""")
    return path


class GoneMx:
    """The contact's "remote" server: it refuses the recipient with 550 5.1.1 at RCPT."""

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        return f"550 5.1.1 <{address}>: mailbox has moved away"


def postfix_settings(lmtp_port: int, gone_port: int) -> tuple[str, dict[str, str]]:
    """The guide's main.cf and tables for this sandbox (domain, LMTP port, table paths)."""
    def adapt(text: str) -> str:
        return (text.replace("example.com", DOMAIN)
                .replace("[127.0.0.1]:2424", f"[127.0.0.1]:{lmtp_port}"))

    main_cf = adapt(guide_block("main.cf"))
    tables = {
        "transport": adapt(guide_block("transport"))
        # Sandbox only: the contact's "remote" server, which refuses it; Postfix bounces.
        + f"{GHOST}    smtp:[127.0.0.1]:{gone_port}\n",
        "relay_recipients": adapt(guide_block("relay_recipients")),
    }
    # Sandbox only: a long backlog reaches the LMTP concurrency limit; start there.
    sandbox = "lmtp_initial_destination_concurrency = 20\n"
    return main_cf + sandbox, tables


def customer_mail(subject: str, sender: str = CUSTOMER, body: str = "Не печатает принтер.",
                  to: str = SUPPORT, **headers: str) -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="acme.example")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def read(path: Path) -> EmailMessage:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def ticket_rows(config: Path) -> list[sqlite3.Row]:
    """Every ticket, read straight from the daemon's SQLite file (polling the CLI costs a process)."""
    conn = sqlite3.connect(config.parent / "mt.db")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT id, subject, requester FROM tickets ORDER BY id").fetchall()
    finally:
        conn.close()


class Stack:
    """The sandboxed Postfix, mailticket's config and every daemon process started on it."""

    def __init__(self, tmp_path: Path) -> None:
        self.lmtp_port = free_port()
        self.gone_mx = Controller(GoneMx(), hostname="127.0.0.1", port=free_port())
        main_cf, tables = postfix_settings(self.lmtp_port, self.gone_mx.port)
        # The guide's table paths point into the sandbox's config dir.
        self.postfix = PostfixServer(main_cf.replace("/etc/postfix/mailticket", "@CONF@"),
                                     tables, mailboxes=[CUSTOMER, GHOST, ENGINEER])
        self.config = mailticket_config(tmp_path, self.lmtp_port, self.postfix.port)
        self.daemons: list[Daemon] = []

    def start_daemon(self) -> Daemon:
        self.daemons.append(Daemon(self.config))
        return self.daemons[-1].start()

    def logs(self) -> str:
        """Postfix's maillog and every daemon's log, for a failure message."""
        parts = [f"--- postfix maillog ---\n{self.postfix.read_log()[-6000:]}"]
        parts += [f"--- daemon {n} ---\n{d.read_log()[-6000:]}" for n, d in enumerate(self.daemons)]
        return "\n".join(parts)

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.close()
        self.postfix.close()
        self.gone_mx.stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    built = Stack(tmp_path)
    try:
        built.gone_mx.start()
        built.postfix.start()
        built.start_daemon()
        yield built
    finally:
        built.close()


@pytest.mark.timeout(120)
def test_mail_through_postfix_as_the_guide_sets_it_up(stack: Stack) -> None:
    try:
        scenario(stack)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from exc


def scenario(stack: Stack) -> None:
    """The steps of the module docstring, in order."""
    postfix, config, lmtp_port = stack.postfix, stack.config, stack.lmtp_port
    guide_cf, guide_toml = guide_block("main.cf"), guide_block("mailticket.toml")
    # The guide's numbers agree with each other.
    assert setting(guide_cf, "message_size_limit") == setting(guide_toml, "max_message_size")
    assert (int(setting(guide_cf, "lmtp_destination_concurrency_limit"))
            < int(setting(guide_toml, "max_connections")))
    assert (int(setting(guide_cf, "lmtp_destination_recipient_limit"))
            <= int(setting(guide_toml, "max_recipients")))
    # The listener greets with the configured name, not "localhost" (issue 15.8).
    with socket.create_connection(("127.0.0.1", lmtp_port), timeout=5) as sock:
        assert sock.recv(200).startswith(b"220 mailticket.provider.example ")

    # 1. In through Postfix, a ticket, the ack back through Postfix into the Maildir.
    accepted = postfix.send(CUSTOMER, [SUPPORT], customer_mail("Принтер в бухгалтерии"))
    [ack_file] = wait_until(lambda: postfix.maildir(CUSTOMER), timeout=20, interval=0.01)
    ack_latency = time.monotonic() - accepted
    [ticket] = ticket_rows(config)
    ack = read(ack_file)
    assert f"[#MT-{ticket['id']}]" in str(ack["Subject"])
    assert str(ack["From"]).endswith(f"<{SUPPORT}>")
    # Postfix's virtual agent records the envelope: the VERP sender, signed.
    assert re.fullmatch(rf"<support\+b-[^@]+@{re.escape(DOMAIN)}>", str(ack["Return-Path"]))

    # 2. The engineer answers the notice through Postfix; the customer gets the answer.
    [notice_file] = wait_until(lambda: postfix.maildir(ENGINEER), timeout=20, interval=0.01)
    notice = read(notice_file)
    reply_to = str(notice["Reply-To"])
    assert reply_to.startswith("support+") and reply_to.endswith(f"@{DOMAIN}")
    sent = postfix.send(ENGINEER, [reply_to], customer_mail(
        f"Re: {notice['Subject']}", sender=ENGINEER, to=reply_to,
        body="Перезагрузите принтер, пожалуйста.", In_Reply_To=str(notice["Message-ID"])))
    answer_file = wait_until(lambda: postfix.maildir(CUSTOMER)[1:], timeout=20, interval=0.01)[0]
    reply_latency = time.monotonic() - sent
    answer = read(answer_file)
    assert "Перезагрузите принтер" in answer.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    # More samples of the ack's way (Postfix's 250 → the customer's Maildir), one at a time.
    ack_latencies = [ack_latency]
    for n in range(SAMPLES - 1):
        have = len(postfix.maildir(CUSTOMER))
        accepted = postfix.send(CUSTOMER, [SUPPORT], customer_mail(f"sample {n}"))
        wait_until(lambda have=have: len(postfix.maildir(CUSTOMER)) > have, timeout=20,
                   interval=0.01)
        ack_latencies.append(time.monotonic() - accepted)

    # 3. An address mailticket does not know is refused by Postfix at RCPT.
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        postfix.send(CUSTOMER, [f"nobody@{DOMAIN}"], customer_mail("never"))
    assert refused.value.recipients[f"nobody@{DOMAIN}"][0] == 550
    # A mail over the listener's max_message_size is refused by Postfix already
    # (SIZE at MAIL FROM), never accepted and bounced after mailticket's 552.
    limit = int(setting(guide_toml, "max_message_size"))
    with pytest.raises(smtplib.SMTPSenderRefused) as too_big:
        postfix.send(CUSTOMER, [SUPPORT], customer_mail("big") + b"x" * limit)
    assert too_big.value.smtp_code == 552

    # 4. A contact whose mailbox is gone: Postfix bounces the ack to its VERP address.
    postfix.send(GHOST, [SUPPORT], customer_mail("Письмо от уехавшего", sender=GHOST))
    ghost_ticket = wait_until(lambda: [t for t in ticket_rows(config) if t["requester"] == GHOST],
                              timeout=20, interval=0.02)[0]

    def bounce_recorded() -> dict[str, object] | None:
        shown = cli(config, "tickets", "show", f"MT-{ghost_ticket['id']}", "--json").stdout
        events = json.loads(shown)["events"]
        return next((e for e in events if e["action"] == "delivery_failed"
                     and e["actor"] == "bounce"), None)

    event = wait_until(bounce_recorded, timeout=20, interval=0.1)
    assert GHOST in str(event["detail"]), event
    assert "5.1.1" in str(event["detail"])
    suppression = cli(config, "suppression", "show", GHOST).stdout
    assert "5.1.1" in suppression and "mailbox has moved away" in suppression
    # The outbox tells the truth: the ack Postfix accepted is now bounced, with the DSN's status.
    bounced = json.loads(cli(config, "outbox", "list", "--state", "bounced", "--json").stdout)
    assert [(r["ticket_id"], r["rcpt_tos"], r["dsn_status"]) for r in bounced] == [
        (ghost_ticket["id"], [GHOST], "5.1.1")], bounced
    assert postfix.maildir(GHOST) == []

    # 5. mailticket down, Postfix queues 20 mails; after the restart each is one ticket.
    assert stack.daemons[0].stop() == 0
    before = len(ticket_rows(config))
    for n in range(BACKLOG):
        postfix.send(CUSTOMER, [SUPPORT], customer_mail(f"backlog {n}"))

    def all_deferred() -> list[dict[str, object]] | None:
        queue = postfix.queue()
        waiting = [m for m in queue if m["queue_name"] == "deferred"]
        return waiting if len(waiting) == len(queue) == BACKLOG else None

    queued = wait_until(all_deferred, timeout=30, interval=0.1)
    assert all("Connection refused" in str(m["recipients"]) for m in queued)
    stack.start_daemon()
    postfix.flush()
    flushed = time.monotonic()

    def backlog_in() -> list[sqlite3.Row] | None:
        got = [t for t in ticket_rows(config) if t["subject"].startswith("backlog")]
        return got if len(got) >= BACKLOG else None

    backlog = wait_until(backlog_in, timeout=60, interval=0.05)
    backlog_seconds = time.monotonic() - flushed
    assert len(ticket_rows(config)) == before + BACKLOG
    assert sorted(t["subject"] for t in backlog) == sorted(f"backlog {n}" for n in range(BACKLOG))
    wait_until(lambda: not postfix.queue(), timeout=30, interval=0.1)
    log = postfix.read_log()
    lmtp_lines = [line for line in log.splitlines() if f"127.0.0.1]:{lmtp_port}" in line]
    assert not [line for line in lmtp_lines if " 421 " in line or "421 4." in line], lmtp_lines
    delivered = [line for line in lmtp_lines if "status=sent" in line]
    lmtp_processes = {re.search(r"postfix/lmtp\[(\d+)\]", line).group(1)  # type: ignore[union-attr]
                      for line in delivered}
    # The samples + reply + ghost + the DSN to VERP + the backlog, each once over LMTP.
    assert len(delivered) == SAMPLES + 3 + BACKLOG, "\n".join(lmtp_lines)

    print(f"\npostfix 250 → ack in the customer's Maildir, {SAMPLES} mails: median "
          f"{statistics.median(ack_latencies) * 1000:.0f} ms, max {max(ack_latencies) * 1000:.0f} ms; "
          f"engineer reply → customer Maildir: {reply_latency * 1000:.0f} ms; "
          f"{BACKLOG} queued mails → {BACKLOG} tickets after flush: {backlog_seconds:.1f} s "
          f"({len(lmtp_processes)} Postfix LMTP processes delivered, none deferred with 421)")
    assert max([*ack_latencies, reply_latency]) < 15
