"""Parse the command lines at the top of an engineer's (or customer's) reply.

Engineers change tickets by writing lines such as ``#status resolved`` or
``#приоритет критический`` above their answer. This module only reads the
syntax: it turns those lines into :class:`Command` values with a normalised
argument, or into :class:`CommandError` values with a specific reason, and
returns the rest of the text as the body. Whether a command is allowed for this
ticket and this sender is decided later, in ``tickets``.

Rules (SECURITY.md R5.8): commands are only read from the top of the reply,
before any other non-blank text, so a ``#word`` further down (or a quoted
``> #status closed``) is body text; at most :data:`MAX_COMMANDS` per reply. The
caller passes the *new* text only (see :func:`mailticket.mail.quotes.strip_reply`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from mailticket.errors import CommandError
from mailticket.model import Line, Priority, Status, TicketRef

MAX_COMMANDS = 20
# The most time one reply may log; a larger figure is far more likely a typo.
MAX_TIME_MINUTES = 24 * 60
MAX_TEXT_LENGTH = 1000

# A line that looks like a command: "#" and a letter at the start of the line.
_COMMAND_RE = re.compile(r"^\s*#([^\W\d_][\w-]*)(.*)$")
_ADDRESS_RE = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_LINE_RE = re.compile(r"^[lл]?([1-9])$", re.IGNORECASE)
_DURATION_PART_RE = re.compile(r"(\d+(?:[.,]\d+)?)\s*([^\W\d_]*)")


class CommandName(StrEnum):
    """The canonical (English) name of a command; each has one handler in ``processing``."""

    STATUS = "status"
    PRIORITY = "priority"
    ASSIGN = "assign"
    LINE = "line"
    INTERNAL = "internal"
    TIME = "time"
    CC = "cc"
    UNCC = "uncc"
    MERGE = "merge"
    CLOSE = "close"
    CAUSE = "cause"
    ACTIONS = "actions"
    KB = "kb"
    IMPACT = "impact"
    RESTORED = "restored"
    PREVENTION = "prevention"
    STARTED = "started"


# Command words, English and Russian, to the canonical English name.
COMMAND_NAMES: dict[str, CommandName] = {
    "status": CommandName.STATUS,
    "статус": CommandName.STATUS,
    "priority": CommandName.PRIORITY,
    "приоритет": CommandName.PRIORITY,
    "assign": CommandName.ASSIGN,
    "назначить": CommandName.ASSIGN,
    "line": CommandName.LINE,
    "линия": CommandName.LINE,
    "internal": CommandName.INTERNAL,
    "внутреннее": CommandName.INTERNAL,
    "time": CommandName.TIME,
    "время": CommandName.TIME,
    "cc": CommandName.CC,
    "копия": CommandName.CC,
    "uncc": CommandName.UNCC,
    "merge": CommandName.MERGE,
    "объединить": CommandName.MERGE,
    "close": CommandName.CLOSE,
    "закрыть": CommandName.CLOSE,
    "cause": CommandName.CAUSE,
    "причина": CommandName.CAUSE,
    "actions": CommandName.ACTIONS,
    "меры": CommandName.ACTIONS,
    "kb": CommandName.KB,
    "impact": CommandName.IMPACT,
    "влияние": CommandName.IMPACT,
    "restored": CommandName.RESTORED,
    "восстановлено": CommandName.RESTORED,
    "prevention": CommandName.PREVENTION,
    "профилактика": CommandName.PREVENTION,
    "предотвращение": CommandName.PREVENTION,
    "started": CommandName.STARTED,
    "начало": CommandName.STARTED,
}

# Status words (either language works with either command word); "ё" is folded to "е".
STATUS_WORDS: dict[str, Status] = {
    "waiting": Status.WAITING,
    "open": Status.OPEN,
    "resolved": Status.RESOLVED,
    "closed": Status.CLOSED,
    "ожидание": Status.WAITING,
    "открыт": Status.OPEN,
    "решен": Status.RESOLVED,
    "закрыт": Status.CLOSED,
}

# Russian contracts name four grades "критический / высокий / средний / низкий";
# ours are critical / major / minor / technical. "Высокий" is a major fault,
# "средний" and "низкий" are both a minor fault, and a question that is no fault
# at all is "технический" (technical), as in the contracts.
PRIORITY_WORDS: dict[str, Priority] = {
    "critical": Priority.CRITICAL,
    "major": Priority.MAJOR,
    "minor": Priority.MINOR,
    "technical": Priority.TECHNICAL,
    "критический": Priority.CRITICAL,
    "высокий": Priority.MAJOR,
    "средний": Priority.MINOR,
    "низкий": Priority.MINOR,
    "технический": Priority.TECHNICAL,
}

# Duration units, English and Russian, to minutes.
_UNITS: dict[str, int] = {
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours", "ч", "час", "часа", "часов"), 60),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes", "м", "мин", "минут", "минуты"), 1),
}


@dataclass(frozen=True)
class Command:
    """One syntactically valid command: canonical English name, normalised argument, raw line."""

    name: CommandName
    arg: str | None
    line: str


@dataclass(frozen=True)
class ParsedCommands:
    """The commands and errors at the top of a reply, and the body without them."""

    commands: tuple[Command, ...]
    errors: tuple[CommandError, ...]
    body: str


@dataclass(frozen=True)
class _Invalid:
    """Why an argument was refused."""

    reason: str


_Check = str | None | _Invalid


def parse_commands(text: str) -> ParsedCommands:
    """Split ``text`` into the command lines at its top and the body below them."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    commands: list[Command] = []
    errors: list[CommandError] = []
    seen = 0
    index = 0
    for index, line in enumerate(lines):  # noqa: B007 (index is used after the loop)
        if not line.strip():
            continue
        match = _COMMAND_RE.match(line)
        if match is None:
            break
        seen += 1
        raw = line.strip()
        if seen > MAX_COMMANDS:
            errors.append(CommandError(raw, f"too many commands: at most {MAX_COMMANDS} per reply"))
            continue
        result = _parse_one(match.group(1), match.group(2), raw)
        if isinstance(result, CommandError):
            errors.append(result)
        else:
            commands.append(result)
    else:
        # Every line was blank or a command: there is no body.
        index = len(lines)
    return ParsedCommands(tuple(commands), tuple(errors), "\n".join(lines[index:]))


