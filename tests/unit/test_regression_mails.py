"""parse() and classify() over the project's own regression mails (tests/mails, see its README.md).

Each mail shows one trait real support mail has (a charset, a client's MIME
shape, a report, a signature or encryption), and the table below says exactly
what the parser must make of it: subject, sender, the whole decoded text,
attachment names and types, defects, and how the mail is classified. The
envelope sender is the mail's own ``Return-Path`` (``<>`` for the bounce and
the auto-reply), as the MTA delivered it. These run on any clone; the RT
corpus in ../shared is an extra set (tests/unit/test_corpus.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import RFC822Name, SubjectAlternativeName
from support.corpora import REGRESSION_MAILS, regression_mails

from mailticket.mail.classify import classify
from mailticket.mail.parse import DsnRecipient, InboundMail, parse
from mailticket.model import Envelope, MailKind

SUPPORT = "support@provider.example"
LOOP_VALUE = "mt-regression"
MSGID_DOMAIN = "mt.provider.example"


@dataclass(frozen=True)
class Expected:
    """What parse() and classify() must give for one regression mail."""

    trait: str
    subject: str
    from_name: str
    from_addr: str
    message_id: str | None
    text: str
    attachments: tuple[tuple[str, str], ...] = ()
    defects: tuple[str, ...] = ()
    kind: MailKind = MailKind.NORMAL
    to: tuple[str, ...] = (SUPPORT,)


EXPECTED: dict[str, Expected] = {
    "koi8r-the-bat.eml": Expected(
        trait="KOI8-R 8bit body, KOI8-R encoded-word subject and display name (The Bat!)",
        subject="Не печатает принтер в бухгалтерии",
        from_name="Иван Петров", from_addr="ivan.petrov@romashka.example",
        message_id="1372839140.20261116091240@romashka.example",
        text="Здравствуйте!\n\n"
             "Принтер HP LaserJet в бухгалтерии с утра не печатает, на панели горит\n"
             "оранжевый индикатор. Перезагрузка не помогла.\n\n"
             "-- \nС уважением,\n Иван Петров\n тел. +7 495 555-12-34",
    ),
    "windows-1251-live-mail.eml": Expected(
        trait="windows-1251 multipart/alternative in quoted-printable, quoted encoded-word name",
        subject="Заявка: нет доступа к 1С",
        from_name="Ольга Смирнова", from_addr="olga.smirnova@vektor.example",
        message_id="0012F3A1B2C4$7C1E4B30$6501A8C0@buh02",
        text="Добрый день!\n\n"
             "С понедельника не могу зайти в 1С:Бухгалтерию — пишет «Неверный пароль».\n"
             "Прошу сбросить пароль для пользователя smirnova.\n\n"
             "Ольга Смирнова,\nглавный бухгалтер ООО «Вектор»",
    ),
    "declared-koi8r-but-cp1251.eml": Expected(
        trait="windows-1251 bytes declared koi8-r, in the body and in the subject's encoded word",
        subject="Ошибка при проведении документа",
        from_name="", from_addr="buh@vektor.example",
        message_id="20261116114001.7f3a2c@buh-1c.vektor.example",
        text="Добрый день.\n\n"
             "При проведении документа «Реализация товаров и услуг» № 1542 от 13.11.2026\n"
             "программа выдаёт ошибку: «Недостаточно прав для изменения данных».\n\n"
             "Бухгалтерия ООО «Вектор»",
        defects=("text declared koi8-r looks mis-labelled",),
    ),
    "declared-us-ascii-but-8bit-utf8.eml": Expected(
        trait="UTF-8 in a raw 8-bit subject and a body declared us-ascii (a monitoring script)",
        subject="Проблема: на srv-01 заканчивается место на диске C:",
        from_name="", from_addr="zabbix@mon.sever.example",
        message_id="8841207.1763252108@mon.sever.example",
        text="Проблема началась в 03:15 16.11.2026 на узле srv-01.sever.example\n"
             "Имя проблемы: Свободного места на диске C: меньше 5%\n"
             "Важность: Высокая\n\nID события: 8841207",
        defects=("text is not valid us-ascii",),
    ),
    "no-charset-8bit-cp1251.eml": Expected(
        trait="no MIME headers at all: raw 8-bit windows-1251 display name, subject and body",
        subject="Не работает фискальный регистратор",
        from_name="Касса 3", from_addr="kassa3@magazin.example",
        message_id="20261116080530.5512@gw.magazin.example",
        text="Касса №3 не печатает чеки, на экране ошибка связи с фискальным накопителем.\n"
             "Магазин на Ленина, 12. Перезагружали дважды.",
    ),
    "outlook-html-only.eml": Expected(
        trait="Outlook HTML only (base64 UTF-8): mso conditional comments, <o:p>, Word styles",
        subject="RE: [#MT-1042] Не работает VPN",
        from_name="Анна Сидорова", from_addr="anna.sidorova@romashka.example",
        message_id="DB9PR03MB7324A1B2C3D4E5F60718293A4B5CDB9PR03MB7324"
                   "@DB9PR03MB7324.eurprd03.prod.outlook.example",
        text="Добрый день!\n\n"
             "VPN по-прежнему не подключается, ошибка 809. Ноутбук перезагружали.\n\n"
             "Можно ли сегодня до 18:00 прислать инженера?\n\n"
             "Анна Сидорова\n\nОфис-менеджер | ООО «Ромашка»\n\n"
             "From: Support <support@provider.example>\n"
             "Sent: Friday, November 13, 2026 5:20 PM\n"
             "To: Анна Сидорова <anna.sidorova@romashka.example>\n"
             "Subject: [#MT-1042] Не работает VPN\n\n"
             "Ваша заявка MT-1042 принята.",
    ),
    "forwarded-message-rfc822.eml": Expected(
        trait="nested message/rfc822 without a file name (forwarded as attachment)",
        subject="Fwd: VPN не подключается с ноутбука",
        from_name="Иван Петров", from_addr="ivan.petrov@romashka.example",
        message_id="5b0e9c1d-7a3f-4e2b-8c61-0f9d2e4a7b13@romashka.example",
        text="Коллеги, пересылаю письмо Анны — она писала мне, а не в поддержку.\n"
             "Просьба взять в работу.\n\nИван",
        attachments=(("VPN не подключается с ноутбука.eml", "message/rfc822"),),
    ),
    "dsn-postfix-user-unknown.eml": Expected(
        trait="Postfix DSN: multipart/report; report-type=delivery-status, LF line ends",
        subject="Undelivered Mail Returned to Sender",
        from_name="Mail Delivery System", from_addr="mailer-daemon@mx.provider.example",
        message_id="20261116102630.4QkY1n2Hs6z9t3S@mx.provider.example",
        text="This is the mail system at host mx.provider.example.\n\n"
             "I'm sorry to have to inform you that your message could not\n"
             "be delivered to one or more recipients. It's attached below.\n\n"
             "For further assistance, please send mail to postmaster.\n\n"
             "If you do so, please include this problem report. You can\n"
             "delete your own text from the attached returned message.\n\n"
             "                   The mail system\n\n"
             "<old.user@romashka.example>: host mx.romashka.example[192.0.2.10] said: 550\n"
             "    5.1.1 <old.user@romashka.example>: Recipient address rejected: User unknown\n"
             "    in virtual mailbox table (in reply to RCPT TO command)",
        attachments=(("[#MT-1042] Заявка принята.eml", "message/rfc822"),),
        kind=MailKind.BOUNCE,
    ),
    "mailman-digest.eml": Expected(
        trait="Mailman MIME digest: multipart/digest, one member with no Content-Type",
        subject="IT-news Digest, Vol 12, Issue 3",
        from_name="", from_addr="it-news-request@lists.provider.example",
        message_id="mailman.3.1763290801.2211.it-news@lists.provider.example",
        text="Send IT-news mailing list submissions to\n\tit-news@lists.provider.example\n\n"
             "When replying, please edit your Subject line so it is more specific\n"
             "than \"Re: Contents of IT-news digest...\"\n\n"
             "Today's Topics:\n\n"
             "   1. Maintenance window 21.11 (Anna Sidorova)\n"
             "   2. Re: Maintenance window 21.11 (Ivan Petrov)\n\n"
             "_______________________________________________\n"
             "IT-news mailing list -- it-news@lists.provider.example\n"
             "To unsubscribe send an email to it-news-leave@lists.provider.example",
        attachments=(("Maintenance window 21.11.eml", "message/rfc822"),
                     ("Re: Maintenance window 21.11.eml", "message/rfc822")),
        kind=MailKind.LIST_TRAFFIC,
        to=("it-news@lists.provider.example",),
    ),
    "rfc2231-file-names.eml": Expected(
        trait="RFC 2231 file names: UTF-8 continuations cut inside a character, "
              "koi8-r'ru' with a language, quoted ASCII continuations",
        subject="Documents for November",
        from_name="Ivan Petrov", from_addr="ivan.petrov@romashka.example",
        message_id="e3b1f0a2-9c4d-4a77-b1e5-6d2f8a0c3b91@romashka.example",
        text="Invoice, protocol and the signed certificate attached.",
        attachments=(
            ("Счёт № 1542 от 13.11.2026 — ООО «Ромашка».pdf", "application/pdf"),
            ("Протокол.docx",
             "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
            ("Scan of the acceptance certificate for November 2026, signed.jpg", "image/jpeg"),
        ),
    ),
    "smime-signed-thunderbird.eml": Expected(
        trait="S/MIME multipart/signed with application/pkcs7-signature (Thunderbird)",
        subject="Re: [#MT-1042] VPN",
        from_name="Anna Sidorova", from_addr="anna.sidorova@romashka.example",
        message_id="7d2a1c9e-3b4f-4e8a-a5c6-1f0e9d8c7b6a@romashka.example",
        text="Добрый день!\n\n"
             "Подтверждаю закрытие заявки MT-1042: VPN на ноутбуке бухгалтера работает.\n\n"
             "Анна Сидорова",
        attachments=(("smime.p7s", "application/pkcs7-signature"),),
    ),
    "pgp-mime-encrypted.eml": Expected(
        trait="PGP/MIME multipart/encrypted (RFC 3156): nothing readable",
        subject="...",
        from_name="Ivan Petrov", from_addr="ivan.petrov@romashka.example",
        message_id="0b5e7d3a-1c2f-4a9b-8e6d-5f4a3b2c1d0e@romashka.example",
        text="",
        attachments=(("attachment.pgp", "application/pgp-encrypted"),
                     ("encrypted.asc", "application/octet-stream")),
        defects=("encrypted content; body not readable",),
    ),
    "smime-encrypted-outlook.eml": Expected(
        trait="S/MIME encryption: the whole mail is application/pkcs7-mime enveloped-data",
        subject="Wi-Fi password",
        from_name="Anna Sidorova", from_addr="anna.sidorova@romashka.example",
        message_id="DB9PR03MB73248F9E0D1C2B3A4F5E6D7C8B9ADB9PR03MB7324"
                   "@DB9PR03MB7324.eurprd03.prod.outlook.example",
        text="",
        attachments=(("smime.p7m", "application/pkcs7-mime"),),
        defects=("encrypted content; body not readable",),
    ),
    "quoted-printable-soft-breaks.eml": Expected(
        trait="quoted-printable soft line breaks (one inside a UTF-8 character), =3D, =20",
        subject="1С не запускается после обновления",
        from_name="Отдел продаж", from_addr="sales.head@vektor.example",
        message_id="roundcube.8a1f2e3d4c5b@webmail.vektor.example",
        text="Добрый день! После обновления Windows 11 до версии 24H2 на трёх компьютерах "
             "в отделе продаж перестал запускаться клиент 1С: при старте появляется окно "
             "«Ошибка инициализации» и программа закрывается.\n\n"
             "Строка подключения в настройках: Srvr=\"srv-1c\";Ref=\"trade\"; — её не меняли. "
             "\n\nСпасибо!",
    ),
    "base64-attachments-iphone.eml": Expected(
        trait="base64 attachments: an inline PNG and a PDF named by an encoded word (iPhone Mail)",
        subject="Screenshot and reconciliation act",
        from_name="Ivan Petrov", from_addr="petrov.ivan@icloud.example",
        message_id="6A1C0E2B-9D3F-4B8A-A7E5-2C1B0D9F8E7A@icloud.example",
        text="Error screenshot and the act are attached.\n\nSent from my iPhone",
        attachments=(("IMG_0412.png", "image/png"),
                     ("Акт сверки за октябрь.pdf", "application/pdf")),
    ),
    "utf8-subject-split-words.eml": Expected(
        trait="UTF-8 subject (B) and display name (Q) split across encoded words mid-character",
        subject="Срочно: не открывается общая папка «Договоры» на сервере",
        from_name="Анна", from_addr="anna.sidorova@romashka.example",
        message_id="CAF7x1Yq9pZ3tK0m2w8eR4vN6bU5sJ1hG0dL3cT7aQ9oP2iE8nA@mail.example",
        text="С утра нет доступа к \\\\srv-fs\\Договоры, пишет «Отказано в доступе».",
    ),
    "exchange-auto-reply-ru.eml": Expected(
        trait="Exchange out-of-office reply in Russian (Auto-Submitted, null sender)",
        subject="Автоматический ответ: [#MT-1043] Заявка: нет доступа к 1С",
        from_name="Ольга Смирнова", from_addr="olga.smirnova@vektor.example",
        message_id="b3c9a2e1f0d84c7b@DB9PR03MB7324.eurprd03.prod.outlook.example",
        text="Я в отпуске до 30 ноября. По срочным вопросам звоните +7 495 555-00-00.",
        kind=MailKind.AUTO_REPLY,
    ),
    # Issue 14 "Mail fidelity", one mail per decoding class, and issue 18 point 6.
    "no-charset-8bit-gbk.eml": Expected(
        trait="class 1: no charset anywhere: GBK 8-bit subject, body and file name",
        subject="打印机无法打印",
        from_name="", from_addr="wangwei@huaxia.example",
        message_id="20261117150210.3321@mail.huaxia.example",
        text="您好！\n\n财务部的打印机从今天早上开始无法打印，面板上的橙色指示灯一直亮着。\n"
             "重启以后问题依旧。错误截图见附件。\n\n王伟",
        attachments=(("错误截图.txt", "text/plain"),),
        defects=("no Cyrillic or Latin reading fits; charset-normalizer reads Chinese as "
                 "gb18030 (chaos 0.00)",),
    ),
    "iso-2022-jp-nec-circled-digits.eml": Expected(
        trait="class 2: ISO-2022-JP with NEC circled digits (CP50221) in body and subject",
        subject="手順①と②",
        from_name="", from_addr="tanaka@sakura.example",
        message_id="TY2PR01MB4161A2B3C4D5E6F7@TY2PR01MB4161.jpnprd01.prod.outlook.example",
        text="お世話になっております。\n\nVPNの設定は次の手順で行いました。\n"
             "①クライアントを再インストール\n②証明書を更新\n\n接続できません。",
        defects=("text is not valid iso-2022-jp; read as ISO-2022-JP with NEC/IBM extensions",),
    ),
    "uuencode-and-broken-base64.eml": Expected(
        trait="class 3: uuencoded file in text/plain, x-uuencode with a blank line before end, "
              "base64 with a stray character and 4n+1 length",
        subject="Backup failed",
        from_name="", from_addr="backup@romashka.example",
        message_id="20261117093010.77@backup.romashka.example",
        text="The nightly backup failed, log attached below.\n\nRegards, backup script",
        attachments=(("backup.log", "application/octet-stream"),
                     ("vpn.conf", "application/octet-stream"),
                     ("report.txt", "text/plain")),
        defects=("1 uuencoded file(s) taken out of the text",
                 "uuencoded body decoded leniently",
                 "base64 decoded leniently (InvalidBase64CharactersDefect)"),
    ),
    "broken-header-block.eml": Expected(
        trait="class 4: a quoted mbox >From line before the first header, an unindented "
              "continuation of Subject",
        subject="Printer on the second floor jams on every page",
        from_name="Ivan Petrov", from_addr="ivan.petrov@romashka.example",
        message_id="20261117101500.4411@romashka.example",
        text="The HP printer in room 214 jams on every page since this morning.",
        defects=("junk before the first header dropped: "
                 "'>From ivan.petrov@romashka.example Tue Nov 17 10:15:00 2026'",
                 "unindented header continuation folded: 'jams on every page'"),
    ),
    "bare-cr-in-header.eml": Expected(
        trait="issue 18.6: a bare CR inside Subject, the Message-ID after it",
        subject="VPN drops after 5 minutes",
        from_name="Anna Sidorova", from_addr="anna.sidorova@romashka.example",
        message_id="20261117112000.5522@romashka.example",
        text="VPN disconnects every five minutes.",
        defects=("bare CR in a header folded as whitespace",),
    ),
    "declared-us-ascii-stray-8bit.eml": Expected(
        trait="class 5: one stray 8-bit byte in a part declared us-ascii",
        subject="Disk alert",
        from_name="", from_addr="monitor@vektor.example",
        message_id="20261117120000.1@mon.vektor.example",
        text="Host srv-02: disk D: 97% full (Café share).",
        defects=("text is not valid us-ascii",),
    ),
    "invalid-from-sender-fallback.eml": Expected(
        trait="class 6: From is a bare display name; the address comes from Sender",
        subject="No access to 1C",
        from_name="Olga Smirnova", from_addr="olga.smirnova@vektor.example",
        message_id="20261117123000.99@vektor.example",
        text="I cannot log in to 1C since Monday.",
        defects=("invalid address in From: 'Olga Smirnova'",
                 "no readable address in From; sender taken from Sender"),
    ),
    "adjacent-encoded-words-two-charsets.eml": Expected(
        trait="class 7: adjacent encoded words in koi8-r and utf-8, folded between them",
        subject="Не работает принтер",
        from_name="", from_addr="ivan.petrov@romashka.example",
        message_id="20261117130000.12@romashka.example",
        text="See subject.",
    ),
    "mixed-charsets-list-footer.eml": Expected(
        trait="class 8: windows-1251 body with a UTF-8 footer appended by a list server",
        subject="Scanner",
        from_name="", from_addr="olga.smirnova@vektor.example",
        message_id="20261117140000.31@vektor.example",
        text="Добрый день!\n\nВ бухгалтерии не работает сканер, просьба посмотреть.\n\n"
             "Ольга\n-- \nСписок рассылки «ИТ-отдел»: it@lists.vektor.example",
        defects=("text is not valid windows-1251; "
                 "mixed charsets: 1 line(s) read as utf_8, 3 as cp1251",),
    ),
}  # fmt: skip


def load(name: str) -> InboundMail:
    return parse((REGRESSION_MAILS / name).read_bytes())


def envelope_of(mail: InboundMail) -> Envelope:
    """The envelope the MTA delivered ``mail`` with: its Return-Path is the MAIL FROM."""
    sender = (mail.header("return-path") or "").strip().strip("<>")
    return Envelope(mail_from=sender, rcpt_tos=(SUPPORT,))


def test_every_mail_has_an_expectation() -> None:
    # A new file without a row, or a row whose file is gone, fails here.
    assert [p.name for p in regression_mails()] == sorted(EXPECTED)
    assert len(EXPECTED) == 26


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_gives_exactly_the_expected_mail(name: str) -> None:
    want = EXPECTED[name]
    mail = load(name)
    assert mail.subject == want.subject
    assert (mail.from_name, mail.from_addr) == (want.from_name, want.from_addr)
    assert mail.message_id == want.message_id
    assert mail.text == want.text
    assert [(a.filename, a.content_type) for a in mail.attachments] == list(want.attachments)
    assert mail.defects == want.defects
    assert mail.to == want.to
    assert mail.raw_size == (REGRESSION_MAILS / name).stat().st_size


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_classification(name: str) -> None:
    mail = load(name)
    got = classify(mail, envelope_of(mail), our_addresses=(SUPPORT,),
                   loop_header_value=LOOP_VALUE, message_id_domain=MSGID_DOMAIN)
    assert got.kind == EXPECTED[name].kind, got.reason


def test_classification_reason_names_the_deciding_header() -> None:
    for name, reason in [
        ("dsn-postfix-user-unknown.eml",
         "Content-Type: multipart/report; report-type=delivery-status"),
        ("exchange-auto-reply-ru.eml", "Auto-Submitted: auto-generated"),
        ("mailman-digest.eml", "Precedence: list"),
    ]:
        mail = load(name)
        got = classify(mail, envelope_of(mail), our_addresses=(SUPPORT,),
                       loop_header_value=LOOP_VALUE, message_id_domain=MSGID_DOMAIN)
        assert got.reason == reason


def test_dsn_names_the_failed_recipient_and_returns_our_message_id() -> None:
    mail = load("dsn-postfix-user-unknown.eml")
    assert (mail.is_report, mail.report_type) == (True, "delivery-status")
    # The folded Diagnostic-Code is unfolded as RFC 5322 says: the line break
    # goes, the continuation's leading spaces stay.
    assert mail.dsn == (
        DsnRecipient(
            address="old.user@romashka.example",
            action="failed",
            status="5.1.1",
            diagnostic="smtp; 550 5.1.1 <old.user@romashka.example>: Recipient address    "
                       "rejected: User unknown in virtual mailbox table",
        ),
    )
    returned = parse(mail.attachments[0].data)
    assert returned.message_id == "1042.1763288789@mt.provider.example"
    assert returned.text == "Ваша заявка MT-1042 принята."


def test_forwarded_mail_stays_whole_inside_its_attachment() -> None:
    (attached,) = load("forwarded-message-rfc822.eml").attachments
    inner = parse(attached.data)
    assert (inner.subject, inner.from_addr) == ("VPN не подключается с ноутбука",
                                                "anna.sidorova@romashka.example")
    assert inner.message_id == "a7c1e0b2-55d4-4f0e-9d7b-3c2e8f1a9b04@romashka.example"
    assert inner.text == ("Добрый день!\n\nС ноутбука бухгалтера VPN не подключается, "
                          "ошибка 809.\nС рабочего компьютера всё работает.\n\nАнна")


def test_digest_members_keep_their_own_headers() -> None:
    mail = load("mailman-digest.eml")
    members = [parse(a.data) for a in mail.attachments]
    assert [(m.message_id, m.from_addr, m.in_reply_to) for m in members] == [
        ("c0ffee01@romashka.example", "anna.sidorova@romashka.example", ()),
        ("c0ffee02@romashka.example", "ivan.petrov@romashka.example",
         ("c0ffee01@romashka.example",)),
    ]
    assert mail.headers["list-id"] == ("IT news <it-news.lists.provider.example>",)


def test_outlook_html_is_sanitised_and_keeps_no_word_markup() -> None:
    html = load("outlook-html-only.eml").html
    assert html is not None
    assert html.startswith("<div>\n<p>Добрый день!</p>\n<p>&nbsp;</p>\n")
    for word_markup in ("<o:p>", "mso", "<style", "<!--", "MsoNormal", "WordSection1", "xmlns"):
        assert word_markup not in html


@pytest.mark.parametrize(
    ("name", "digests"),
    [
        ("base64-attachments-iphone.eml", [
            "5b604625e309e27b66bc62d08044b8765dc5f5054376be06f16a8852db8a977e",
            "4548f326f9114ba9e3a7eda832aad48e46b2fc4f45bed482ecf05ae597186cfe"]),
        ("rfc2231-file-names.eml", [
            "79370862c6cb54e96ed3125464c11e4ce3e8b08fb5048723695b6b9e9728d701",
            "aa8f1e87689d1c30fe22cdcf8c31096ac821ad077bd74e8a4498d106b4b7b972",
            "6b923e6936266b29b35d52a968f65100146ed89d18e91caeac8f50206d020110"]),
        ("smime-signed-thunderbird.eml", [
            "d575edbea943507b10546bcbfd7fe6a3adc728606f78f9bdea13e509b28fc5a8"]),
        ("smime-encrypted-outlook.eml", [
            "81884e119be034d483061ed22c578d769fd0df1f3e389f69beb7051aeb79e4bd"]),
        ("pgp-mime-encrypted.eml", [
            "771a7e027f9c9914c7e60a3b59ec73cda422d88e9f2e5915b87a67fe14c81675",
            "a45467d188b9566a68cdf63ac969af12b5aea49b0caff1ce74ae16e6c75181a7"]),
    ],
)  # fmt: skip
def test_base64_attachments_decode_to_the_files_that_were_sent(
    name: str, digests: list[str]
) -> None:
    # The SHA-256 of each file as it was before it was encoded into the mail.
    assert [hashlib.sha256(a.data).hexdigest() for a in load(name).attachments] == digests


def test_inline_image_and_its_flags() -> None:
    png, pdf = load("base64-attachments-iphone.eml").attachments
    assert png.data.startswith(b"\x89PNG\r\n\x1a\n") and png.inline
    assert pdf.data.startswith(b"%PDF-1.7") and not pdf.inline


def test_smime_signature_carries_the_signers_certificate() -> None:
    (signature,) = load("smime-signed-thunderbird.eml").attachments
    (cert,) = pkcs7.load_der_pkcs7_certificates(signature.data)
    names = cert.extensions.get_extension_for_class(SubjectAlternativeName).value
    assert names.get_values_for_type(RFC822Name) == ["anna.sidorova@romashka.example"]


def test_pgp_version_part_and_armour_survive() -> None:
    version, armour = load("pgp-mime-encrypted.eml").attachments
    # The line end before a boundary belongs to the boundary (RFC 2046 §5.1.1).
    assert version.data == b"Version: 1\r\n"
    assert armour.data.startswith(b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQGMA")
    assert armour.data.endswith(b"-----END PGP MESSAGE-----\r\n")


def test_dates_are_aware_utc() -> None:
    assert load("koi8r-the-bat.eml").date == datetime(2026, 11, 16, 6, 12, 40, tzinfo=UTC)
    assert load("outlook-html-only.eml").date == datetime(2026, 11, 16, 9, 31, 52, tzinfo=UTC)


def test_thread_headers_of_a_reply() -> None:
    mail = load("outlook-html-only.eml")
    assert mail.in_reply_to == ("1042.1763043600@mt.provider.example",)
    assert mail.references == ("1042.1763043600@mt.provider.example",)
