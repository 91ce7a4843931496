"""The listener's fast paths against aiosmtpd's own code: same answers for every input.

``parse_address`` replaces ``aiosmtpd.smtp.SMTP._getaddr`` (MAIL/RCPT), so it is
compared with that very method on generated arguments, exceptions included.
The long-line search of the bulk DATA reader is compared with a plain split.
(The DATA reader as a whole is compared with aiosmtpd over real sockets in
tests/integration/test_smtp_listener.py.)
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP

from mailticket.intake.smtp_fast import WINDOW, first_long_line, parse_address, unstuff


def _outcome(call: object, *args: object) -> object:
    try:
        return call(*args)  # type: ignore[operator]
    except Exception as exc:  # the library raises IndexError on some input; so must we
        return type(exc).__name__


def _arguments(rng: random.Random) -> list[str]:
    locals_ = ["ivan", "a.b", "A+x", "a..b", ".a", "a.", "o'neil", '"q s"', "a b", "", "x" * 70]
    domains = ["b.c", "EX-ample.com", "b..c", "b.c.", "-b.c", "[1.2.3.4]", "b", "b_c.d", ""]
    rests = ["", " SIZE=1", "  BODY=8BITMIME SIZE=2", "\tSIZE=1", "x", " (c)", "(c) x", " x (c)"]
    out = ["", "<>", "<@route:a@b.c>", "a@b.c SIZE=3", " <a@b.c>", "<a@b.c> <d@e.f>"]
    for _ in range(500):
        out.append(
            rng.choice(["<", "", " <"]) + rng.choice(locals_) + "@" + rng.choice(domains)
            + rng.choice([">", "", ">>"]) + rng.choice(rests)
        )  # fmt: skip
    alphabet = 'aZ09.-+_@<>"() \t[]:!#=,;\\'
    out += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 16))) for _ in range(500)]
    return out


@pytest.mark.parametrize("limit", [0, 4])
def test_parse_address_answers_like_aiosmtpd(limit: int) -> None:
    reference = SimpleNamespace(local_part_limit=limit)
    for arg in _arguments(random.Random(limit)):
        assert _outcome(parse_address, arg, limit) == _outcome(
            SMTP._getaddr, reference, arg
        ), arg


def test_parse_address_examples() -> None:
    assert parse_address("<Ivan.Petrov+x@Acme.example> SIZE=120", 0) == (
        "Ivan.Petrov+x@Acme.example",
        "SIZE=120",
    )
    assert parse_address("<a@b.c> (comment)", 0) == ("a@b.c", "")
    assert parse_address("<a@b..c>", 0) == (None, None)
    assert parse_address("<toolong@b.c>", 4) == (None, None)


def _reference_long_line(raw: bytes, limit: int) -> tuple[int, int] | None:
    start = 0
    for line in raw.split(b"\r\n"):
        if len(line) > limit - 2:
            return start, len(line)
        start += len(line) + 2
    return None


def test_first_long_line_matches_a_plain_split() -> None:
    rng = random.Random(3)
    pieces = [b"a" * 40, b"b" * 997, b"c" * 998, b"d" * 999, b"e" * 1000, b"\r", b"\n", b"."]
    for _ in range(400):
        raw = b"\r\n".join(rng.choice(pieces) for _ in range(rng.randint(0, 8))) + b"\r\n"
        assert first_long_line(raw, 1001) == _reference_long_line(raw, 1001), raw[:60]


def test_first_long_line_across_windows() -> None:
    short = b"s" * 76 + b"\r\n"
    body = short * (3 * WINDOW // len(short))
    assert first_long_line(body, 1001) is None
    at = len(body) - 5 * len(short)
    long_body = body[:at] + b"L" * 1000 + b"\r\n" + body[at:]
    assert first_long_line(long_body, 1001) == (at, 1000)
    # 999 octets plus CRLF is exactly the limit.
    assert first_long_line(body[:at] + b"L" * 999 + b"\r\n", 1001) is None


def test_unstuff_removes_one_leading_dot_per_line() -> None:
    assert unstuff(b".a\r\n..b\r\nc.\r\n...\r\n") == b"a\r\n.b\r\nc.\r\n..\r\n"
    body = b"no dots here\r\n"
    assert unstuff(body) is body
