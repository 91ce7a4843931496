"""Address grammar: support addresses, reply tokens and VERP tags."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailticket.mail.addresses import (
    ReplyToken,
    TokenCheck,
    TokenStatus,
    base_address,
    decode_reply_token,
    find_token_address,
    is_our_address,
    make_reply_token,
    normalise_address,
    normalise_domain,
    parse_reply_token,
    parse_verp,
    reply_address,
    split_address,
    verify_reply_token,
    verp_return_path,
)

SECRET = "s3cret-for-tests"
DAY = date(2026, 1, 5)
DAY_NUMBER = (DAY - date(1970, 1, 1)).days  # 20458
ANNA = "anna@example.com"


def token_address(ticket: int = 42, engineer: str = ANNA, issued: date = DAY, key: int = 1) -> str:
    return reply_address(
        "support@example.com", make_reply_token(SECRET, ticket, engineer, issued, key)
    )


def test_split_and_base_address_unchanged() -> None:
    assert split_address(" <Support+X@Example.COM> ") == ("Support+X", "example.com")
    assert split_address("nodomain") == ("nodomain", "")
    assert base_address("Support+r1-2-3@Example.com") == "support@example.com"
    assert is_our_address("support+anything@EXAMPLE.com", ("Support@example.com",))
    assert not is_our_address("sales@example.com", ("support@example.com",))


def test_normalise_address_and_domain() -> None:
    assert normalise_address("<Anna@Пример.РФ>") == "anna@xn--e1afmkfd.xn--p1ai"
    assert normalise_address("anna@xn--e1afmkfd.xn--p1ai.") == "anna@xn--e1afmkfd.xn--p1ai"
    assert normalise_address("no-at-sign") == ""
    assert normalise_address("@example.com") == ""
    assert normalise_domain("EXAMPLE.com") == "example.com"


def test_token_layout() -> None:
    token = make_reply_token(SECRET, 42, "Anna@Example.com", DAY)
    assert re.fullmatch(rf"r1-42-{DAY_NUMBER}-[a-z2-7]{{26}}", token)
    # The engineer is bound by the MAC but not written in the token.
    assert "anna" not in token
    assert decode_reply_token(token) == ReplyToken(1, 42, DAY_NUMBER, token.rsplit("-", 1)[1])
    assert reply_address("Support@example.com", token) == f"Support+{token}@example.com"


def test_local_part_fits_64_octets_for_large_ids() -> None:
    address = token_address(ticket=999_999_999_999, key=999)
    local = address.split("@")[0]
    assert len(local) == 58
    assert parse_reply_token(SECRET, address, ANNA, DAY) == 999_999_999_999


def test_too_long_support_local_part_is_refused() -> None:
    token = make_reply_token(SECRET, 1, ANNA, DAY)
    with pytest.raises(ValueError, match="longer than 64 octets"):
        reply_address("technical-support-department-of-romashka@example.com", token)


def test_valid_token_gives_ticket_id() -> None:
    assert parse_reply_token(SECRET, token_address(), ANNA, DAY) == 42
    # Engineer compared case-insensitively; MTAs may upper-case the whole address.
    assert parse_reply_token(SECRET, token_address().upper(), "ANNA@example.COM", DAY) == 42


def test_token_for_another_engineer_is_refused() -> None:
    address = token_address(engineer=ANNA)
    assert parse_reply_token(SECRET, address, "boris@example.com", DAY) is None
    assert verify_reply_token(SECRET, address, "boris@example.com", DAY) == TokenCheck(
        TokenStatus.BAD_MAC
    )


def test_expiry() -> None:
    address = token_address()
    assert parse_reply_token(SECRET, address, ANNA, DAY + timedelta(days=90)) == 42
    assert parse_reply_token(SECRET, address, ANNA, DAY + timedelta(days=91)) is None
    assert verify_reply_token(SECRET, address, ANNA, DAY + timedelta(days=91)) == TokenCheck(
        TokenStatus.EXPIRED, 42
    )
    assert (
        parse_reply_token(SECRET, address, ANNA, DAY + timedelta(days=10), max_age_days=7) is None
    )


def test_token_from_the_future() -> None:
    address = token_address(issued=DAY + timedelta(days=2))
    assert verify_reply_token(SECRET, address, ANNA, DAY).status is TokenStatus.FROM_FUTURE
    assert parse_reply_token(SECRET, token_address(issued=DAY + timedelta(days=1)), ANNA, DAY) == 42


@pytest.mark.parametrize("field", ["ticket", "day", "key", "mac"])
def test_tampered_token_is_refused(field: str) -> None:
    local, domain = token_address().split("@")
    prefix, token = local.split("+")
    key, ticket, day, mac = token.split("-")
    if field == "ticket":
        ticket = "43"
    elif field == "day":
        day = str(int(day) + 30)
    elif field == "key":
        key = "r2"
    else:
        mac = ("b" if mac[0] == "a" else "a") + mac[1:]
    tampered = f"{prefix}+{key}-{ticket}-{day}-{mac}@{domain}"
    assert verify_reply_token(SECRET, tampered, ANNA, DAY).status is TokenStatus.BAD_MAC


def test_wrong_secret_and_key_rotation() -> None:
    address = token_address(key=2)
    assert parse_reply_token("other", address, ANNA, DAY) is None
    assert parse_reply_token({1: "old", 2: SECRET}, address, ANNA, DAY) == 42
    assert verify_reply_token({1: SECRET}, address, ANNA, DAY) == TokenCheck(
        TokenStatus.UNKNOWN_KEY
    )


@pytest.mark.parametrize(
    "address",
    [
        "",
        "support@example.com",
        "support+@example.com",
        "support+r1-42-20458@example.com",
        "support+r1-42-20458-abc@example.com",
        "support+r1-x-20458-aaaaaaaaaaaaaaaaaaaaaaaaaa@example.com",
        "support+r1-42-20458-aaaaaaaaaaaaaaaaaaaaaaaaa1@example.com",
        "support+r1-42-20458-aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "<<@>>",
    ],
)
def test_malformed_tokens(address: str) -> None:
    assert verify_reply_token(SECRET, address, ANNA, DAY) == TokenCheck(TokenStatus.MALFORMED)


@given(st.text(max_size=120), st.text(max_size=40))
def test_garbage_never_raises(address: str, engineer: str) -> None:
    assert parse_reply_token(SECRET, address, engineer, DAY) is None
    assert parse_verp(SECRET, address) is None


def test_find_token_address() -> None:
    good = token_address()
    assert find_token_address(["support@example.com", "support+b-1-x@example.com", good]) == good
    assert find_token_address(["support@example.com", "boris@client.example"]) is None
    assert find_token_address([]) is None


def test_verp_round_trip() -> None:
    path = verp_return_path("support@example.com", 1234, SECRET)
    assert re.fullmatch(r"support\+b-1234-[a-z2-7]{16}@example\.com", path)
    assert parse_verp(SECRET, path) == 1234
    assert parse_verp(SECRET, path.upper()) == 1234
    assert parse_verp("other", path) is None


def test_verp_tampered_id_is_refused() -> None:
    path = verp_return_path("support@example.com", 1234, SECRET)
    assert parse_verp(SECRET, path.replace("b-1234-", "b-1235-")) is None


def test_reply_token_and_verp_do_not_mix() -> None:
    path = verp_return_path("support@example.com", 7, SECRET)
    assert find_token_address([path]) is None
    assert parse_reply_token(SECRET, path, ANNA, DAY) is None
    assert parse_verp(SECRET, token_address()) is None
