"""How many tickets a month brought, and when and about what: the report's volume section.

A ticket belongs to the month it was opened in (``reports.timezone``); merged
tickets do not count, their mail lives on in the ticket they were merged into.
Frequent subjects are grouped on what the customer wrote, not how the mail
client or our tags decorated it: reply and forward prefixes (``Re:``,
``Fwd:``, ``Ответ:``, ``Пересл.:``…), leading bracketed tags (``[СРОЧНО]``,
``[URGENT]``, ``[EXT]``) and our ticket tags (``[#MT-12]``) are removed, case and
``ё``/``е`` are ignored, and trailing punctuation does not split a group. Each
group is shown as its most frequent cleaned spelling.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from mailticket.mail.compose import strip_reply_prefixes
from mailticket.model import Line, Priority
from mailticket.store.schema import Ticket

TOP_SUBJECTS = 10
WEEKDAY_CODES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# A bracketed tag before the subject proper: [СРОЧНО], [URGENT], [EXT], [#MT-12].
_LEADING_TAG = re.compile(r"^\s*\[[^\[\]]{1,40}\]\s*")
# Our ticket tag anywhere in the subject, whatever the prefix.
_TICKET_TAG = re.compile(r"\[#[A-Za-z0-9]{1,10}-\d+\]")
_TRAILING = " \t.!?…:;,-–—"


@dataclass(frozen=True)
class Volume:
    """Tickets opened in the month: counts, hour and weekday of opening, frequent subjects."""

    total: int = 0
    by_priority: dict[str, int] = field(default_factory=dict)
    by_line: dict[str, int] = field(default_factory=dict)
    by_hour: tuple[int, ...] = (0,) * 24
    by_weekday: tuple[int, ...] = (0,) * 7
    subjects: tuple[tuple[str, int], ...] = ()


def clean_subject(subject: str) -> str:
    """The subject without reply prefixes, leading tags and ticket tags, spaces collapsed."""
    text = strip_reply_prefixes(subject)
    while True:
        shorter = strip_reply_prefixes(_LEADING_TAG.sub("", text, count=1))
        if shorter == text:
            break
        text = shorter
    return " ".join(_TICKET_TAG.sub(" ", text).split()).rstrip(_TRAILING)


def subject_key(subject: str) -> str:
    """What two subjects must share to count as one: the cleaned text, case and ё folded."""
    return clean_subject(subject).casefold().replace("ё", "е")


def frequent_subjects(subjects: Sequence[str], top: int = TOP_SUBJECTS) -> tuple[tuple[str, int], ...]:
    """The ``top`` subject groups, most tickets first, each in its most common spelling."""
    groups: Counter[str] = Counter()
    spellings: dict[str, Counter[str]] = {}
    for subject in subjects:
        key = subject_key(subject)
        groups[key] += 1
        spellings.setdefault(key, Counter())[clean_subject(subject)] += 1
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    # Counter.most_common keeps first-seen order among equals: deterministic.
    return tuple((spellings[key].most_common(1)[0][0], count) for key, count in ranked)


def volume(tickets: Sequence[Ticket], timezone: str) -> Volume:
    """The volume section of the tickets opened in the month."""
    zone = ZoneInfo(timezone)
    hours, weekdays = [0] * 24, [0] * 7
    for ticket in tickets:
        local = ticket.created_at.astimezone(zone)
        hours[local.hour] += 1
        weekdays[local.weekday()] += 1
    return Volume(
        total=len(tickets),
        by_priority={p.value: sum(t.priority == p for t in tickets) for p in Priority},
        by_line={line.value: sum(t.line == line for t in tickets) for line in Line},
        by_hour=tuple(hours),
        by_weekday=tuple(weekdays),
        subjects=frequent_subjects([t.subject for t in tickets]),
    )


def to_json(value: Volume) -> dict[str, Any]:
    """The section as JSON for the month's close."""
    return {"total": value.total, "by_priority": value.by_priority, "by_line": value.by_line,
            "by_hour": list(value.by_hour), "by_weekday": list(value.by_weekday),
            "subjects": [list(pair) for pair in value.subjects]}


def from_json(data: Mapping[str, Any]) -> Volume:
    """The section back from a close's snapshot."""
    return Volume(
        total=int(data["total"]),
        # In the enums' order, whatever order the database kept the keys in.
        by_priority={p.value: int(data["by_priority"].get(p.value, 0)) for p in Priority},
        by_line={line.value: int(data["by_line"].get(line.value, 0)) for line in Line},
        by_hour=tuple(int(v) for v in data["by_hour"]),
        by_weekday=tuple(int(v) for v in data["by_weekday"]),
        subjects=tuple((str(s), int(n)) for s, n in data["subjects"]),
    )
