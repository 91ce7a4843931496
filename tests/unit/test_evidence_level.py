"""``[mail] engineer_evidence`` and ``command_token_days``: the default rule and check-config."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest

from mailticket import config
from mailticket.config import Config, ListenerConfig, MailConfig, engineer_evidence

TODAY = date(2025, 10, 1)
ENGINEER = '[[engineers]]\naddress = "anna@example.com"\nname = "Anna"\nline = "L1"\n'


def load(tmp_path: Path, mail: str = "", extra: str = ENGINEER) -> Config:
    path = tmp_path / "mt.toml"
    path.write_text(f"[mail]\n{mail}\n{extra}", encoding="utf-8")
    return config.load(path, today=TODAY)


def test_secure_level_is_the_default_when_identity_can_be_proven() -> None:
    base = Config(path=Path("t.toml"))
    assert engineer_evidence(base) == "token+sender"
    trusted = dataclasses.replace(base, mail=MailConfig(trusted_authserv_ids=("mx.example",)))
    assert engineer_evidence(trusted) == "token+authenticated"
    submission = dataclasses.replace(base, listeners=(ListenerConfig(submission=True),))
    assert engineer_evidence(submission) == "token+authenticated"
    explicit = dataclasses.replace(
        trusted, mail=dataclasses.replace(trusted.mail, engineer_evidence="token+sender"))
    assert engineer_evidence(explicit) == "token+sender"


def test_token_plus_sender_makes_check_config_warn(tmp_path: Path) -> None:
    warned = load(tmp_path)
    assert [w.key for w in warned.warnings] == ["mail.engineer_evidence"]
    quiet = load(tmp_path, 'trusted_authserv_ids = ["mx.example.com"]')
    assert quiet.warnings == () and engineer_evidence(quiet) == "token+authenticated"
    explicit = load(tmp_path, 'trusted_authserv_ids = ["mx.example.com"]\n'
                              'engineer_evidence = "token+sender"')
    assert [w.key for w in explicit.warnings] == ["mail.engineer_evidence"]
    assert load(tmp_path, extra="").warnings == ()  # no engineers: nothing to weigh


@pytest.mark.parametrize(("line", "reason"), [
    ('engineer_evidence = "token"', "must be one of token+authenticated, token+sender"),
    ("command_token_days = 0", "must be"),
    ("command_token_days = 91", "must be at most 90"),
])
def test_bad_values_are_reported(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "mt.toml"
    path.write_text(f"[mail]\n{line}\n", encoding="utf-8")
    found = config.check(path, today=TODAY)
    assert len(found) == 1 and reason in found[0].reason and found[0].line == 2
