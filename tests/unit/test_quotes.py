"""strip_reply on reply layouts of real mail clients, each with its exact expected text."""

from __future__ import annotations

import pytest

from mailticket.mail.quotes import strip_reply

OUTLOOK_EN = """\
Hello Boris,

The patch is installed on both nodes. Please check again.

Regards,
Anna

-----Original Message-----
From: Boris Ivanov <boris@client.example>
Sent: Monday, January 5, 2026 10:00 AM
To: support@example.com
Subject: [#MT-12] Backup fails

Backup fails every night since Friday.
"""

OUTLOOK_RU = """\
Борис, добрый день!

Патч установлен, проверьте, пожалуйста.

-----Исходное сообщение-----
От: Борис Иванов <boris@client.example>
Отправлено: 5 января 2026 г. 10:00
Кому: support@example.com
Тема: [#MT-12] Не работает резервное копирование

Резервное копирование не работает с пятницы.
"""

# Outlook 2016+ without the separator text: an underscore rule, then the header block.
OUTLOOK_UNDERSCORE_RU = """\
Добрый день.
Проблема воспроизводится только на втором узле.

________________________________
От: Анна Петрова <anna@example.com>
Отправлено: 5 января 2026 г. 12:00
Кому: Борис Иванов <boris@client.example>
Копия: support@example.com
Тема: RE: [#MT-12] Не работает резервное копирование

Борис, проверьте, пожалуйста, второй узел.
"""

# Outlook on the web: bold keys with "Date:" and no separator line at all.
OUTLOOK_WEB_EN = """\
Done, thanks.

From: Boris Ivanov <boris@client.example>
Date: Monday, 5 January 2026 at 10:00
To: Support <support@example.com>
Subject: Backup fails

Backup fails every night.
"""

GMAIL_EN = """\
Hi Anna,

it works now, thank you!

Boris

On Mon, Jan 5, 2026 at 10:00\u202fAM Anna Petrova <anna@example.com> wrote:

> Hello Boris,
>
> please try again.
>
"""

GMAIL_RU = """\
Добрый день!
Да, ошибка ушла.

пн, 5 янв. 2026 г. в 10:00, Анна Петрова <anna@example.com>:

> Борис, проверьте, пожалуйста.
>
> --
> Анна
"""

# Gmail wraps a long attribution line at 78 characters.
GMAIL_RU_WRAPPED = """\
Спасибо, закрывайте.

пн, 5 янв. 2026 г. в 10:00, Служба технической поддержки ООО Ромашка <
support@example.com> пишет:

> Заявка решена.
"""

THUNDERBIRD_EN = """\
Yes, the log is attached.

On 05.01.2026 10:00, Anna Petrova wrote:
> Could you send the log?
"""

THUNDERBIRD_RU = """\
Логи во вложении.

--\x20
Борис Иванов
ООО «Клиент»

05.01.2026 10:00, Анна Петрова пишет:
> Пришлите, пожалуйста, логи.
"""

APPLE_MAIL_EN = """\
Thanks, looks good.

Sent from my iPhone

On 5 Jan 2026, at 10:00, Anna Petrova <anna@example.com> wrote:

> Fixed in 2.4.1.
"""

APPLE_MAIL_RU = """\
Спасибо, всё работает.

Отправлено с iPhone

5 янв. 2026 г., в 10:00, Анна Петрова <anna@example.com> написал(а):

> Исправлено в версии 2.4.1.
"""

YANDEX = """\
Добрый день, ошибка повторилась в 14:05.

05.01.2026, 10:00, "Анна Петрова" <anna@example.com>:
> Ошибка исправлена, проверьте.
"""

MAIL_RU = """\
Всё работает, спасибо!


Отправлено из мобильной Почты Mail.ru

Понедельник, 5 января 2026, 10:00 +03:00 от Анна Петрова <anna@example.com>:
> Проверьте, пожалуйста.
"""

# HTML converted to text: the history is no longer ">"-quoted.
GMAIL_HTML_TO_TEXT = """\
Ok, I will try tonight.

On Mon, Jan 5, 2026 at 10:00 AM Anna Petrova <anna@example.com> wrote:

Hello Boris,
please try the new build.
"""

INLINE_EN = """\
On Mon, Jan 5, 2026 at 10:00 AM Boris Ivanov <boris@client.example> wrote:
> Which version should I install?

2.4.1, from the usual place.

> Do I need to restart?

Yes, the service only.

> Thanks,
> Boris
"""

NESTED_FORWARD_EN = """\
See below, this is the customer's original report.

---------- Forwarded message ---------
From: Boris Ivanov <boris@client.example>
Date: Mon, Jan 5, 2026 at 10:00 AM
Subject: Backup fails
To: <support@example.com>
"""

