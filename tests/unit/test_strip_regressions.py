"""Quote and signature stripping (issue 14, classes 9-12) on whole mails written here.

Each mail is fixed bytes as an MTA hands them over (CRLF, 8bit UTF-8 or
quoted-printable); it goes through ``parse`` and ``strip_reply``, and the
expected text is exact. Before issue 14 each of these kept the history, the
footer, the signature or a stray rule, except ``c11_iphone_ru`` and
``c10_signature_then_quote``, which pin layouts that already worked.
"""

from __future__ import annotations

import pytest

from mailticket.mail.parse import parse
from mailticket.mail.quotes import strip_reply

_HEADERS = (
    "Return-Path: <boris@client.example>\n"
    "From: Boris Ivanov <boris@client.example>\n"
    "To: support@provider.example\n"
    "Subject: Re: [#MT-12] Backup fails\n"
    "Date: Fri, 20 Nov 2026 19:50:00 +0300\n"
    "Message-ID: <{mid}@client.example>\n"
    "In-Reply-To: <mt-12-1@mt.provider.example>\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: {cte}\n"
)


def _mail(mid: str, body: str, cte: str = "8bit") -> bytes:
    """Fixed bytes: the header block above and ``body`` in UTF-8, lines ended by CRLF."""
    text = _HEADERS.format(mid=mid, cte=cte) + "\n" + body
    return text.replace("\n", "\r\n").encode("utf-8")


# --- class 9: a footer after the quoted history --------------------------------------

MAILMAN_FOOTER = _mail("c9-mailman", """\
Thanks, the backup ran tonight.

On Thu, Nov 19, 2026 at 10:00 AM Anna Petrova <anna@provider.example> wrote:

> Please run the backup again.
>
> Anna

_______________________________________________
users mailing list
users@lists.client.example
https://lists.client.example/mailman/listinfo/users
""")

LEGAL_FOOTER_RU = _mail("c9-legal-ru", """\
Спасибо, всё заработало.

19.11.2026 10:00, Анна Петрова пишет:
> Проверьте, пожалуйста, ещё раз.

Это сообщение и все приложения к нему конфиденциальны и предназначены
только для указанных получателей.
""")

LEGAL_FOOTER_EN_NO_ATTRIBUTION = _mail("c9-legal-en", """\
Confirmed, closed on our side.

> Could you confirm the fix?

CONFIDENTIALITY NOTICE: this e-mail and any attachments are for the
exclusive use of the intended recipient.
""")

GOOGLE_GROUPS_FOOTER = _mail("c9-groups", """\
Yes, version 2.4.1.

On Thu, Nov 19, 2026 at 10:00 AM Anna Petrova <anna@provider.example> wrote:
> Which version do you run?

You received this message because you are subscribed to the Google Groups "ops" group.
To unsubscribe from this group, send an email to ops+unsubscribe@googlegroups.com.
""")

RULE_FOOTER_RU = _mail("c9-rule-ru", """\
Добрый день, логи во вложении.

пт, 20 нояб. 2026 г. в 10:00, Анна Петрова <anna@provider.example>:

> Пришлите, пожалуйста, логи.

----------------------------------------
ООО «Клиент», Москва, ул. Ленина, 1
www.client.example
""")

INLINE_WITH_FOOTER = _mail("c9-inline", """\
On Thu, Nov 19, 2026 at 10:00 AM Anna Petrova <anna@provider.example> wrote:
> Which version do you run?

2.4.1.

> Did you restart the agent?

Yes, twice.

_______________________________________________
users mailing list
users@lists.client.example
""")

# --- class 10: a quote and a "-- " signature, in either order --------------------------

QUOTE_THEN_SIGNATURE = _mail("c10-quote-sig", """\
Принтер печатает, спасибо.

> Перезапустите, пожалуйста, службу печати.

--=20
Борис Иванов
ООО =C2=ABКлиент=C2=BB
""", cte="quoted-printable")

QUOTE_THEN_MOBILE = _mail("c10-quote-mobile", """\
Works now.

> Please restart the print spooler.

Sent from my iPhone
""")

SIGNATURE_THEN_QUOTE = _mail("c10-sig-quote", """\
Works now.

--\x20
Boris Ivanov

> Please restart the print spooler.
""")

# --- class 11: mobile signatures with words before the device, and -Name -------------

VERIZON = _mail("c11-verizon", """\
Rebooted, it is fine now.

Sent from my Verizon Wireless BlackBerry

On Thu, Nov 19, 2026 at 10:00 AM Anna Petrova <anna@provider.example> wrote:
> Please reboot the router.
""")

IPHONE_RU = _mail("c11-iphone-ru", """\
Перезагрузил, работает.

Отправлено с моего iPhone
""")