def _parse_one(word: str, rest: str, raw: str) -> Command | CommandError:
    """One command line (``#word rest``) to a command or an error."""
    name = COMMAND_NAMES.get(_fold(word))
    if name is None:
        known = ", ".join(f"#{n}" for n in dict.fromkeys(COMMAND_NAMES.values()))
        return CommandError(raw, f"unknown command; known: {known}")
    # "#status: resolved" is forgiven; the value is what follows.
    arg = rest.strip().removeprefix(":").strip()
    checked = _VALIDATORS[name](arg)
    if isinstance(checked, _Invalid):
        return CommandError(raw, f"#{word}: {checked.reason}")
    return Command(name=name, arg=checked, line=raw)


def _fold(word: str) -> str:
    """Lower-case, with "ё" as "е" (both spellings are in use)."""
    return word.lower().replace("ё", "е")


def _no_arg(arg: str) -> _Check:
    return None if not arg else _Invalid("takes no value")


def _one_of(table: dict[str, Status] | dict[str, Priority]) -> Callable[[str], _Check]:
    def check(arg: str) -> _Check:
        value = table.get(_fold(arg))
        if value is None:
            choices = "|".join(table)
            return _Invalid(
                f"expects one of {choices}, got {arg!r}" if arg else f"expects one of {choices}"
            )
        return value.value

    return check


def _address(arg: str) -> _Check:
    value = arg.strip("<>")
    if not _ADDRESS_RE.match(value):
        return _Invalid(
            f"expects one e-mail address, got {arg!r}" if arg else "expects an e-mail address"
        )
    return value.lower()


def _line(arg: str) -> _Check:
    match = _LINE_RE.match(arg)
    valid = {line.value for line in Line}
    value = f"L{match.group(1)}" if match else ""
    if value not in valid:
        return _Invalid(f"expects a support line {'|'.join(sorted(valid))}, got {arg!r}")
    return value


def _time(arg: str) -> _Check:
    minutes = parse_duration(arg)
    if minutes is None:
        return _Invalid(f"expects a duration such as 45m, 1h30m, 1.5h or 90, got {arg!r}")
    if not 0 < minutes <= MAX_TIME_MINUTES:
        return _Invalid(f"duration must be between 1 minute and {MAX_TIME_MINUTES // 60}h")
    return str(minutes)


