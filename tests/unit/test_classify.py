"""classify(): every rule with a real-looking mail, parsed by the real parser."""

from __future__ import annotations

import pytest

from mailticket.mail.classify import Classification, classify
from mailticket.mail.parse import parse
from mailticket.model import Envelope, MailKind

OURS = ("support@example.com", "help@example.com")
LOOP_VALUE = "mt-prod-1"
CUSTOMER = Envelope(mail_from="ivan@customer.ru", rcpt_tos=("support@example.com",))
NULL_SENDER = Envelope(mail_from="", rcpt_tos=("bounces+17.ab12@example.com",))


def message(headers: str, body: str = "Текст письма.\n") -> bytes:
    base = (
        "To: support@example.com\nMessage-ID: <x1@customer.ru>\n"
        "Date: Mon, 18 Nov 2024 10:15:00 +0300\nMIME-Version: 1.0\n"
    )
    if "content-type:" not in headers.lower():
        base += "Content-Type: text/plain; charset=utf-8\n"
    return (headers.strip("\n") + "\n" + base + "\n" + body).encode()


def run(raw: bytes, envelope: Envelope = CUSTOMER) -> Classification:
    return classify(parse(raw), envelope, our_addresses=OURS, loop_header_value=LOOP_VALUE)


EXCHANGE_OOO = message(
    """
From: Ivan Petrov <ivan@customer.ru>
Subject: =?utf-8?B?0JDQstGC0L7QvNCw0YLQuNGH0LXRgdC60LjQuSDQvtGC0LLQtdGCOiBbI01ULTEyXSDQndC1INGA0LDQsdC+0YLQsNC10YIgVlBO?=
Thread-Topic: [#MT-12] Не работает VPN
Auto-Submitted: auto-generated
X-Auto-Response-Suppress: All
X-MS-Exchange-Inbox-Rules-Loop: ivan@customer.ru
X-MS-Exchange-Organization-AutoResponseSuppress: All
""",
    "Я в отпуске до 25 ноября. По срочным вопросам: Анна, +7 495 000-00-00.\n",
)
OUTLOOK_OOO_ONLY_SUPPRESS = message(
    """
From: Anna <anna@customer.ru>
Subject: Automatic reply: [#MT-12] VPN down
X-Auto-Response-Suppress: All
""",
    "I am out of the office until Monday.\n",
)
GMAIL_VACATION = message(
    """
From: Petr <petr.customer@gmail.com>
Subject: Re: [#MT-13] Printer
Auto-Submitted: auto-replied
In-Reply-To: <ack-13@example.com>
""",
    "Thanks for your mail, I am on vacation.\n",
)
ZIMBRA_VACATION = message(
    """
From: Oleg <oleg@zimbra.customer.ru>
Subject: Re: [#MT-14] Backup
Auto-Submitted: auto-replied (zimbra; vacation)
""",
)
YANDEX_AUTOREPLY = message(
    """
From: =?utf-8?B?0JzQsNGA0LjRjw==?= <maria@yandex.ru>
Subject: =?utf-8?B?0JDQstGC0L7QvtGC0LLQtdGCOiBSZTogWyNNVC0xNV0g0J/QvtGH0YLQsA==?=
""",
    "Спасибо за письмо! Я отвечу, когда вернусь.\n",
)
MAILRU_STYLE = message(
    """
From: <sergey@mail.ru>
Subject: Re: [#MT-16] 1C
X-Autoreply: yes
""",
)
POSTFIX_DSN = (
    b"Return-Path: <>\n"
    b"From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\n"
    b"Subject: Undelivered Mail Returned to Sender\n"
    b"To: bounces+17.ab12@example.com\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\n\n'
    b"--B1\nContent-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n"
    b"This is the mail system at host mx.example.com.\n\nI'm sorry to have to inform you "
    b"that your message could not\nbe delivered to one or more recipients.\n\n"
    b"<gone@customer.ru>: host mx.customer.ru said: 550 5.1.1 User unknown\n\n"
    b"--B1\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n"
    b"Reporting-MTA: dns; mx.example.com\nX-Postfix-Queue-ID: 4Tq1x\n\n"
    b"Final-Recipient: rfc822; gone@customer.ru\nOriginal-Recipient: rfc822;gone@customer.ru\n"
    b"Action: failed\nStatus: 5.1.1\nRemote-MTA: dns; mx.customer.ru\n"
    b"Diagnostic-Code: smtp; 550 5.1.1 User unknown\n\n"
    b"--B1\nContent-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n"
    b"From: support@example.com\nSubject: [#MT-17] Re: VPN\n\n--B1--\n"
)
EXIM_FAILED = (
    b"From: Mail Delivery System <Mailer-Daemon@mx.customer.ru>\n"
    b"To: bounces+18.cd34@example.com\n"
    b"Subject: Mail delivery failed: returning message to sender\n"
    b"X-Failed-Recipients: lost@customer.ru\nAuto-Submitted: auto-replied\n\n"
    b"This message was created automatically by mail delivery software.\n\n"
    b"A message that you sent could not be delivered to one or more of its\n"
    b"recipients. This is a permanent error. The following address(es) failed:\n\n"
    b"  lost@customer.ru\n    Unrouteable address\n"
)
RUSSIAN_BOUNCE = message(
    """
From: MAILER-DAEMON@mx.customer.ru
Subject: =?utf-8?B?0J3QtdC00L7RgdGC0LDQstC70LXQvdC90L7QtSDRgdC+0L7QsdGJ0LXQvdC40LU=?=
""",
    "Ваше письмо не может быть доставлено.\n",
)


