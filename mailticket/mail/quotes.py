"""Keep only the new text of a reply: cut quoted history and signatures.

What an engineer writes goes to the customer, and what a customer writes is
stored as the article, so neither may drag the whole thread along. Mail
clients mark history in different ways, and Russian clients have their own
wording, so this module knows the common layouts:

* a hard separator after which the history is *not* ``>``-quoted: Outlook's
  ``-----Original Message-----`` / ``-----Исходное сообщение-----``, an
  underscore rule, or a ``From:/Sent:/To:/Subject:`` block
  (``От:/Отправлено:/Кому:/Тема:``);
* an attribution line (Gmail, Thunderbird, Apple Mail, Yandex, Mail.ru), in
  English or Russian, possibly wrapped over two or three lines;
* ``>``-quoted lines at the end;
* a signature after ``-- `` and "Sent from my iPhone"-style lines.

Commands are parsed from the result, so whatever is cut here can never run a
command (SECURITY.md R5.8).
"""

from __future__ import annotations

import re

# An attribution is never longer than this once its wrapped lines are joined.
_MAX_ATTRIBUTION = 400
# How many physical lines a wrapped attribution may span.
_ATTRIBUTION_SPAN = 3
# How many lines after "From:" we look for the rest of an Outlook header block.
_HEADER_BLOCK_SPAN = 6

