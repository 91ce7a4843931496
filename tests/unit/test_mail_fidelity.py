"""Issue 14 "Mail fidelity" (decoding classes 1-8) and issue 18 point 6, on exact bytes.

Each class has a whole regression mail in tests/mails (test_regression_mails.py);
these tests pin the variants around it: other scripts, other header breaks,
the rest of the sender fallback chain, and the property that decoding never
raises and never returns lone surrogates.
"""

from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailticket.mail.charsets import decode_bytes, decode_header_value, detect_charset
from mailticket.mail.header_block import repair_header_block
from mailticket.mail.parse import parse
from mailticket.mail.transfer import lenient_base64, lenient_uudecode, split_uu_files

HEAD = b"From: a@b.example\r\nTo: support@provider.example\r\nMessage-ID: <1@b.example>\r\n"


def mail(headers: bytes, body: bytes) -> bytes:
    return HEAD + headers + b"\r\n" + body


# Class 1: undeclared 8-bit text in scripts other than Cyrillic and Latin.
@pytest.mark.parametrize(
    ("codec", "subject", "body", "want"),
    [
        ("shift_jis", "プリンター故障", "プリンターが動きません。確認をお願いします。", "cp932"),
        ("euc_jp", "プリンター故障", "プリンターが動きません。確認をお願いします。", "euc_jp"),
        ("gbk", "打印机故障", "您好，打印机无法工作，请帮忙检查一下。", "gb18030"),
    ],
)
def test_undeclared_cjk_subject_body_and_file_name(
    codec: str, subject: str, body: str, want: str
) -> None:
    raw = (HEAD + b"Subject: " + subject.encode(codec) + b"\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n" + body.encode(codec)
           + b"\r\n--b\r\nContent-Disposition: attachment; filename=\"" + subject.encode(codec)
           + b".txt\"\r\n\r\nx\r\n--b--\r\n")
    parsed = parse(raw)
    assert (parsed.subject, parsed.text) == (subject, body)
    assert [a.filename for a in parsed.attachments] == [subject + ".txt"]
    assert any(f"as {want}" in d for d in parsed.defects)


def test_short_russian_stays_cyrillic_and_latin_stays_latin() -> None:
    assert detect_charset("Привет".encode("cp1251")) == ("cp1251", None)
    assert detect_charset("Привет".encode("koi8_r")) == ("koi8_r", None)
    assert detect_charset("Ärger über Übergrößen".encode("cp1252")) == ("cp1252", None)
    parsed = parse(mail(b"Subject: " + "Счёт".encode("cp1251") + b"\r\n", b"x\r\n"))
    assert parsed.subject == "Счёт"


def test_greek_is_read_and_explained() -> None:
    decoded = decode_bytes("Καλημέρα, ο εκτυπωτής δεν λειτουργεί σήμερα.".encode("cp1253"))
    assert decoded.text == "Καλημέρα, ο εκτυπωτής δεν λειτουργεί σήμερα."
    assert decoded.note is not None and "Greek" in decoded.note


# Class 2: ISO-2022-JP with NEC/IBM extensions.
def test_iso2022jp_with_nec_row_13_and_half_width_katakana() -> None:
    # 手順① (JIS 3C6A 3D67 2D21), then ｶﾅ as JIS X 0201 katakana (ESC ( I).
    raw = b"\x1b$B<j=g-!\x1b(I6E\x1b(B ok"
    decoded = decode_bytes(raw, "ISO-2022-JP")
    assert decoded.text == "手順①ｶﾅ ok"
    assert decoded.note == (
        "text is not valid ISO-2022-JP; read as ISO-2022-JP with NEC/IBM extensions"
    )
    assert decode_header_value("=?iso-2022-jp?B?" + base64.b64encode(raw).decode() + "?=") == (
        "手順①ｶﾅ ok"
    )


# Class 3: uuencode and lenient base64.
def test_lenient_base64_bad_padding_stray_characters_and_4n_plus_1() -> None:
    good = base64.b64encode("Всё работает".encode()).decode()
    assert lenient_base64((good[:5] + "!*\r\n" + good[5:] + "Q").encode()) == "Всё работает".encode()
    assert lenient_base64(b"aGk=aGk=") == b"hihi"
    assert lenient_base64(b"aGk") == b"hi"


def test_uuencode_without_end_and_with_short_lines() -> None:
    line = binascii.b2a_uu(b"hello world").rstrip(b"\n")
    assert lenient_uudecode(b"begin 644 a.txt\n" + line + b"\n") == b"hello world"
    # A mail system stripped the trailing space of the line.
    assert lenient_uudecode(b"begin 644 a\n" + line.rstrip() + b"\n`\nend\n") == b"hello world"
    assert lenient_uudecode(b"no begin here") is None
    assert split_uu_files(b"plain text, begin 644 is not at a line start") is None


def test_x_uuencode_part_the_stdlib_leaves_encoded() -> None:
    line = binascii.b2a_uu(b"data").rstrip(b"\n")
    raw = mail(b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode"
               b"\r\n", b"begin 600 f.bin\r\n" + line + b"\r\n\r\nend\r\n")
    (attachment,) = parse(raw).attachments
    assert attachment.data == b"data"