def parse_duration(value: str) -> int | None:
    """Minutes in ``45m``, ``1h30m``, ``1.5h``, ``90``, ``1ч 30м``; None if it is not a duration."""
    text = _fold(value.strip())
    if not text:
        return None
    parts = list(_DURATION_PART_RE.finditer(text))
    # The parts must cover the whole text, apart from spaces between them.
    if "".join(p.group(0) for p in parts).replace(" ", "") != text.replace(" ", ""):
        return None
    if len(parts) == 1 and not parts[0].group(2):
        # A bare number means minutes.
        return round(float(parts[0].group(1).replace(",", ".")))
    total = 0.0
    previous = 0
    for part in parts:
        # "1h30" is read as 1h30m: a bare number right after hours is minutes.
        unit = 1 if not part.group(2) and previous == 60 else _UNITS.get(part.group(2))
        if unit is None:
            return None
        total += float(part.group(1).replace(",", ".")) * unit
        previous = unit
    return round(total)


def _ticket(arg: str) -> _Check:
    # The prefix is checked against the config when the command runs.
    ref = TicketRef.parse(arg)
    if ref is None:
        return _Invalid(f"expects a ticket reference such as MT-123, got {arg!r}")
    return str(ref)


def _text(arg: str) -> _Check:
    if not arg:
        return _Invalid("expects a text")
    if len(arg) > MAX_TEXT_LENGTH:
        return _Invalid(f"text longer than {MAX_TEXT_LENGTH} characters")
    return arg


def _slug(arg: str) -> _Check:
    value = arg.lower()
    if not _SLUG_RE.match(value):
        return _Invalid(f"expects a knowledge-base slug (letters, digits, . _ -), got {arg!r}")
    return value


# The times #restored and #started accept (the ticket's calendar time zone is applied later).
_TIME_FORMATS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"^(\d{1,2}):(\d{2})$"), ("hour", "minute")),
    (re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2})$"),
     ("year", "month", "day", "hour", "minute")),
    (re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4}) (\d{1,2}):(\d{2})$"),
     ("day", "month", "year", "hour", "minute")),
)


def _clock_time(arg: str) -> _Check:
    """``HH:MM``, ``YYYY-MM-DD HH:MM`` or ``DD.MM.YYYY HH:MM``, normalised to the first two."""
    text = " ".join(arg.split())
    for pattern, fields in _TIME_FORMATS:
        match = pattern.match(text)
        if match is None:
            continue
        parts = dict(zip(fields, (int(g) for g in match.groups()), strict=True))
        try:
            clock = time(parts["hour"], parts["minute"])
            if "year" not in parts:
                return f"{clock:%H:%M}"
            day = date(parts["year"], parts["month"], parts["day"])
        except ValueError:
            break
        return f"{day:%Y-%m-%d} {clock:%H:%M}"
    return _Invalid(f"expects a time HH:MM or YYYY-MM-DD HH:MM, got {arg!r}"
                    if arg else "expects a time HH:MM or YYYY-MM-DD HH:MM")


def _optional_clock_time(arg: str) -> _Check:
    """``#restored`` alone means now (the handler fills it in)."""
    return _clock_time(arg) if arg else None


def local_instant(value: str, zone: ZoneInfo, now: datetime) -> datetime:
    """The instant a normalised ``#restored``/``#started`` time names in ``zone``.

    A bare ``HH:MM`` is the latest such wall-clock time not after ``now``, so
    "#restored 23:40" written at 00:10 means yesterday evening, not tonight.
    """
    if " " in value:
        return datetime.strptime(value, "%Y-%m-%d %H:%M").replace(tzinfo=zone)
    clock = datetime.strptime(value, "%H:%M").time()
    today = now.astimezone(zone).date()
    instant = datetime.combine(today, clock, tzinfo=zone)
    return instant if instant <= now else instant - timedelta(days=1)


_VALIDATORS: dict[CommandName, Callable[[str], _Check]] = {
    CommandName.STATUS: _one_of(STATUS_WORDS),
    CommandName.PRIORITY: _one_of(PRIORITY_WORDS),
    CommandName.ASSIGN: _address,
    CommandName.LINE: _line,
    CommandName.INTERNAL: _no_arg,
    CommandName.TIME: _time,
    CommandName.CC: _address,
    CommandName.UNCC: _address,
    CommandName.MERGE: _ticket,
    CommandName.CLOSE: _no_arg,
    CommandName.CAUSE: _text,
    CommandName.ACTIONS: _text,
    CommandName.KB: _slug,
    CommandName.IMPACT: _text,
    CommandName.RESTORED: _optional_clock_time,
    CommandName.PREVENTION: _text,
    CommandName.STARTED: _clock_time,
}