CASES = [
    (
        "outlook_en",
        OUTLOOK_EN,
        "Hello Boris,\n\nThe patch is installed on both nodes. "
        "Please check again.\n\nRegards,\nAnna",
    ),
    ("outlook_ru", OUTLOOK_RU, "Борис, добрый день!\n\nПатч установлен, проверьте, пожалуйста."),
    (
        "outlook_underscore_ru",
        OUTLOOK_UNDERSCORE_RU,
        "Добрый день.\nПроблема воспроизводится только на втором узле.",
    ),
    ("outlook_web_en", OUTLOOK_WEB_EN, "Done, thanks."),
    ("gmail_en", GMAIL_EN, "Hi Anna,\n\nit works now, thank you!\n\nBoris"),
    ("gmail_ru", GMAIL_RU, "Добрый день!\nДа, ошибка ушла."),
    ("gmail_ru_wrapped", GMAIL_RU_WRAPPED, "Спасибо, закрывайте."),
    ("thunderbird_en", THUNDERBIRD_EN, "Yes, the log is attached."),
    ("thunderbird_ru", THUNDERBIRD_RU, "Логи во вложении."),
    ("apple_mail_en", APPLE_MAIL_EN, "Thanks, looks good."),
    ("apple_mail_ru", APPLE_MAIL_RU, "Спасибо, всё работает."),
    ("yandex", YANDEX, "Добрый день, ошибка повторилась в 14:05."),
    ("mail_ru", MAIL_RU, "Всё работает, спасибо!"),
    ("gmail_html_to_text", GMAIL_HTML_TO_TEXT, "Ok, I will try tonight."),
    (
        "inline_en",
        INLINE_EN,
        "> Which version should I install?\n\n2.4.1, from the usual place."
        "\n\n> Do I need to restart?\n\nYes, the service only.",
    ),
    ("forward_en", NESTED_FORWARD_EN, "See below, this is the customer's original report."),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_layouts(text: str, expected: str) -> None:
    assert strip_reply(text) == expected


def test_crlf_line_ends() -> None:
    assert strip_reply(THUNDERBIRD_EN.replace("\n", "\r\n")) == "Yes, the log is attached."


def test_plain_text_without_history_is_kept_whole() -> None:
    text = "\n\nLine one\n\n  indented line\nOn call from 10:00 to 18:00, see you.\n\n"
    assert strip_reply(text) == "Line one\n\n  indented line\nOn call from 10:00 to 18:00, see you."


def test_own_text_that_mentions_from_and_time_is_not_history() -> None:
    text = (
        "From: the logs it looks like a disk problem.\n"
        "05.01.2026 at 10:00 the backup job started.\n"
        "Subject: the nightly job"
    )
    assert strip_reply(text) == text


def test_signature_dash_dash_without_trailing_space() -> None:
    assert strip_reply("Fixed.\n--\nAnna Petrova\n+7 900 000-00-00") == "Fixed."


def test_quoted_signature_marker_does_not_cut_own_text() -> None:
    text = "> -- \n> old signature\n\nMy answer below the quote."
    assert strip_reply(text) == "> --\n> old signature\n\nMy answer below the quote."


def test_only_quotes_gives_empty_text() -> None:
    assert strip_reply("> quoted\n> more\n") == ""


def test_command_lines_above_history_are_kept() -> None:
    text = "#status resolved\nFixed.\n\nOn 05.01.2026 10:00, Boris wrote:\n> #status closed\n"
    assert strip_reply(text) == "#status resolved\nFixed."


def test_trailing_whitespace_is_trimmed_per_line() -> None:
    assert strip_reply("Done.   \n  \t\n") == "Done."


def test_outlook_mobile_with_link_and_underscore_rule() -> None:
    text = (
        "Ok, will do.\n\n"
        "Get Outlook for iOS<https://aka.ms/o0ukef>\n"
        "________________________________\n"
        "From: Anna Petrova <anna@example.com>\n"
        "Sent: Monday, January 5, 2026 10:00:00 AM\n"
        "To: Boris Ivanov <boris@client.example>\n"
        "Subject: [#MT-12] Backup fails\n\n"
        "Please update the agent.\n"
    )
    assert strip_reply(text) == "Ok, will do."


def test_gmail_en_attribution_wrapped_inside_the_address() -> None:
    text = (
        "Works now.\n\n"
        "On Mon, Jan 5, 2026 at 10:00\u202fAM Technical Support of Romashka Ltd <\n"
        "support@example.com> wrote:\n\n"
        "> Please retry.\n"
    )
    assert strip_reply(text) == "Works now."


def test_mail_ru_html_converted_without_quote_marks() -> None:
    text = (
        "Вот ответ.\n\n"
        "Среда, 7 января 2026, 10:00 +03:00 от support@example.com:\n\n"
        "Старое письмо без значков цитаты.\n"
    )
    assert strip_reply(text) == "Вот ответ."


def test_sentence_starting_like_a_mobile_signature_is_kept() -> None:
    text = "Sent from my laptop: the logs you asked for are attached."
    assert strip_reply(text) == text