_SEPARATOR_RE = re.compile(
    r"^\s*-{2,}\s*(original message|исходное сообщение|оригинальное сообщение"
    r"|forwarded message|пересылаемое сообщение|переадресованное сообщение)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_UNDERSCORE_RE = re.compile(r"^\s*_{10,}\s*$")
# Outlook (and Exchange web) header block: "From:" or "От:", possibly in *bold*.
_HEADER_FROM_RE = re.compile(r"^\s*\*?(from|от)\s*:\s*\*?\s*\S", re.IGNORECASE)
_HEADER_KEY_RE = re.compile(
    r"^\s*\*?(sent|date|to|cc|subject|отправлено|дата|кому|копия|тема)\s*:", re.IGNORECASE
)

_WEEKDAYS = (
    r"mon|tue|wed|thu|fri|sat|sun|monday|tuesday|wednesday|thursday|friday|saturday|sunday"
    r"|пн|вт|ср|чт|пт|сб|вс|понедельник|вторник|среда|четверг|пятница|суббота|воскресенье"
)
# Attributions start with "On", a date, or a weekday ("пн,", "Понедельник,").
_ATTR_START_RE = re.compile(rf"^(on\s|\d{{1,4}}[./\s-]|({_WEEKDAYS})\.?,)", re.IGNORECASE)
# ...and end with a verb, or with the quoted author's address and a colon.
_ATTR_END_RE = re.compile(
    r"(\bwrote|\bпишет|\bнаписала?|\bнаписал\s*\(а\)|>|@[\w.-]+\.\w+)\s*:\s*$", re.IGNORECASE
)
_TIME_RE = re.compile(r"\b\d{1,2}:\d{2}\b")
# A year, or a numeric date such as 01.01.26 or 1/1/2026.
_DATE_RE = re.compile(r"\b(\d{4}|\d{1,2}[./]\d{1,2}[./]\d{2,4})\b")
_ENGLISH_ON_RE = re.compile(r"^on\s.*\d.*\bwrote:\s*$", re.IGNORECASE)

_SIGNATURE_RE = re.compile(r"^--\s?$")
_MOBILE_RE = re.compile(
    r"^\s*(sent from my (iphone|ipad|android|samsung|galaxy|huawei|xiaomi|honor|blackberry"
    r"|mobile|phone|smartphone)\b[\w\s.-]{0,40}"
    r"|sent from (mail for windows|outlook for (ios|android)|yahoo mail|yandex\s?mail)\b.*"
    r"|get outlook for (ios|android)\b.*"
    r"|отправлено с (моего )?(iphone|ipad|android|samsung|galaxy|мобильного)\b.*"
    r"|отправлено из (мобильной )?(почты mail\.ru|яндекс\.?\s?почты|почты для windows)\b.*"
    r"|получить outlook для (ios|android)\b.*)$",
    re.IGNORECASE,
)


def strip_reply(text: str) -> str:
    """The new text of a reply: history and signature cut, surrounding blank lines trimmed."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = lines[: _hard_marker(lines)]
    attribution = _attribution(lines)
    if attribution is not None:
        start, end = attribution
        rest = lines[end:]
        # Answers written between quoted lines are kept with their questions.
        lines = lines[:start] + (rest if _is_inline_reply(rest) else [])
    lines = _drop_trailing_quote(lines)
    lines = _cut_signature(lines)
    return _trim(lines)


def _hard_marker(lines: list[str]) -> int:
    """Index of the first separator after which history follows unquoted, or len(lines)."""
    for i, line in enumerate(lines):
        if _SEPARATOR_RE.match(line):
            return i
        if _UNDERSCORE_RE.match(line):
            following = _next_nonblank(lines, i + 1)
            if following is not None and _is_header_block(lines, following):
                return i
        if _is_header_block(lines, i):
            return i
    return len(lines)


def _is_header_block(lines: list[str], i: int) -> bool:
    """Whether ``lines[i]`` opens a ``From:``/``От:`` block with at least two more header keys."""
    if not _HEADER_FROM_RE.match(lines[i]):
        return False
    window = lines[i + 1 : i + 1 + _HEADER_BLOCK_SPAN]
    keys = {m.group(1).lower() for line in window if (m := _HEADER_KEY_RE.match(line))}
    return len(keys) >= 2


def _attribution(lines: list[str]) -> tuple[int, int] | None:
    """(first line, line after the last) of the first attribution, joining wrapped lines."""
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith(">"):
            continue
        if not _ATTR_START_RE.match(line.strip()):
            continue
        joined = ""
        for span in range(_ATTRIBUTION_SPAN):
            j = i + span
            if j >= len(lines) or not lines[j].strip() or lines[j].lstrip().startswith(">"):
                break
            joined = f"{joined} {lines[j].strip()}".strip()
            if len(joined) > _MAX_ATTRIBUTION:
                break
            if _is_attribution(joined):
                return i, j + 1
    return None


def _is_attribution(candidate: str) -> bool:
    if _ENGLISH_ON_RE.match(candidate):
        return True
    return bool(
        _TIME_RE.search(candidate) and _DATE_RE.search(candidate) and _ATTR_END_RE.search(candidate)
    )


def _is_inline_reply(rest: list[str]) -> bool:
    """Whether the text after an attribution mixes quoted lines with new unquoted text."""
    seen_quote = False
    for line in rest:
        if line.lstrip().startswith(">"):
            seen_quote = True
        elif line.strip():
            # Unquoted text before any quote is history (HTML converted to text);
            # after the quotes it is an answer, unless it is only our signature.
            return seen_quote and not (_SIGNATURE_RE.match(line) or _MOBILE_RE.match(line))
    return False


def _drop_trailing_quote(lines: list[str]) -> list[str]:
    """Without the ``>``-quoted lines (and blank lines among them) at the end."""
    end = len(lines)
    while end > 0 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith(">")):
        end -= 1
    return lines[:end]


def _cut_signature(lines: list[str]) -> list[str]:
    """Cut at the first unquoted ``-- `` line or mobile-client signature line."""
    for i, line in enumerate(lines):
        if _SIGNATURE_RE.match(line) or _MOBILE_RE.match(line):
            return lines[:i]
    return lines


def _next_nonblank(lines: list[str], start: int) -> int | None:
    for i in range(start, len(lines)):
        if lines[i].strip():
            return i
    return None


def _trim(lines: list[str]) -> str:
    """Join ``lines`` without leading and trailing blank lines."""
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    end = len(lines)
    while end > start and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[start:end])
