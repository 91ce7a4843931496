"""The one signed-token scheme: known tokens keep verifying, purposes never mix."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from mailticket.mail import signed
from mailticket.mail.addresses import (
    make_reply_token,
    parse_rating_address,
    parse_reply_token,
    parse_verp,
    rating_address,
    reply_address,
    verp_return_path,
)

SECRET = "golden-secret"
SUPPORT = "support@example.com"

# Tokens made by the code before mail.signed existed: mail already sent carries
# them (reply tokens for 90 days, VERP paths of queued outbox rows), so they must
# verify after every upgrade. A change here breaks mail in people's inboxes.
GOLDEN_REPLY = "r1-1042-20458-xrms674bg6cylcyup2ci57zowk"  # ticket 1042, anna, 2026-01-05
GOLDEN_REPLY_KEY3 = "r3-7-20453-rnzevhj2xzxfwfn2hung3xmwha"  # ticket 7, boris, 2025-12-31
GOLDEN_VERP = "support+b-1234-zag7v46cgwyii6g4@example.com"
GOLDEN_RATE_5 = "support+rate-1042-5-iy3zpwhu4ja7e6b6@example.com"
GOLDEN_RATE_1 = "support+rate-1042-1-wojv7ejsxeyqovw7@example.com"


def test_tokens_issued_before_the_upgrade_still_verify() -> None:
    day = date(2026, 1, 5)
    assert parse_reply_token(SECRET, reply_address(SUPPORT, GOLDEN_REPLY), "anna@example.com",
                             day) == 1042
    assert parse_reply_token(SECRET, reply_address(SUPPORT, GOLDEN_REPLY_KEY3),
                             "boris@client.example", day) == 7
    assert parse_verp(SECRET, GOLDEN_VERP) == 1234
    assert parse_rating_address(SECRET, GOLDEN_RATE_5) == (1042, 5)
    assert parse_rating_address(SECRET, GOLDEN_RATE_1) == (1042, 1)


def test_new_tokens_are_byte_identical_to_the_old_ones() -> None:
    assert make_reply_token(SECRET, 1042, "Anna@Example.com", date(2026, 1, 5)) == GOLDEN_REPLY
    assert make_reply_token(SECRET, 7, "boris@client.example", date(2025, 12, 31), 3) == (
        GOLDEN_REPLY_KEY3)
    assert verp_return_path(SUPPORT, 1234, SECRET) == GOLDEN_VERP
    assert rating_address(SUPPORT, SECRET, 1042, 5) == GOLDEN_RATE_5


def test_sign_and_verify_round_trip_in_any_case() -> None:
    token = signed.sign(signed.RATE, (42, 3), SECRET)
    assert token.startswith("rate-42-3-") and len(token) == len("rate-42-3-") + 16
    assert signed.verify(signed.RATE, token, SECRET) == (42, 3)
    assert signed.verify(signed.RATE, token.upper(), SECRET) == (42, 3)
    assert signed.verify(signed.RATE, token, "other") is None


def test_the_purpose_is_bound_into_the_mac() -> None:
    # The same fields under another purpose name give another MAC, so a token of
    # one purpose can never be replayed as another, even with one shared secret.
    renamed = dataclasses.replace(signed.BOUNCE, name="rate")
    token = signed.sign(signed.BOUNCE, (42,), SECRET)
    assert signed.verify(renamed, token, SECRET) is None
    assert signed.mac(signed.BOUNCE, (42,), SECRET) != signed.mac(renamed, (42,), SECRET)


def test_tokens_of_one_purpose_do_not_decode_as_another() -> None:
    reply = make_reply_token(SECRET, 42, "anna@example.com", date(2026, 1, 5))
    verp = signed.sign(signed.BOUNCE, (42,), SECRET)
    rate = signed.sign(signed.RATE, (42, 5), SECRET)
    for purpose, token in ((signed.REPLY, reply), (signed.BOUNCE, verp), (signed.RATE, rate)):
        others = {signed.REPLY, signed.BOUNCE, signed.RATE} - {purpose}
        assert all(signed.decode(other, token) is None for other in others)


def test_the_bound_value_is_required_and_checked() -> None:
    token = signed.sign(signed.REPLY, (1, 42, 20458), SECRET, bound="anna@example.com")
    assert signed.verify(signed.REPLY, token, SECRET, bound="anna@example.com") == (1, 42, 20458)
    assert signed.verify(signed.REPLY, token, SECRET, bound="boris@example.com") is None
    with pytest.raises(ValueError, match="need bound value"):
        signed.sign(signed.REPLY, (1, 42, 20458), SECRET)
    with pytest.raises(ValueError, match="take no bound value"):
        signed.sign(signed.BOUNCE, (1,), SECRET, bound="x")


@pytest.mark.parametrize(
    ("purpose", "fields"),
    [
        (signed.RATE, (42, 6)),
        (signed.RATE, (-1, 5)),
        (signed.RATE, (42,)),
        (signed.BOUNCE, (10**18,)),
        (signed.REPLY, (1000, 1, 1)),
    ],
)
def test_fields_outside_the_format_are_refused_when_signing(
    purpose: signed.Purpose, fields: tuple[int, ...]
) -> None:
    bound = "anna@example.com" if purpose.binds_value else None
    with pytest.raises(ValueError):
        signed.sign(purpose, fields, SECRET, bound=bound)


@pytest.mark.parametrize(
    "token",
    ["", "rate-", "rate-42-5", "rate-42-5-", "rate-42-5-aaaaaaaaaaaaaaa1", "rate-٤٢-5-aaaaaaaaaaaaaaaa",
     "rate-42-5-aaaaaaaaaaaaaaaaa", " rate-42-5-aaaaaaaaaaaaaaaa-x"],
)
def test_malformed_tokens_do_not_decode(token: str) -> None:
    assert signed.decode(signed.RATE, token) is None
    assert signed.verify(signed.RATE, token, SECRET) is None