@pytest.mark.parametrize(
    ("raw", "envelope", "kind", "reason"),
    [
        (POSTFIX_DSN, NULL_SENDER, MailKind.BOUNCE,
         "Content-Type: multipart/report; report-type=delivery-status"),
        (EXIM_FAILED, NULL_SENDER, MailKind.BOUNCE,
         "flufl.bounce found failed recipients (lost@customer.ru)"),
        (RUSSIAN_BOUNCE, CUSTOMER, MailKind.BOUNCE,
         "From: mailer-daemon@mx.customer.ru with Subject: Недоставленное сообщение"),
        (message("From: robot@customer.ru\nSubject: Delivery Status Notification (Failure)"),
         NULL_SENDER, MailKind.BOUNCE,
         "null envelope sender with Subject: Delivery Status Notification (Failure)"),
        (EXCHANGE_OOO, CUSTOMER, MailKind.AUTO_REPLY, "Auto-Submitted: auto-generated"),
        (OUTLOOK_OOO_ONLY_SUPPRESS, CUSTOMER, MailKind.AUTO_REPLY, "X-Auto-Response-Suppress: All"),
        (GMAIL_VACATION, CUSTOMER, MailKind.AUTO_REPLY, "Auto-Submitted: auto-replied"),
        (ZIMBRA_VACATION, CUSTOMER, MailKind.AUTO_REPLY,
         "Auto-Submitted: auto-replied (zimbra; vacation)"),
        (YANDEX_AUTOREPLY, CUSTOMER, MailKind.AUTO_REPLY, "Subject: Автоответ: Re: [#MT-15] Почта"),
        (MAILRU_STYLE, CUSTOMER, MailKind.AUTO_REPLY, "X-Autoreply: yes"),
        (message("From: a@customer.ru\nSubject: x\nX-Autorespond: on"), CUSTOMER,
         MailKind.AUTO_REPLY, "X-Autorespond: on"),
        (message("From: a@customer.ru\nSubject: Re: x\nPrecedence: auto_reply"), CUSTOMER,
         MailKind.AUTO_REPLY, "Precedence: auto_reply"),
        (message("From: a@customer.ru\nSubject: Hello"), NULL_SENDER,
         MailKind.AUTO_REPLY, "null envelope sender (MAIL FROM:<>)"),
        (message("From: No Reply <no-reply@shop.example>\nSubject: Your order"), CUSTOMER,
         MailKind.AUTO_REPLY, "From: no-reply@shop.example"),
        (message("From: postmaster@customer.ru\nSubject: Quota warning"), CUSTOMER,
         MailKind.AUTO_REPLY, "From: postmaster@customer.ru"),
        (message(
            "From: a@customer.ru\nSubject: Read: x\nContent-Type: multipart/report; "
            "report-type=disposition-notification; boundary=Z", "--Z\n\nread\n--Z--\n"),
         CUSTOMER, MailKind.AUTO_REPLY,
         "Content-Type: multipart/report; report-type=disposition-notification"),
        (message("From: list@lists.example.org\nSubject: [users] digest\nPrecedence: list\n"
                 "List-Id: Users <users.lists.example.org>"), CUSTOMER,
         MailKind.LIST_TRAFFIC, "Precedence: list"),
        (message("From: news@vendor.example\nSubject: News\n"
                 "List-Unsubscribe: <mailto:unsub@vendor.example>"), CUSTOMER,
         MailKind.LIST_TRAFFIC, "List-Unsubscribe: <mailto:unsub@vendor.example>"),
        (message("From: a@customer.ru\nSubject: Re: x\nX-Mailticket-Loop: mt-prod-1"), CUSTOMER,
         MailKind.LOOP, "X-Mailticket-Loop: mt-prod-1"),
        (message("From: Support <Support+MT-12.abc@Example.com>\nSubject: Re: x"), CUSTOMER,
         MailKind.LOOP, "From: support+mt-12.abc@example.com is our own address"),
        (message("From: a@customer.ru\nSubject: Help\nAuto-Submitted: no"), CUSTOMER,
         MailKind.NORMAL, "no sign of automatic mail"),
        # Another instance's loop header is no loop of ours.
        (message("From: a@customer.ru\nSubject: Help\nX-Mailticket-Loop: mt-other"), CUSTOMER,
         MailKind.NORMAL, "no sign of automatic mail"),
        # A customer forwarding a bounce to us wants help; it is not a bounce.
        (message("From: a@customer.ru\nSubject: Fwd: Undelivered Mail Returned to Sender",
                 "Why did this fail?\n\nFinal-Recipient: rfc822; x@y.z\nAction: failed\n"),
         CUSTOMER, MailKind.NORMAL, "no sign of automatic mail"),
    ],
    ids=["postfix-dsn", "exim", "ru-bounce", "null-sender-dsn-subject", "exchange-ooo",
         "outlook-suppress", "gmail", "zimbra", "yandex", "mailru", "x-autorespond",
         "precedence-auto", "null-sender", "no-reply", "postmaster", "mdn", "list",
         "list-unsubscribe", "loop-header", "our-from", "auto-submitted-no", "other-loop",
         "forwarded-bounce"],
)  # fmt: skip
def test_rules(raw: bytes, envelope: Envelope, kind: MailKind, reason: str) -> None:
    assert run(raw, envelope) == Classification(kind, reason)


@pytest.mark.parametrize(
    "subject",
    [
        "Automatic reply: [#MT-1] VPN",
        "Auto-Reply: Re: printer",
        "Out of Office: Re: VPN",
        "Out of Office AutoReply: VPN",
        "Автоматический ответ: Re: VPN",
        "Автоответ: Re: VPN",
        "Нет на месте: Re: VPN",
        "Abwesenheitsnotiz: VPN",
        "Réponse automatique : VPN",
    ],
)
def test_out_of_office_subjects(subject: str) -> None:
    raw = message(f"From: a@customer.ru\nSubject: {subject}")
    assert run(raw) == Classification(MailKind.AUTO_REPLY, f"Subject: {subject}")


def test_bounce_wins_over_loop_and_auto_reply() -> None:
    # Our own loop header inside the returned original must not hide a bounce.
    assert (
        run(
            POSTFIX_DSN.replace(
                b"Subject: [#MT-17]", b"X-Mailticket-Loop: mt-prod-1\nSubject: [#MT-17]"
            ),
            NULL_SENDER,
        ).kind
        == MailKind.BOUNCE
    )
