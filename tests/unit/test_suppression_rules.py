"""The pure rules behind loop and bounce protection: which relay refusals count, and the
per-address overrides of the daily cap on automatic mail as the config file states them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from mailticket import config
from mailticket.config import format_problems
from mailticket.outbound.suppression import SuppressedAddress, mailbox_refusal

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.toml"
TODAY = date(2026, 11, 20)


@pytest.mark.parametrize(
    ("reply", "counts"),
    [
        ("550 5.1.1 <gone@acme.example>: Recipient address rejected: User unknown", True),
        ("550-5.1.1 The email account that you tried to reach does not exist", True),
        ("550 5.1.2 Host unknown", True),
        ("553 5.1.3 Bad recipient address syntax", True),
        ("550 5.1.6 Recipient has moved", True),
        ("556 5.1.10 Recipient address has null MX", True),
        ("550 5.2.1 Mailbox disabled", True),
        # Policy, sender or system trouble: nothing about the recipient's mailbox.
        ("554 5.7.1 <gone@acme.example>: Relay access denied", False),
        ("550 5.1.8 Sender address rejected", False),
        ("552 5.2.2 Mailbox full", False),
        ("550 5.1.12 unknown", False),
        ("550 User unknown", False),  # no enhanced code: too vague to switch anyone off
        ("450 4.1.1 Recipient address rejected: try later", False),
        ("451 4.3.0 gave up after 10 attempts", False),
        ("", False),
    ],
)
def test_only_mailbox_refusals_count_as_failures(reply: str, counts: bool) -> None:
    assert mailbox_refusal(reply) is counts


def test_cleared_after_suppression_is_inactive_and_suppressed_again_is_active() -> None:
    from datetime import datetime

    t1, t2, t3 = (datetime(2026, 11, d) for d in (1, 2, 3))
    assert SuppressedAddress("a@b.example", "", 3, t1, None).active
    assert not SuppressedAddress("a@b.example", "", 0, t1, t2).active
    assert SuppressedAddress("a@b.example", "", 3, t3, t2).active
    assert not SuppressedAddress("a@b.example", "", 1, None, None).active


def test_auto_reply_overrides_are_read_lower_cased(tmp_path: Path) -> None:
    path = tmp_path / "mt.toml"
    path.write_text('[mail]\nauto_replies_per_recipient_per_day = 40\n\n'
                    '[mail.auto_reply_overrides]\n"Alerts@Initech.example" = 5\n'
                    '"import@acme.example" = 400\n', encoding="utf-8")
    cfg = config.load(path, today=TODAY)
    assert cfg.mail.auto_reply_overrides == {"alerts@initech.example": 5,
                                             "import@acme.example": 400}
    assert cfg.mail.auto_replies_per_recipient_per_day == 40
    assert config.load(EXAMPLE, today=TODAY).mail.auto_reply_overrides == {}


def test_bad_auto_reply_overrides_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "mt.toml"
    path.write_text('[mail.auto_reply_overrides]\n"not-an-address" = 5\n"a@acme.example" = -1\n'
                    '"b@acme.example" = "ten"\n', encoding="utf-8")
    text = format_problems(config.check(path, today=TODAY)).replace(str(tmp_path), "DIR")
    reasons = [line.split(": ", 1)[1] for line in text.splitlines()]
    assert reasons == [
        "mail.auto_reply_overrides.not-an-address: invalid address 'not-an-address'",
        'mail.auto_reply_overrides."a@acme.example": expected an integer >= 0, got -1',
        'mail.auto_reply_overrides."b@acme.example": expected an integer >= 0, got \'ten\'',
    ]
