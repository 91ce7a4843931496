"""parse_commands: every command in English and Russian, errors, and where commands may stand."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from mailticket.policy.commands import (
    Command,
    ParsedCommands,
    local_instant,
    parse_commands,
    parse_duration,
)

MSK = ZoneInfo("Europe/Moscow")


def only(parsed: ParsedCommands) -> Command:
    assert parsed.errors == ()
    assert len(parsed.commands) == 1
    return parsed.commands[0]


def errors(parsed: ParsedCommands) -> list[tuple[str, str]]:
    return [(e.line, e.reason) for e in parsed.errors]


@pytest.mark.parametrize(
    ("line", "name", "arg"),
    [
        ("#status waiting", "status", "waiting"),
        ("#status open", "status", "open"),
        ("#status resolved", "status", "resolved"),
        ("#status closed", "status", "closed"),
        ("#статус ожидание", "status", "waiting"),
        ("#статус открыт", "status", "open"),
        ("#статус решён", "status", "resolved"),
        ("#статус решен", "status", "resolved"),
        ("#статус закрыт", "status", "closed"),
        ("#Status Resolved", "status", "resolved"),
        ("#status: resolved", "status", "resolved"),
        ("#priority critical", "priority", "critical"),
        ("#priority major", "priority", "major"),
        ("#priority minor", "priority", "minor"),
        ("#priority technical", "priority", "technical"),
        ("#приоритет критический", "priority", "critical"),
        ("#приоритет высокий", "priority", "major"),
        ("#приоритет средний", "priority", "minor"),
        ("#приоритет низкий", "priority", "minor"),
        ("#приоритет технический", "priority", "technical"),
        ("#assign Anna@Example.com", "assign", "anna@example.com"),
        ("#назначить <anna@example.com>", "assign", "anna@example.com"),
        ("#line L2", "line", "L2"),
        ("#line 3", "line", "L3"),
        ("#линия 2", "line", "L2"),
        ("#линия Л2", "line", "L2"),
        ("#internal", "internal", None),
        ("#внутреннее", "internal", None),
        ("#time 45m", "time", "45"),
        ("#time 1h30m", "time", "90"),
        ("#time 1.5h", "time", "90"),
        ("#time 90", "time", "90"),
        ("#время 45м", "time", "45"),
        ("#время 1ч30м", "time", "90"),
        ("#время 1ч 30м", "time", "90"),
        ("#время 1,5ч", "time", "90"),
        ("#cc olga@client.example", "cc", "olga@client.example"),
        ("#копия olga@client.example", "cc", "olga@client.example"),
        ("#uncc olga@client.example", "uncc", "olga@client.example"),
        ("#merge MT-123", "merge", "MT-123"),
        ("#объединить mt-0123", "merge", "MT-123"),
        ("#merge [#MT-7]", "merge", "MT-7"),
        ("#close", "close", None),
        ("#закрыть", "close", None),
        ("#cause Disk full on node 2", "cause", "Disk full on node 2"),
        ("#причина Переполнен диск", "cause", "Переполнен диск"),
        ("#actions Added monitoring", "actions", "Added monitoring"),
        ("#меры Добавлен мониторинг", "actions", "Добавлен мониторинг"),
        ("#kb Backup-Disk-Full", "kb", "backup-disk-full"),
        ("#impact Orders are not accepted", "impact", "Orders are not accepted"),
        ("#влияние Не принимаются заказы", "impact", "Не принимаются заказы"),
        ("#prevention Disk alert at 80 %", "prevention", "Disk alert at 80 %"),
        ("#профилактика Оповещение о диске", "prevention", "Оповещение о диске"),
        ("#предотвращение Оповещение о диске", "prevention", "Оповещение о диске"),
        ("#restored", "restored", None),
        ("#restored 4:30", "restored", "04:30"),
        ("#восстановлено 2026-11-21 04:30", "restored", "2026-11-21 04:30"),
        ("#восстановлено 21.11.2026 4:30", "restored", "2026-11-21 04:30"),
        ("#started 02:10", "started", "02:10"),
        ("#начало 2026-11-21T02:10", "started", "2026-11-21 02:10"),
    ],
)
def test_each_command(line: str, name: str, arg: str | None) -> None:
    parsed = parse_commands(f"{line}\nBody text.")
    assert only(parsed) == Command(name=name, arg=arg, line=line)
    assert parsed.body == "Body text."


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            "#status done",
            "#status: expects one of waiting|open|resolved|closed|ожидание|открыт|"
            "решен|закрыт, got 'done'",
        ),
        (
            "#status",
            "#status: expects one of waiting|open|resolved|closed|ожидание|открыт|решен|закрыт",
        ),
        (
            "#priority urgent",
            "#priority: expects one of critical|major|minor|technical|"
            "критический|высокий|средний|низкий|технический, got 'urgent'",
        ),
        ("#assign anna", "#assign: expects one e-mail address, got 'anna'"),
        ("#assign", "#assign: expects an e-mail address"),
        (
            "#cc a@b.example, c@d.example",
            "#cc: expects one e-mail address, got 'a@b.example, c@d.example'",
        ),
        ("#line L7", "#line: expects a support line L1|L2|L3|L4, got 'L7'"),
        ("#internal please", "#internal: takes no value"),
        ("#close now", "#close: takes no value"),
        ("#time soon", "#time: expects a duration such as 45m, 1h30m, 1.5h or 90, got 'soon'"),
        ("#time 0", "#time: duration must be between 1 minute and 24h"),
        ("#time 25h", "#time: duration must be between 1 minute and 24h"),
        ("#merge 123", "#merge: expects a ticket reference such as MT-123, got '123'"),
        ("#cause", "#cause: expects a text"),
        ("#меры", "#меры: expects a text"),
        ("#impact", "#impact: expects a text"),
        ("#started", "#started: expects a time HH:MM or YYYY-MM-DD HH:MM"),
        ("#restored 25:00", "#restored: expects a time HH:MM or YYYY-MM-DD HH:MM, got '25:00'"),
        ("#начало вчера", "#начало: expects a time HH:MM or YYYY-MM-DD HH:MM, got 'вчера'"),
        ("#restored 2026-02-30 10:00",
         "#restored: expects a time HH:MM or YYYY-MM-DD HH:MM, got '2026-02-30 10:00'"),
        (
            "#kb two words",
            "#kb: expects a knowledge-base slug (letters, digits, . _ -), got 'two words'",
        ),
    ],
)
def test_invalid_arguments(line: str, reason: str) -> None:
    parsed = parse_commands(f"{line}\nBody.")
    assert parsed.commands == ()
    assert errors(parsed) == [(line, reason)]
    assert parsed.body == "Body."


def test_unknown_command() -> None:
    parsed = parse_commands("#status open\n#frobnicate 3\nText")
    assert parsed.commands == (Command("status", "open", "#status open"),)
    assert errors(parsed) == [
        (
            "#frobnicate 3",
            "unknown command; known: #status, #priority, #assign, #line, #internal, #time, "
            "#cc, #uncc, #merge, #close, #cause, #actions, #kb, #impact, #restored, "
            "#prevention, #started",
        )
    ]
    assert parsed.body == "Text"


def test_several_commands_blank_lines_and_exact_body() -> None:
    text = (
        "\n"
        "#priority critical\n"
        "\n"
        "#статус открыт\r\n"
        "  #time 30m\n"
        "\n"
        "\n"
        "Hello Boris,\n"
        "\n"
        "we are on it.\n"
        "#status closed\n"
        "Anna\n"
    )
    parsed = parse_commands(text)
    assert parsed.commands == (
        Command("priority", "critical", "#priority critical"),
        Command("status", "open", "#статус открыт"),
        Command("time", "30", "#time 30m"),
    )
    assert parsed.errors == ()
    # The "#status closed" below the first text line is body text, not a command.
    assert parsed.body == "Hello Boris,\n\nwe are on it.\n#status closed\nAnna\n"


def test_quoted_command_is_ignored() -> None:
    parsed = parse_commands("> #status closed\nThanks")
    assert parsed == ParsedCommands(commands=(), errors=(), body="> #status closed\nThanks")


def test_hashtag_and_heading_are_not_commands() -> None:
    parsed = parse_commands("# Heading\n#1 in the list")
    assert parsed == ParsedCommands((), (), "# Heading\n#1 in the list")


def test_only_commands_gives_empty_body() -> None:
    parsed = parse_commands("#internal\n#time 1h\n\n")
    assert [c.name for c in parsed.commands] == ["internal", "time"]
    assert parsed.body == ""


def test_empty_text() -> None:
    assert parse_commands("") == ParsedCommands((), (), "")


def test_at_most_twenty_commands() -> None:
    lines = [f"#time {n}m" for n in range(1, 23)]
    parsed = parse_commands("\n".join([*lines, "Body"]))
    assert [c.arg for c in parsed.commands] == [str(n) for n in range(1, 21)]
    assert errors(parsed) == [
        ("#time 21m", "too many commands: at most 20 per reply"),
        ("#time 22m", "too many commands: at most 20 per reply"),
    ]
    assert parsed.body == "Body"


@pytest.mark.parametrize(
    ("value", "minutes"),
    [
        ("45m", 45),
        ("45 min", 45),
        ("2h", 120),
        ("2 часа", 120),
        ("1h 15m", 75),
        ("0.25h", 15),
        ("90 минут", 90),
        ("", None),
        ("1h30", 90),
        ("1ч30", 90),
        ("30 1h", None),
        ("1x", None),
        ("h", None),
        ("45m!", None),
    ],
)
def test_parse_duration(value: str, minutes: int | None) -> None:
    assert parse_duration(value) == minutes


@pytest.mark.parametrize(
    ("value", "now", "expected"),
    [
        # A bare time is the latest such time not after now: today, or yesterday evening.
        ("04:30", datetime(2026, 11, 21, 5, 0, tzinfo=MSK), datetime(2026, 11, 21, 4, 30, tzinfo=MSK)),
        ("23:40", datetime(2026, 11, 21, 0, 10, tzinfo=MSK), datetime(2026, 11, 20, 23, 40, tzinfo=MSK)),
        ("00:10", datetime(2026, 11, 21, 0, 10, tzinfo=MSK), datetime(2026, 11, 21, 0, 10, tzinfo=MSK)),
        # A full date is taken as written, in the zone (the handler refuses the future).
        ("2026-11-25 10:00", datetime(2026, 11, 21, 5, 0, tzinfo=MSK),
         datetime(2026, 11, 25, 10, 0, tzinfo=MSK)),
    ],
)
def test_local_instant(value: str, now: datetime, expected: datetime) -> None:
    assert local_instant(value, MSK, now.astimezone(UTC)) == expected
