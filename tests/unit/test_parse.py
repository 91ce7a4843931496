"""parse(): charsets, encoded words, HTML, attachments, limits and hostile headers.

Every mail here is built byte by byte, so the test controls exactly which
charset is declared and which bytes follow it.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest

from mailticket.errors import UnparseableMessage
from mailticket.mail.charsets import decode_bytes, decode_header_value
from mailticket.mail.parse import DsnRecipient, parse, safe_filename

RU_LONG = "Здравствуйте! Не работает почта."
RU_SHORT = ("Привет", "тест тест", "Не работает почта", "ООО Ромашка", "Иван Петров")


def mail(
    body: bytes,
    *,
    headers: bytes = b"",
    content_type: bytes | None = b"text/plain; charset=utf-8",
    subject: bytes = b"Test",
) -> bytes:
    """A one-part mail; ``content_type=None`` leaves out all MIME headers."""
    mime = b"MIME-Version: 1.0\nContent-Type: " + content_type + b"\n" if content_type else b""
    return (
        b"From: Customer <customer@example.org>\nTo: support@example.com\n"
        b"Subject: " + subject + b"\nMessage-ID: <m1@example.org>\n"
        b"Date: Mon, 18 Nov 2024 10:15:00 +0300\n" + headers + mime + b"\n" + body
    )


def b_word(text: str, charset: str) -> bytes:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?=".encode()


def q_word(text: str, charset: str) -> bytes:
    encoded = "".join(
        "_"
        if byte == 0x20
        else chr(byte)
        if byte < 0x80 and chr(byte).isalnum()
        else f"={byte:02X}"
        for byte in text.encode(charset)
    )
    return f"=?{charset}?Q?{encoded}?=".encode()


# ------------------------------------------------------------------ charsets


@pytest.mark.parametrize("charset", ["koi8-r", "windows-1251", "iso-8859-5", "utf-8"])
def test_declared_charset_body(charset: str) -> None:
    parsed = parse(
        mail(RU_LONG.encode(charset), content_type=f"text/plain; charset={charset}".encode())
    )
    assert parsed.text == RU_LONG
    assert parsed.defects == ()


@pytest.mark.parametrize("text", RU_SHORT)
@pytest.mark.parametrize("codec", ["koi8-r", "cp1251"])
def test_short_russian_without_any_mime_headers(text: str, codec: str) -> None:
    parsed = parse(mail(text.encode(codec), content_type=None, subject=text.encode(codec)))
    assert parsed.text == text
    assert parsed.subject == text


@pytest.mark.parametrize("codec", ["koi8-r", "cp1251"])
def test_8bit_display_name_without_encoding(codec: str) -> None:
    raw = mail(b"hi", headers=b"").replace(
        b"From: Customer", b"From: " + "Иван Петров".encode(codec)
    )
    parsed = parse(raw)
    assert (parsed.from_name, parsed.from_addr) == ("Иван Петров", "customer@example.org")


def test_latin1_body_without_charset_stays_latin() -> None:
    parsed = parse(mail("Grüße aus München, Håvard".encode("cp1252"), content_type=b"text/plain"))
    assert parsed.text == "Grüße aus München, Håvard"


def test_declared_iso_8859_1_but_cp1251_bytes() -> None:
    raw = mail(RU_LONG.encode("cp1251"), content_type=b"text/plain; charset=iso-8859-1")
    parsed = parse(raw)
    assert parsed.text == RU_LONG
    assert "text declared iso-8859-1 looks mis-labelled" in parsed.defects


def test_declared_utf8_but_koi8r_bytes() -> None:
    raw = mail(RU_LONG.encode("koi8-r"), content_type=b"text/plain; charset=utf-8")
    parsed = parse(raw)
    assert parsed.text == RU_LONG
    assert "text is not valid utf-8" in parsed.defects


def test_declared_cp1251_but_koi8r_sentence() -> None:
    text = "Добрый день, ООО Ромашка просит помочь"
    parsed = parse(mail(text.encode("koi8-r"), content_type=b"text/plain; charset=windows-1251"))
    assert parsed.text == text


def test_german_umlaut_run_keeps_declared_latin() -> None:
    text = "test äöüßÄÖÜß€"
    parsed = parse(
        mail(text.encode("iso-8859-15"), content_type=b"text/plain; charset=iso-8859-15")
    )
    assert parsed.text == text
    assert parsed.defects == ()


def test_unknown_charset_falls_back_to_detection() -> None:
    parsed = parse(mail(RU_LONG.encode("cp1251"), content_type=b"text/plain; charset=x-bogus"))
    assert parsed.text == RU_LONG
    assert "unknown charset 'x-bogus'" in parsed.defects


def test_decode_bytes_reports_the_codec() -> None:
    assert decode_bytes("Привет".encode("koi8-r")).charset == "koi8_r"
    assert decode_bytes("Привет".encode("cp1251")).charset == "cp1251"
    assert decode_bytes(b"plain").charset == "ascii"


# ------------------------------------------------------------- encoded words


@pytest.mark.parametrize(
    ("raw_subject", "expected"),
    [
        (b_word("Не работает VPN", "koi8-r"), "Не работает VPN"),
        (q_word("Не работает VPN", "windows-1251"), "Не работает VPN"),
        (b_word("Срочно", "windows-1251"), "Срочно"),
        (q_word("Счёт 5", "koi8-r"), "Счёт 5"),
        (b"Re: " + b_word("Тест", "utf-8") + b" [#MT-12]", "Re: Тест [#MT-12]"),
        # Folded between two words: the whitespace between them disappears.
        (b"=?ISO-8859-1?Q?te?=\n =?ISO-8859-1?Q?st?=", "test"),
        # A UTF-8 character split across two words (Outlook does this).
        (b"=?utf-8?B?0J/RgNC4?= =?utf-8?B?0LLQtdGC?=", "Привет"),
        (b"=?UTF-8?B?0J8=?= =?UTF-8?B?0YA=?=", "Пр"),
        # Over-padded base64 and a lower-case encoding letter.
        (b"=?gb18030?B?suLK1A===?=", "测试"),
        (b"=?iso-8859-1?q?Niv=E5er=3F?=", "Nivåer?"),
        # Missing padding, language suffix, glued to text.
        (b"=?utf-8?B?0KLQtdGB0YI?=", "Тест"),
        (b"=?utf-8*ru?B?0KLQtdGB0YI=?=", "Тест"),
        (b"AW:=?utf-8?Q?_Gr=C3=BC=C3=9Fe?=", "AW: Grüße"),
        # Broken words stay as they are instead of crashing.
        (b"=?utf-8?B?broken", "=?utf-8?B?broken"),
        (b"=?x-unknown?Q?plain?=", "plain"),
        # The charset label lies: koi8-r bytes labelled utf-8.
        (b"=?utf-8?B?" + base64.b64encode("Привет мир".encode("koi8-r")) + b"?=", "Привет мир"),
    ],
)
def test_encoded_word_subjects(raw_subject: bytes, expected: str) -> None:
    assert parse(mail(b"x", subject=raw_subject)).subject == expected


def test_encoded_display_names() -> None:
    raw = mail(b"x").replace(
        b"From: Customer <customer@example.org>",
        b"From: " + b_word("Иван Петров", "koi8-r") + b" <Ivan.Petrov@Example.RU>",
    )
    parsed = parse(raw)
    assert (parsed.from_name, parsed.from_addr) == ("Иван Петров", "ivan.petrov@example.ru")
    assert parsed.headers["from"] == ("Иван Петров <Ivan.Petrov@Example.RU>",)


def test_encoded_newline_never_reaches_a_header_value() -> None:
    parsed = parse(mail(b"x", subject=b"hi =?UTF-8?Q?=0D=0ABcc:_evil@x.y?="))
    assert parsed.subject == "hi   Bcc: evil@x.y"
    assert all("\n" not in v and "\r" not in v for vs in parsed.headers.values() for v in vs)


def test_decode_header_value_unfolds() -> None:
    assert decode_header_value("a\r\n b\n\tc") == "a b\tc".replace("\t", " ")


# ----------------------------------------------------------------------- HTML

HOSTILE_HTML = (
    b"<html><head><title>Title</title><style>p { color: red }</style>"
    b"<script>alert('x')</script></head><body>"
    b'<p onclick="steal()">Hello&nbsp;<b>world</b> &amp; friends</p>'
    b"<div>Line one<br>Line two</div><ul><li>first</li><li>second</li></ul>"
    b'<a href="https://example.org/help">help page</a>'
    b'<img src="http://tracker.example/x.gif"><img src="cid:logo@x">\n'
    b'<a href="javascript:alert(1)">bad link</a></body></html>'
)


def test_html_only_mail_becomes_clean_text() -> None:
    parsed = parse(mail(HOSTILE_HTML, content_type=b"text/html; charset=utf-8"))
    assert parsed.text == (
        "Hello world & friends\n\nLine one\nLine two\n\n- first\n- second\n\n"
        "help page <https://example.org/help> bad link"
    )
    assert parsed.html is not None
    for banned in ("script", "style", "onclick", "tracker", "javascript", "Title"):
        assert banned not in parsed.html
    assert '<img src="cid:logo@x">' in parsed.html
    assert 'rel="noopener noreferrer"' in parsed.html


def alternative(plain: bytes, html: bytes) -> bytes:
    return (
        b"From: c@example.org\nSubject: alt\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/alternative; boundary="A"\n\n'
        b"--A\nContent-Type: text/plain; charset=utf-8\n\n" + plain + b"\n"
        b"--A\nContent-Type: text/html; charset=utf-8\n\n" + html + b"\n--A--\n"
    )


def test_alternative_prefers_plain_and_keeps_sanitised_html() -> None:
    parsed = parse(alternative(b"Plain version", b"<p onclick='x()'>HTML version</p>"))
    assert parsed.text == "Plain version"
    assert parsed.html == "<p>HTML version</p>"


def test_alternative_with_empty_plain_uses_html() -> None:
    parsed = parse(alternative(b"  \n", b"<p>Only <i>HTML</i> here</p>"))
    assert parsed.text == "Only HTML here"


# ---------------------------------------------------------------- attachments


def with_attachment(disposition: bytes, ctype: bytes = b"application/pdf") -> bytes:
    return (
        b"From: c@example.org\nSubject: files\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="M"\n\n'
        b"--M\nContent-Type: text/plain; charset=utf-8\n\nSee attached.\n"
        b"--M\nContent-Type: " + ctype + b"\nContent-Disposition: " + disposition + b"\n"
        b"Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--M--\n"
    )


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        (b'attachment; filename="../../etc/passwd"', "passwd"),
        (b'attachment; filename="..\\\\..\\\\windows\\\\evil.dll"', "evil.dll"),
        (b"attachment; filename*=utf-8''evil%00name.txt", "evilname.txt"),
        (b"attachment; filename*=utf-8''invoice%E2%80%AEfdp.exe", "invoicefdp.exe"),
        (b'attachment; filename="CON.txt"', "_CON.txt"),
        (b'attachment; filename="lpt1"', "_lpt1"),
        (b'attachment; filename=".htaccess"', "htaccess"),
        (b'attachment; filename="..."', "attachment"),
        (b"attachment", "attachment.pdf"),
        (b"attachment; filename*=koi8-r''%F4%C5%D3%D4.txt", "Тест.txt"),
        (
            b"attachment; filename*0*=utf-8''%D0%9E%D1%82%D1%87; filename*1*=%D1%91%D1%82.pdf",
            "Отчёт.pdf",
        ),
        (b'attachment; filename="=?utf-8?B?0J7RgtGH0ZHRgi5wZGY=?="', "Отчёт.pdf"),
    ],
)
def test_attachment_display_names(disposition: bytes, expected: str) -> None:
    parsed = parse(with_attachment(disposition))
    assert parsed.text == "See attached."
    assert [(a.filename, a.content_type, a.data) for a in parsed.attachments] == [
        (expected, "application/pdf", b"%PDF-1.4\n")
    ]


def test_raw_8bit_attachment_name() -> None:
    raw = with_attachment(b'attachment; filename="' + "Счёт.pdf".encode("cp1251") + b'"')
    assert parse(raw).attachments[0].filename == "Счёт.pdf"


def test_300_character_name_is_cut_to_255_bytes_keeping_the_extension() -> None:
    name = "я" * 300 + ".pdf"
    parsed = parse(with_attachment(f'attachment; filename="{name}"'.encode()))
    filename = parsed.attachments[0].filename
    assert filename == "я" * 125 + ".pdf"
    assert len(filename.encode()) == 254


def test_safe_filename_rules() -> None:
    assert safe_filename("a\x00b\x1fc\u2066d\u202ee.txt") == "abcde.txt"
    assert safe_filename("e\u0301.txt") == "\u00e9.txt"
    assert safe_filename("C:\\Users\\x\\report.docx") == "report.docx"
    assert safe_filename("nul.tar.gz") == "_nul.tar.gz"
    assert safe_filename("  ") == "attachment"
    assert safe_filename("x" * 300) == "x" * 255


def test_nested_rfc822_is_an_attachment_named_after_its_subject() -> None:
    raw = (
        b"From: c@example.org\nSubject: Fwd: report\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="O"\n\n'
        b"--O\nContent-Type: text/plain\n\nOuter text.\n"
        b"--O\nContent-Type: message/rfc822\n\n"
        b"From: other@example.net\nSubject: " + b_word("Отчёт / июнь", "utf-8") + b"\n"
        b"Message-ID: <[83c48ddd-JFBV=@microsoft.com]>\n\nInner text must stay inside.\n"
        b"--O--\n"
    )
    parsed = parse(raw)
    assert parsed.text == "Outer text."
    (attached,) = parsed.attachments
    assert (attached.filename, attached.content_type) == ("Отчёт _ июнь.eml", "message/rfc822")
    assert b"Inner text must stay inside." in attached.data
    assert b"Message-ID: <[83c48ddd-JFBV=@microsoft.com]>\r\n" in attached.data


# --------------------------------------------------------------------- limits


def nested(depth: int) -> bytes:
    body = b"Content-Type: text/plain\n\ninner\n"
    for level in range(depth):
        b = f"b{level}".encode()
        body = (
            b'Content-Type: multipart/mixed; boundary="' + b + b'"\n\n--' + b + b"\n"
            + body + b"\n--" + b + b"--\n"
        )  # fmt: skip
    return b"From: a@example.com\nSubject: deep\nMIME-Version: 1.0\n" + body


def many_parts(count: int) -> bytes:
    parts = b"".join(b"--B\nContent-Type: text/plain\n\npart %d\n" % i for i in range(count))
    return (
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=B\n\n" + parts + b"--B--\n"
    )


def nested_messages(depth: int) -> bytes:
    raw = b"Subject: innermost\n\ntext\n"
    for _ in range(depth):
        raw = b"Subject: wrap\nContent-Type: message/rfc822\n\n" + raw
    return raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (nested(25), "MIME nesting deeper than 20 levels"),
        (nested(150), "MIME nesting deeper than 20 levels"),
        (nested(1000), "more than 200 MIME parts"),
        (nested_messages(25), "MIME nesting deeper than 20 levels"),
        (many_parts(300), "more than 200 MIME parts"),
        (b"".join(b"X-H%d: v\n" % i for i in range(2000)) + b"\nbody\n", "more than 1000 header fields"),
        (b"Subject: " + b"x" * 70_000 + b"\n\nbody\n", "a header field is longer than 64 KiB"),
        (b"Subject: a\n" + b" folded\n" * 10_000 + b"\nbody\n", "a header field is longer than 64 KiB"),
        (b"".join(b"X-H%d: %s\n" % (i, b"y" * 1000) for i in range(300)) + b"\nx\n", "header block larger than 256 KiB"),
        (b"", "empty message"),
        (b" \r\n\r\n", "empty message"),
        (b"\x00\x01PK\x03\x04" * 50, "binary data without mail headers"),
    ],
    ids=["depth25", "depth150", "depth1000", "rfc822x25", "parts300", "headers2000",
         "header70k", "folded", "block300k", "empty", "blank", "binary"],
)  # fmt: skip
def test_limits_give_a_specific_reason_fast(raw: bytes, reason: str) -> None:
    started = time.perf_counter()
    with pytest.raises(UnparseableMessage) as caught:
        parse(raw)
    assert str(caught.value) == reason
    assert time.perf_counter() - started < 1.0


def test_just_inside_the_limits_parses() -> None:
    assert parse(nested(20)).text == "inner"
    assert parse(many_parts(199)).text.startswith("part 0\n\npart 1\n\n")


def test_addresses_per_header_are_capped() -> None:
    to = b", ".join(b"user%d@example.org" % i for i in range(150))
    parsed = parse(b"From: a@example.com\nTo: " + to + b"\n\nx\n")
    assert parsed.to == tuple(f"user{i}@example.org" for i in range(100))
    assert "To cut to the first 100 addresses" in parsed.defects


# -------------------------------------------------------- headers and addresses


def test_broken_exchange_message_id_does_not_crash() -> None:
    parsed = parse(mail(b"x").replace(b"<m1@example.org>", b"<[83c48ddd-JFBV=@microsoft.com]>"))
    assert parsed.message_id == "[83c48ddd-JFBV=@microsoft.com]"


def test_message_id_normalisation() -> None:
    raw = mail(
        b"x",
        headers=b"In-Reply-To: <a@x> (Joe's mail)\nReferences: <r1@x>\n <r2@\n x>  <r1@x>\n",
    ).replace(b"Message-ID: <m1@example.org>", b"Message-ID:\n <m1@example.org>")
    parsed = parse(raw)
    assert parsed.message_id == "m1@example.org"
    assert parsed.in_reply_to == ("a@x",)
    assert parsed.references == ("r1@x", "r2@x")


def test_missing_message_id_is_none() -> None:
    assert parse(mail(b"x").replace(b"Message-ID: <m1@example.org>\n", b"")).message_id is None


def test_date_is_aware_utc_or_none() -> None:
    assert parse(mail(b"x")).date == datetime(2024, 11, 18, 7, 15, tzinfo=UTC)
    broken = parse(mail(b"x").replace(b"Mon, 18 Nov 2024 10:15:00 +0300", b"yesterday"))
    assert broken.date is None
    assert "unreadable Date header 'yesterday'" in broken.defects


def test_address_smuggling_cve_2023_27043_is_refused() -> None:
    parsed = parse(b"From: a@example.com\nTo: alice@example.org)<bob@example.org>\n\nx\n")
    assert parsed.to == ()
    assert "unbalanced quotes, comments or brackets in To; ignored" in parsed.defects


def test_address_lists_with_quotes_groups_and_junk() -> None:
    raw = (
        b'From: "Doe, John" <John.Doe@Example.ORG>\n'
        b"To: team: a@example.org, B@EXAMPLE.org;, undisclosed-recipients:;\n"
        b"Cc: not an address, c@example.org\n\nx\n"
    )
    parsed = parse(raw)
    assert (parsed.from_name, parsed.from_addr) == ("Doe, John", "john.doe@example.org")
    assert parsed.to == ("a@example.org", "b@example.org")
    assert parsed.cc == ("c@example.org",)
    assert "invalid address in Cc: 'not an address'" in parsed.defects


# ----------------------------------------------------------------------- DSN


def test_rfc3464_report_gives_dsn_recipients() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\n"
        b"Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=R\n\n"
        b"--R\nContent-Type: text/plain\n\nI'm sorry to have to inform you...\n"
        b"--R\nContent-Type: message/delivery-status\n\n"
        b"Reporting-MTA: dns; mx.example.com\n\n"
        b"Final-Recipient: rfc822; Gone@Example.NET\nAction: failed\nStatus: 5.1.1\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 <gone@example.net>:\n User unknown\n\n"
        b"Final-Recipient: rfc822; slow@example.net\nAction: delayed\nStatus: 4.4.1\n"
        b"--R\nContent-Type: text/rfc822-headers\n\nSubject: my question\n--R--\n"
    )
    parsed = parse(raw)
    assert parsed.is_report and parsed.report_type == "delivery-status"
    assert parsed.dsn == (
        DsnRecipient("gone@example.net", "failed", "5.1.1", "smtp; 550 5.1.1 <gone@example.net>: User unknown"),
        DsnRecipient("slow@example.net", "delayed", "4.4.1", ""),
    )  # fmt: skip
    assert parsed.text == "I'm sorry to have to inform you..."
    assert [a.filename for a in parsed.attachments] == ["attachment.txt"]


def test_non_standard_exim_bounce_found_by_flufl() -> None:
    raw = (
        b"From: Mail Delivery System <Mailer-Daemon@mx.example.com>\n"
        b"To: bounces@example.com\nSubject: Mail delivery failed: returning message to sender\n"
        b"X-Failed-Recipients: lost@example.net\nAuto-Submitted: auto-replied\n\n"
        b"This message was created automatically by mail delivery software.\n\n"
        b"A message that you sent could not be delivered to one or more of its\n"
        b"recipients. This is a permanent error. The following address(es) failed:\n\n"
        b"  lost@example.net\n    No such user\n"
    )
    parsed = parse(raw)
    assert parsed.dsn == (DsnRecipient("lost@example.net", "failed", "", "found by flufl.bounce"),)


def test_ordinary_mail_is_not_scanned_for_bounces() -> None:
    raw = mail(b"X-Failed-Recipients: lost@example.net\nplease help, my mail bounced")
    assert parse(raw).dsn == ()
