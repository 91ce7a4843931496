"""How a promised time reads in an ack or a status answer (issue 16, point 4)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailticket.outbound.render import format_promise, format_within


@pytest.mark.parametrize(("minutes", "ru", "en"), [
    (30, "30 минут", "30 minutes"),
    (1, "1 минуты", "1 minute"),
    (21, "21 минуты", "21 minutes"),
    (11, "11 минут", "11 minutes"),
    (60, "1 часа", "1 hour"),
    (120, "2 часов", "2 hours"),
    (90, "1 часа 30 минут", "1 hour 30 minutes"),
    (0, "0 минут", "0 minutes"),
])
def test_within_reads_after_v_techenie(minutes: int, ru: str, en: str) -> None:
    assert format_within(minutes, "ru") == ru
    assert format_within(minutes, "en") == en


def test_promise_is_in_the_customers_zone_without_year() -> None:
    due = datetime(2026, 12, 7, 7, 30, tzinfo=UTC)
    assert format_promise(due, "Europe/Moscow", "ru") == "10:30 пн, 7 декабря"
    assert format_promise(due, "Asia/Yekaterinburg", "en") == "12:30 Mon, 7 December"


def test_promise_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_promise(datetime(2026, 12, 7, 7, 30), "Europe/Moscow", "ru")
