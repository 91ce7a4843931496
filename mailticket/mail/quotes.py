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
* ``>``-quoted lines at the end, also when a mailing-list or corporate
  footer follows them, and in either order with a signature;
* a signature after ``-- ``, "Sent from my iPhone"-style lines (also with a
  carrier or brand before the device), a ``-Name`` sign-off directly under
  the text, and a rule of dashes or underscores left over from a separator.

What the writer typed between quoted lines (inline answers) stays, and so do
quoted lines with the writer's text below them.

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
# The devices of "Sent from my …"; the words between "my" and the device must
# be capitalised brand or carrier names ("Verizon Wireless BlackBerry"), so
# "Sent from my desk phone" is a sentence, not a signature.
_DEVICES = (
    r"iphone|ipad|ipod|android|samsung|galaxy|huawei|xiaomi|honor|blackberry|pixel|nokia"
    r"|mobile|phone|smartphone|windows phone"
)
_MOBILE_RE = re.compile(
    rf"^\s*(sent from my (?:(?-i:[A-Z0-9][\w&.+-]*)\s+){{0,3}}({_DEVICES})\b[\w\s.-]{{0,40}}"
    r"|sent from (mail for windows|outlook for (ios|android)|yahoo mail|yandex\s?mail"
    r"|mail\.ru|mymail)\b.*"
    r"|get outlook for (ios|android)\b.*"
    r"|отправлено с (моего )?(iphone|ipad|android|samsung|galaxy|huawei|xiaomi|honor|мобильного"
    r"|смартфона|телефона|планшета)\b.*"
    r"|отправлено из (мобильной |приложения )?(почты mail\.ru|mail\.ru|яндекс\.?\s?почты"
    r"|почты для windows)\b.*"
    r"|получить outlook для (ios|android)\b.*)$",
    re.IGNORECASE,
)
# "-Boris", "—Анна Петрова": a sign-off under the last line of text. A hyphen
# must touch the name, so the last item of a "- item" list is not taken for one.
_SIGN_OFF_RE = re.compile(r"^\s*(-|[–—]\s?)[A-ZА-ЯЁ][\w.'’-]*( [A-ZА-ЯЁ][\w.'’-]*)?\s*$")
_BULLET_RE = re.compile(r"^\s*[-–—*•]")
# A line of dashes, underscores or equals signs: a rule, never text.
_RULE_RE = re.compile(r"^\s*[-_=–—]{3,}\s*$")
# The first line of a mailing-list or legal footer appended below the history.
_FOOTER_RE = re.compile(
    r"^\s*(you received this (message|e-?mail) because|to unsubscribe\b|unsubscribe:"
    r"|(this|the) (e-?mail|message|communication)\b.{0,80}\b(confidential|privileged)"
    r"|the information (contained )?in this (e-?mail|message)"
    r"|confidentiality notice|disclaimer\s*:"
    r"|(это|данное|настоящее) (электронное )?(сообщение|письмо)\b.{0,80}"
    r"(конфиденциальн|предназначен)"
    r"|информация, содержащаяся в (этом|данном|настоящем) (сообщении|письме)"
    r"|вы получили это (сообщение|письмо)|чтобы отказаться от подписки|отписаться от рассылки"
    r"|конфиденциальность\s*:)",
    re.IGNORECASE,
)


def strip_reply(text: str) -> str:
    """The new text of a reply: history and signature cut, surrounding blank lines trimmed."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = lines[: _hard_marker(lines)]
    lines = lines[: _footer(lines)]
    attribution = _attribution(lines)
    if attribution is not None:
        start, end = attribution
        rest = lines[end:]
        # Answers written between quoted lines are kept with their questions.
        lines = lines[:start] + (rest if _is_inline_reply(rest) else [])
    lines = _drop_trailing_quote(lines)
    lines = _cut_signature(lines)
    # What the signature cut may leave at the end: a quote above it, a sign-off,
    # a rule; each may uncover another, so cut until nothing changes.
    while True:
        before = len(lines)
        lines = _drop_trailing_rules(_drop_sign_off(_drop_trailing_quote(lines)))
        if len(lines) == before:
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
            return seen_quote and not _is_signature(line)
    return False


def _footer(lines: list[str]) -> int:
    """Where a list or legal footer below the quoted history starts, or len(lines).

    Such a footer after the history would otherwise make the quote look like
    an inline answer and keep the whole history. It starts after a quote
    (possibly below inline answers) at a paragraph that is a rule or opens
    with the usual list or legal wording, and holds no quoted line.
    """
    quoted = [i for i, line in enumerate(lines) if _is_quoted(line)]
    if not quoted:
        return len(lines)
    for k in range(quoted[-1] + 1, len(lines)):
        line, above = lines[k], lines[k - 1]
        if not line.strip() or (above.strip() and not _is_quoted(above)):
            continue
        head = " ".join(part.strip() for part in lines[k : k + 2])
        if _RULE_RE.match(line) or _FOOTER_RE.match(head):
            return k
    return len(lines)


def _drop_trailing_quote(lines: list[str]) -> list[str]:
    """Without the ``>``-quoted lines (and blank lines among them) at the end."""
    end = len(lines)
    while end > 0 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith(">")):
        end -= 1
    return lines[:end]


def _cut_signature(lines: list[str]) -> list[str]:
    """Cut at the first unquoted ``-- `` line or mobile-client signature line."""
    for i, line in enumerate(lines):
        if _is_signature(line):
            return lines[:i]
    return lines


def _is_signature(line: str) -> bool:
    """A ``-- `` marker or a mobile client's line (no-break spaces read as spaces)."""
    line = line.replace("\xa0", " ").replace("\u202f", " ")
    return bool(_SIGNATURE_RE.match(line) or _MOBILE_RE.match(line))


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _drop_sign_off(lines: list[str]) -> list[str]:
    """Without a ``-Name`` line that ends the text directly under a line of text."""
    end = _last_nonblank(lines)
    if end is None or end == 0 or not _SIGN_OFF_RE.match(lines[end]):
        return lines
    above = lines[end - 1]
    if not above.strip() or _is_quoted(above) or _BULLET_RE.match(above):
        return lines
    return lines[:end]


def _drop_trailing_rules(lines: list[str]) -> list[str]:
    """Without rules (dashes, underscores) at the end: what is left of a cut separator."""
    end = _last_nonblank(lines)
    while end is not None and _RULE_RE.match(lines[end]):
        end = _last_nonblank(lines[:end])
    return lines[: (end + 1) if end is not None else 0]


def _last_nonblank(lines: list[str]) -> int | None:
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip():
            return i
    return None


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
