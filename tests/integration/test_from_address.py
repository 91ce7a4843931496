"""``mail.from_address`` (issue 15.6): From, the Reply-To base and the VERP sender of our mail.

Listing an IMAP account's address first in ``support_addresses`` used to move
all three; with ``from_address`` set they stay where the admin put them, and a
reply or bounce to them still reaches us and is understood.
"""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import parseaddr
from pathlib import Path

import pytest
from harness import Harness, as_message
from support.configs import SECRET, make_config
from support.mails import build

from mailticket.mail.addresses import parse_verp

INBOX = "imap-inbox@provider.example"
DESK = "support@provider.example"


@pytest.fixture
def h(sqlite_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(make_config(tmp_path, sqlite_url, mail={
        "support_addresses": (INBOX, DESK), "from_address": DESK}))
    yield harness
    harness.close()


def test_from_reply_to_and_verp_use_from_address_not_the_first_support_address(
    h: Harness,
) -> None:
    h.deliver(build(from_="ivan@acme.example", to=INBOX), rcpt=(INBOX,))
    [ticket] = h.tickets()
    [ack] = h.outbox("ack")
    assert parseaddr(str(as_message(ack)["From"]))[1] == DESK
    assert ack.envelope_from.startswith("support+b-")
    assert ack.envelope_from.endswith("@provider.example")
    assert parse_verp(SECRET, ack.envelope_from) == ack.id
    notices = h.outbox("engineer_new")
    assert notices
    for notice in notices:
        msg = as_message(notice)
        assert parseaddr(str(msg["From"]))[1] == DESK
        assert str(msg["Reply-To"]).startswith("support+")
        assert parse_verp(SECRET, notice.envelope_from) == notice.id

    # The engineer's reply to that Reply-To acts on the ticket and reaches the customer.
    notice = next(n for n in notices if n.rcpt_tos == ["anna@provider.example"])
    reply_to = str(as_message(notice)["Reply-To"])
    h.deliver(build(from_="anna@provider.example", to=reply_to, subject=f"Re: [#MT-{ticket.id}]",
                    body="Перезагрузите принтер."), rcpt=(reply_to,))
    [reply] = h.outbox("reply")
    assert reply.rcpt_tos == ["ivan@acme.example"]
    assert parseaddr(str(as_message(reply)["From"]))[1] == DESK


def test_without_from_address_the_first_support_address_is_used(
    sqlite_url: str, tmp_path: Path,
) -> None:
    harness = Harness(make_config(tmp_path, sqlite_url, mail={"support_addresses": (INBOX, DESK)}))
    try:
        harness.deliver(build(from_="ivan@acme.example", to=DESK), rcpt=(DESK,))
        [ack] = harness.outbox("ack")
        assert parseaddr(str(as_message(ack)["From"]))[1] == INBOX
        assert ack.envelope_from.startswith("imap-inbox+b-")
    finally:
        harness.close()