MAIL_RU_MOBILE = _mail("c11-mailru", """\
Перезагрузил, работает.

> Перезагрузите, пожалуйста, роутер.

Отправлено из мобильной Почты Mail.ru
""")

YAHOO_ANDROID = _mail("c11-yahoo", """\
Rebooted, it is fine now.

> Please reboot the router.

Sent from Yahoo Mail on Android
""")

NBSP_IPHONE = _mail("c11-nbsp", "Rebooted, it is fine now.\n\nSent from my\u00a0iPhone\n")

SIGN_OFF = _mail("c11-sign-off", """\
Rebooted, it is fine now.
-Boris

> Please reboot the router.
""")

SIGN_OFF_RU = _mail("c11-sign-off-ru", """\
Перезагрузил, работает.
—Борис Иванов
""")

# --- class 12: a rule left over from a separator ---------------------------------------

DASH_RULE_BEFORE_HEADERS = _mail("c12-dashes", """\
Добрый день, проблема ушла.

----------
От: Анна Петрова <anna@provider.example>
Отправлено: 19 ноября 2026 г. 10:00
Кому: Борис Иванов <boris@client.example>
Тема: [#MT-12] Не работает резервное копирование

Проверьте, пожалуйста.
""")

SHORT_UNDERSCORES = _mail("c12-underscores", """\
Done, thanks.

______
From: Anna Petrova <anna@provider.example>
Sent: Thursday, November 19, 2026 10:00 AM
To: Boris Ivanov <boris@client.example>
Subject: [#MT-12] Backup fails
""")

RULE_ABOVE_QUOTE = _mail("c12-rule-quote", """\
Done, thanks.

=====

> Please check again.
""")

CASES: list[tuple[str, bytes, str]] = [
    ("c9_mailman_footer", MAILMAN_FOOTER, "Thanks, the backup ran tonight."),
    ("c9_legal_footer_ru", LEGAL_FOOTER_RU, "Спасибо, всё заработало."),
    ("c9_legal_footer_en", LEGAL_FOOTER_EN_NO_ATTRIBUTION, "Confirmed, closed on our side."),
    ("c9_google_groups", GOOGLE_GROUPS_FOOTER, "Yes, version 2.4.1."),
    ("c9_rule_footer_ru", RULE_FOOTER_RU, "Добрый день, логи во вложении."),
    ("c9_inline_answers_stay", INLINE_WITH_FOOTER,
     "> Which version do you run?\n\n2.4.1.\n\n> Did you restart the agent?\n\nYes, twice."),
    ("c10_quote_then_signature", QUOTE_THEN_SIGNATURE, "Принтер печатает, спасибо."),
    ("c10_quote_then_mobile", QUOTE_THEN_MOBILE, "Works now."),
    ("c10_signature_then_quote", SIGNATURE_THEN_QUOTE, "Works now."),
    ("c11_verizon_blackberry", VERIZON, "Rebooted, it is fine now."),
    ("c11_iphone_ru", IPHONE_RU, "Перезагрузил, работает."),
    ("c11_mail_ru_mobile", MAIL_RU_MOBILE, "Перезагрузил, работает."),
    ("c11_yahoo_android", YAHOO_ANDROID, "Rebooted, it is fine now."),
    ("c11_nbsp_iphone", NBSP_IPHONE, "Rebooted, it is fine now."),
    ("c11_sign_off", SIGN_OFF, "Rebooted, it is fine now."),
    ("c11_sign_off_ru", SIGN_OFF_RU, "Перезагрузил, работает."),
    ("c12_dashes_before_headers", DASH_RULE_BEFORE_HEADERS, "Добрый день, проблема ушла."),
    ("c12_short_underscores", SHORT_UNDERSCORES, "Done, thanks."),
    ("c12_rule_above_quote", RULE_ABOVE_QUOTE, "Done, thanks."),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_regression_mail(raw: bytes, expected: str) -> None:
    assert strip_reply(parse(raw).text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # Own text that looks like a footer, rule, sign-off or device line, with no quote.
        "Sent from my desk at the office: the logs are attached.",
        "Sent from my desk phone",
        "Steps:\n- Restart the agent\n-Reboot",
        "Disclaimer: I am not sure this is related.",
        "Table:\n---\nnode1 ok",
        "> Which node?\n\nThe second one.\nDisclaimer: not tested on the first one.",
        "> Did you get my mail?\n\nThe message you intended to send never arrived.",
    ],
)
def test_own_text_is_kept(text: str) -> None:
    assert strip_reply(text) == text


def test_quoted_lines_left_visible_above_own_text_stay() -> None:
    text = "> Please check the second node.\n\nChecked, it is fine.\n\n-- \nBoris"
    assert strip_reply(text) == "> Please check the second node.\n\nChecked, it is fine."
