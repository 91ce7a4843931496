"""TicketRef: the one place a ticket reference is written or read."""

from __future__ import annotations

import pytest

from mailticket.model import TicketRef


def test_format_and_tag() -> None:
    ref = TicketRef("MT", 1042)
    assert str(ref) == "MT-1042"
    assert ref.tag == "[#MT-1042]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MT-12", 12),
        ("mt-12", 12),
        ("#MT-12", 12),
        (" [#MT-12] ", 12),
        ("(MT - 12)", 12),
        ("MT-0012", 12),
        ("12", 12),
        ("#12", 12),
        ("MT-999999999", 999_999_999),
        # Another prefix, no number, too many digits (no ticket of ours), other scripts.
        ("SD-12", None),
        ("MT-", None),
        ("MT12", None),
        ("MT-1234567890", None),
        ("MT-١٢", None),
        ("MT-12x", None),
        ("MT-12 MT-13", None),
        ("", None),
    ],
)
def test_parse_with_the_configured_prefix(text: str, expected: int | None) -> None:
    ref = TicketRef.parse(text, "MT")
    assert (ref.number if ref else None) == expected
    if ref is not None:
        assert ref.prefix == "MT"


def test_parse_without_a_prefix_needs_one_and_keeps_it() -> None:
    # Command syntax is checked before the config is known (``#merge sd2-7``).
    assert TicketRef.parse("sd2-07") == TicketRef("SD2", 7)
    assert TicketRef.parse("[#MT-7]") == TicketRef("MT", 7)
    assert TicketRef.parse("7") is None


def test_parse_reads_what_format_writes() -> None:
    for ref in (TicketRef("MT", 1), TicketRef("SD2", 123_456_789)):
        assert TicketRef.parse(str(ref), ref.prefix) == ref
        assert TicketRef.parse(ref.tag, ref.prefix) == ref
        assert TicketRef.in_subject(f"Re: {ref.tag} printer", ref.prefix) == (ref,)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: [#MT-12] Printer", (12,)),
        ("Re: [mt-12] and (#MT-13) and [# MT - 12]", (12, 13)),
        ("AW: [#MT-0012]", (12,)),
        ("MT-12 without brackets", ()),
        ("[#SMT-12] another system", ()),
        ("[#MT-1234567890] too long", ()),
        ("[#SD-12] another prefix", ()),
    ],
)
def test_tags_in_a_subject(subject: str, expected: tuple[int, ...]) -> None:
    assert tuple(r.number for r in TicketRef.in_subject(subject, "MT")) == expected