# Class 4 and issue 18 point 6: broken header blocks, exact bytes.
@pytest.mark.parametrize(
    ("raw", "fixed", "defect"),
    [
        (b"Subject: a\rb\r\nX: 1\r\n\r\nbody\r\n", b"Subject: a b\r\nX: 1\r\n\r\nbody\r\n",
         "bare CR in a header folded as whitespace"),
        (b"Subject: a\nb\r\nX: 1\r\n\r\nbody\r\n", b"Subject: a b\r\nX: 1\r\n\r\nbody\r\n",
         "bare LF in a header folded as whitespace"),
        (b"Subject: a\r\r\nX: 1\r\n\r\nbody\r\n", b"Subject: a \r\nX: 1\r\n\r\nbody\r\n",
         "bare CR in a header folded as whitespace"),
        (b"Subject: a\rX: 1\n\nbody\n", b"Subject: a\nX: 1\n\nbody\n",
         "bare CR in the header block read as a line end"),
        (b"Subject: a\nb c\nX: 1\n\nbody\n", b"Subject: a\n b c\nX: 1\n\nbody\n",
         "unindented header continuation folded: 'b c'"),
        (b"hello\nX: 1\n\nbody\n", b"X: 1\n\nbody\n",
         "junk before the first header dropped: 'hello'"),
    ],
)
def test_header_block_repairs(raw: bytes, fixed: bytes, defect: str) -> None:
    assert repair_header_block(raw) == (fixed, [defect])


def test_well_formed_and_headerless_mail_is_left_alone() -> None:
    for raw in (HEAD + b"\r\nbody\r\n", b"just some text\nwith lines\n\nmore\n",
                b"From x@y Mon Jan  1 00:00:00 2026\nX: 1\n\nb\n",
                b"Subject: a\nno header follows this\n\nbody\n"):
        assert repair_header_block(raw) == (raw, [])


def test_bare_cr_keeps_the_message_id_so_a_redelivery_is_one_ticket() -> None:
    raw = b"From: a@b.example\r\nSubject: broken\rline\r\nMessage-ID: <dup@b.example>\r\n\r\nx\r\n"
    parsed = parse(raw)
    assert (parsed.subject, parsed.message_id, parsed.text) == ("broken line", "dup@b.example", "x")
    assert parsed.raw_size == len(raw)


# Class 5: a stray 8-bit byte in us-ascii.
def test_stray_byte_in_us_ascii_takes_the_undeclared_fallback() -> None:
    assert decode_bytes(b"caf\xe9", "us-ascii").text == "café"
    assert decode_bytes("Счёт выставлен".encode("cp1251"), "us-ascii").text == "Счёт выставлен"


# Class 6: the sender chain From, Sender, Reply-To, envelope.
@pytest.mark.parametrize(
    ("headers", "addr", "source"),
    [
        (b"From: Ivan <ivan@romashka.example\r\n", "ivan@romashka.example", "from"),
        (b"From: ivan@romashka.example<anna@romashka.example>\r\n", "anna@romashka.example",
         "from"),
        (b"From: Ivan Petrov\r\nReply-To: <ivan@romashka.example>\r\n", "ivan@romashka.example",
         "reply-to"),
        (b"From: Ivan Petrov\r\nReturn-Path: <bounce@romashka.example>\r\n",
         "bounce@romashka.example", "return-path"),
        (b'From: "=?utf-8?Q?evil@x.example?=" <broken\r\n', "", ""),
    ],
)
def test_sender_recovery(headers: bytes, addr: str, source: str) -> None:
    parsed = parse(b"To: support@provider.example\r\n" + headers + b"\r\nx\r\n")
    assert (parsed.from_addr, parsed.from_source) == (addr, source)


def test_a_good_from_is_the_source() -> None:
    parsed = parse(mail(b"Sender: <s@b.example>\r\n", b"x\r\n"))
    assert (parsed.from_addr, parsed.from_source) == ("a@b.example", "from")


# Class 7: adjacent encoded words.
def test_space_between_adjacent_encoded_words_is_dropped_whatever_the_charsets() -> None:
    assert decode_header_value("=?utf-8?Q?a?= =?koi8-r?Q?b?=") == "ab"
    assert decode_header_value("=?utf-8?Q?a?=\r\n =?utf-8?Q?b?= c =?utf-8?Q?d?=") == "ab c d"


# Class 8: mixed charsets in one part.
def test_utf8_body_with_a_cp1251_footer() -> None:
    data = "Добрый день\n".encode() + "-- \nОтдел продаж\n".encode("cp1251")
    decoded = decode_bytes(data, "utf-8")
    assert decoded.text == "Добрый день\n-- \nОтдел продаж\n"
    assert decoded.note == (
        "text is not valid utf-8; mixed charsets: 1 line(s) read as utf_8, 1 as cp1251"
    )
    assert decode_bytes(data).text == "Добрый день\n-- \nОтдел продаж\n"


# The property: decoding never raises and never returns lone surrogates.
def _clean(text: str) -> bool:
    return not any("\ud800" <= ch <= "\udfff" for ch in text)


CHARSETS = st.sampled_from([None, "utf-8", "us-ascii", "koi8-r", "windows-1251", "iso-8859-1",
                            "iso-2022-jp", "shift_jis", "gb2312", "x-unknown", "utf-7"])


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), declared=CHARSETS)
def test_decode_bytes_never_raises_nor_returns_surrogates(data: bytes, declared: str | None) -> None:
    assert _clean(decode_bytes(data, declared).text)


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=200), raw=st.binary(max_size=100))
def test_header_decoding_never_raises_nor_returns_surrogates(value: str, raw: bytes) -> None:
    assert _clean(decode_header_value(value))
    assert _clean(decode_header_value(raw.decode("ascii", "surrogateescape")))


@settings(max_examples=200, deadline=None)
@given(head=st.binary(max_size=200), body=st.binary(max_size=200))
def test_broken_header_blocks_parse_without_surrogates(head: bytes, body: bytes) -> None:
    parsed = parse(b"From: a@b.example\r\n" + head + b"\r\n\r\n" + body)
    texts = [parsed.subject, parsed.text, parsed.from_name, *parsed.defects]
    texts += [v for values in parsed.headers.values() for v in values]
    assert all(_clean(t) for t in texts)
