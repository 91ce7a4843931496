"""Properties of quote stripping: the writer's own text above the history is never cut.

Hypothesis writes answers from ordinary sentences seeded with the words that
trip naive strippers (dates, times, "wrote", "пишет", "Sent from my desk",
devices, dashes), then puts below them the histories, footers and signatures
of issue 14 in any order. An answer with no quote comes back whole, the
history below it never takes any of it away, and answers written between
quoted lines stay with their quotes.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailticket.mail.quotes import strip_reply

_STARTS = (
    "Thanks", "Добрый день", "Sent from my desk", "On call from", "From the logs", "Boris",
    "1 декабря", "5 Спасибо", "Принтер", "Отправлено письмо", "The backup", "Disclaimer",
    "Сегодня в 10:00", "Yes", "Anna wrote", "Иван пишет", "Node", "2026",
)
_WORDS = (
    "the", "backup", "fails", "since", "Friday", "10:00", "05.01.2026", "2026", "wrote",
    "пишет", "написал", "iPhone", "Android", "my", "from", "sent", "с", "моего", "-", "--",
    "—", "___", "-Boris", "ok", "работает", "не", "печатает", "confidential", "unsubscribe",
    ">", "<anna@example.com>", "Mail.ru", "on", "5", "1", "из",
)
_ATTRIBUTIONS = (
    "On Mon, Jan 5, 2026 at 10:00 AM Anna Petrova <anna@example.com> wrote:",
    "05.01.2026 10:00, Анна Петрова пишет:",
    "пн, 5 янв. 2026 г. в 10:00, Анна Петрова <anna@example.com>:",
    "",
)
_FOOTERS = (
    "_______________________________________________\nusers mailing list\n"
    "users@lists.example",
    "Это сообщение и все приложения к нему конфиденциальны.",
    "CONFIDENTIALITY NOTICE: this e-mail is for the intended recipient only.",
    "----------------------------------------\nООО «Клиент»",
)
_SIGNATURES = (
    "-- \nBoris Ivanov", "Sent from my iPhone", "Sent from my Verizon Wireless BlackBerry",
    "Отправлено с моего iPhone", "Отправлено из мобильной Почты Mail.ru",
    "Sent from Yahoo Mail on Android",
)

_line = st.builds(
    lambda start, words: " ".join([start, *words]) + ".",
    st.sampled_from(_STARTS), st.lists(st.sampled_from(_WORDS), max_size=8),
)
_answer = st.lists(st.one_of(_line, st.just("")), min_size=1, max_size=8).filter(
    lambda lines: any(line.strip() for line in lines)
).map("\n".join)
_quoted = st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
                   min_size=1, max_size=5).map(lambda lines: "\n".join(f"> {x}" for x in lines))


def _trimmed(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


@settings(max_examples=300, deadline=None)
@given(_answer)
def test_an_answer_with_no_quote_loses_nothing(answer: str) -> None:
    assert strip_reply(answer) == _trimmed(answer)


@settings(max_examples=300, deadline=None)
@given(
    _answer, st.sampled_from(_ATTRIBUTIONS), _quoted,
    st.lists(st.sampled_from([*_FOOTERS, *_SIGNATURES]), max_size=2),
)
def test_history_below_an_answer_never_cuts_into_it(
    answer: str, attribution: str, quoted: str, tail: list[str]
) -> None:
    history = "\n".join(part for part in (attribution, quoted) if part)
    text = "\n\n".join([answer, history, *tail])
    assert strip_reply(text) == _trimmed(answer)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(_ATTRIBUTIONS[:-1]), _quoted, _answer, _quoted, _answer,
    st.lists(st.sampled_from([*_FOOTERS, *_SIGNATURES]), max_size=2),
)
def test_inline_answers_between_quotes_stay(
    attribution: str, first: str, answer: str, second: str, last: str, tail: list[str]
) -> None:
    text = "\n\n".join([f"{attribution}\n{first}", answer, second, last, *tail])
    assert strip_reply(text) == _trimmed("\n\n".join([first, answer, second, last]))
