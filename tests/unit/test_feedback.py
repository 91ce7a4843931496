"""Rating tokens (signed mailto addresses) and rating replies ("5", "4 из 5 - спасибо")."""

from __future__ import annotations

import pytest

from mailticket.mail.addresses import parse_rating_address, rating_address
from mailticket.processing.ratings import parse_rating_reply

SECRET = "test-secret-0123456789"
SUPPORT = "support@provider.example"


def test_rating_address_round_trip() -> None:
    address = rating_address(SUPPORT, SECRET, 42, 5)
    local, _, domain = address.partition("@")
    assert domain == "provider.example"
    assert local.startswith("support+rate-42-5-") and len(local) == len("support+rate-42-5-") + 16
    assert parse_rating_address(SECRET, address) == (42, 5)
    assert parse_rating_address(SECRET, address.upper()) == (42, 5)


def test_forged_tokens_are_recognised_as_forged() -> None:
    good = rating_address(SUPPORT, SECRET, 42, 1)
    mac = good.split("@")[0].rsplit("-", 1)[1]
    # Same MAC, another score or ticket: the MAC binds both.
    assert parse_rating_address(SECRET, f"support+rate-42-5-{mac}@provider.example") == "forged"
    assert parse_rating_address(SECRET, f"support+rate-43-1-{mac}@provider.example") == "forged"
    assert parse_rating_address("other-secret", good) == "forged"
    assert parse_rating_address(SECRET, "support+rate-42-9-aaaaaaaaaaaaaaaa@provider.example") == (
        "forged")
    assert parse_rating_address(SECRET, "support+rate-x@provider.example") == "forged"
    # Not a rating address at all.
    assert parse_rating_address(SECRET, SUPPORT) is None
    assert parse_rating_address(SECRET, "support+r1-42-20000-abc@provider.example") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", (5, "")),
        ("  4.\n", (4, "")),
        ("5/5", (5, "")),
        ("4 из 5\nВсё починили быстро, спасибо!", (4, "Всё починили быстро, спасибо!")),
        ("3 - долго ждали ответа", (3, "долго ждали ответа")),
        ("1: так и не заработало\nпринтер всё ещё не печатает",
         (1, "так и не заработало\nпринтер всё ещё не печатает")),
        ("5 out of 5", (5, "")),
        ("2\n\n> Please rate our help\n> 1 - very poor", (2, "")),
        ("1 декабря вернусь из отпуска", None),
        ("10", None),
        ("0", None),
        ("Принтер опять не печатает", None),
        ("", None),
    ],
)
def test_rating_reply(text: str, expected: tuple[int, str] | None) -> None:
    assert parse_rating_reply(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Issue 14 class 13: in an answer to the request, any text may follow the score.
        ("5 Спасибо!", (5, "Спасибо!")),
        ("1 ужасно", (1, "ужасно")),
        ("4 хорошо, но долго\nВторой день ждали.", (4, "хорошо, но долго\nВторой день ждали.")),
        ("5/5 отлично", (5, "отлично")),
        ("3 из 5 нормально", (3, "нормально")),
        ("2. Долго", (2, "Долго")),
        ("5Спасибо", (5, "Спасибо")),
        ("5 Спасибо!\n\n> Оцените, пожалуйста, нашу работу", (5, "Спасибо!")),
        # Still not a score: a longer number, a decimal, a time, a fraction, words first.
        ("12 дней ждали", None),
        ("1.5 часа ждали", None),
        ("1:30 ждали", None),
        ("1/2 работает", None),
        ("Спасибо, 5", None),
        ("6 баллов", None),
    ],
)
def test_rating_answering_the_request(text: str, expected: tuple[int, str] | None) -> None:
    assert parse_rating_reply(text, answers_request=True) == expected


@pytest.mark.parametrize("text", ["5 Спасибо!", "1 ужасно", "1 декабря вернусь"])
def test_a_score_followed_by_words_in_an_ordinary_reply_is_no_rating(text: str) -> None:
    assert parse_rating_reply(text) is None


@pytest.mark.parametrize("text", ["1:30 ждали, потом заработало", "1.5 часа", "2,5 часа"])
def test_a_time_or_decimal_is_no_rating_even_alone_on_its_line(text: str) -> None:
    assert parse_rating_reply(text) is None
