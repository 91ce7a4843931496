"""Hostile content over the real listener (issue 7): injection, files, HTML, limits, charsets.

Each input goes through the real listener, worker, pipeline and relay; each
test asserts what was stored and exactly what reached the sink. Mail beyond a
safety limit gets a recorded, polite refusal (quarantine with the reason and
one notice), never a crash or a hang. SQLite unless the backend matters.
"""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from pathlib import Path

import pytest
from hostile_kit import (
    ANNA,
    CUSTOMER,
    ENGINEERS,
    SUPPORT,
    b64,
    open_ticket,
    outcomes,
    raw_mail,
    recipients,
    std_headers,
)
from sqlalchemy import select
from stack import Stack, text_of
from support.mails import build, new_id
from support.smtp_sink import SmtpSink

from mailticket.store.db import transaction
from mailticket.store.schema import (
    Blob,
    QueueState,
)

# --- 2. content safety ---------------------------------------------------------


def test_encoded_crlf_bcc_in_subject_adds_no_recipient(stack: Stack) -> None:
    headers = std_headers(subject="=?UTF-8?Q?Hello=0D=0ABcc:_evil@attacker.example?=")
    sent = stack.deliver(raw_mail(headers), mail_from=CUSTOMER)
    assert recipients(sent) == sorted([[CUSTOMER], *ENGINEERS])
    for mail in sent:
        assert "bcc" not in [k.lower() for k in mail.message]
        assert "\n" not in str(mail.message["Subject"])
        assert "evil@attacker.example" not in mail.rcpt_tos
    assert stack.tickets()[0].subject == "Hello Bcc: evil@attacker.example"


def test_crlf_in_display_name_injects_no_header(stack: Stack) -> None:
    headers = std_headers(from_=f"=?UTF-8?Q?Ivan=0D=0ABcc:_evil@attacker.example?= <{CUSTOMER}>")
    sent = stack.deliver(raw_mail(headers), mail_from=CUSTOMER)
    assert recipients(sent) == sorted([[CUSTOMER], *ENGINEERS])
    assert all("bcc" not in [k.lower() for k in m.message] for m in sent)
    assert all("evil@attacker.example" not in m.rcpt_tos for m in sent)


def test_unicode_line_separators_in_subject_stay_on_one_line(stack: Stack) -> None:
    headers = std_headers(subject="=?UTF-8?B?" + b64("Привет\u2028Bcc: x@evil.example\u0085y")
                          + "?=")
    sent = stack.deliver(raw_mail(headers), mail_from=CUSTOMER)
    [ack] = [m for m in sent if list(m.rcpt_tos) == [CUSTOMER]]
    assert "\u2028" not in str(ack.message["Subject"]) and "bcc" not in ack.message


TRAVERSAL_NAMES = [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\system32\\evil.exe", "evil.exe"),
    ("CON.txt", "_CON.txt"),
    ("in\x00voice.pdf", "invoice.pdf"),
    ("invoice\u202egpj.exe", "invoicegpj.exe"),
    (".htaccess", "htaccess"),
    ("NUL", "_NUL"),
    ("..", "attachment"),
    # Non-ASCII, so it travels as RFC 2231 filename*=utf-8''..%2F..%2F…
    ("../../секрет/shadow", "shadow"),
    ("a" * 300 + ".pdf", "a" * 251 + ".pdf"),  # 255 bytes, extension kept
    ("я" * 200 + ".txt", "я" * 125 + ".txt"),  # 254 bytes: no UTF-8 sequence cut in half
]


def test_traversal_filenames_are_sanitised_and_stored_by_content_hash(stack: Stack) -> None:
    attachments = [(name, "application/octet-stream", f"content {i}".encode())
                   for i, (name, _) in enumerate(TRAVERSAL_NAMES)]
    stack.deliver(build(from_=CUSTOMER, attachments=attachments), mail_from=CUSTOMER)
    stored = stack.ticket(stack.tickets()[0].id).articles[0].attachments
    assert [a.filename for a in stored] == [safe for _, safe in TRAVERSAL_NAMES]
    assert [a.sha256 for a in stored] == [hashlib.sha256(d).hexdigest() for _, _, d in attachments]
    with transaction(stack.factory) as s:
        blobs = {b.sha256: b.data for b in s.scalars(select(Blob))}
    assert blobs == {hashlib.sha256(d).hexdigest(): d for _, _, d in attachments}


def test_html_is_sanitised_before_it_is_kept(stack: Stack) -> None:
    body = ('<p onclick="steal()">Принтер сломан</p><script>alert(1)</script>'
            '<img src="http://tracker.example/pixel.gif"><a href="javascript:alert(2)">x</a>'
            '<style>p{}</style><iframe src="https://evil.example"></iframe>')
    headers = [*std_headers(), "MIME-Version: 1.0", "Content-Type: text/html; charset=utf-8"]
    stack.deliver(raw_mail(headers, body), mail_from=CUSTOMER)
    [article] = stack.tickets()[0].articles[:1]
    assert article.html is not None and "Принтер сломан" in article.html
    for bad in ("<script", "onclick", "javascript:", "tracker.example", "<iframe", "<style"):
        assert bad not in article.html
    assert article.text == "Принтер сломан\n\nx"


def deep_mime(levels: int) -> bytes:
    head = [*std_headers(), "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="b0"']
    body = ""
    for i in range(1, levels):
        body += f"--b{i - 1}\nContent-Type: multipart/mixed; boundary=\"b{i}\"\n\n"
    body += f"--b{levels - 1}\nContent-Type: text/plain\n\ndeep\n"
    for i in reversed(range(levels)):
        body += f"--b{i}--\n"
    return raw_mail(head, body)


def many_parts(count: int) -> bytes:
    head = [*std_headers(), "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="P"']
    body = "".join(f"--P\nContent-Type: text/plain\n\npart {i}\n" for i in range(count)) + "--P--\n"
    return raw_mail(head, body)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(deep_mime(100), "MIME nesting deeper than 20 levels", id="deep-mime-100"),
        pytest.param(many_parts(500), "more than 200 MIME parts", id="500-parts"),
        pytest.param(raw_mail([*std_headers(), *[f"X-Junk-{i}: x" for i in range(1500)]]),
                     "more than 1000 header fields", id="1500-headers"),
        # Folded, since the listener refuses any line over 1000 octets (500) by itself.
        pytest.param(raw_mail([*std_headers()[:2], "Subject: x" + "\r\n A" * 40_000,
                               *std_headers()[3:]]),
                     "a header field is longer than 64 KiB", id="folded-100k-header"),
    ],
)
def test_mail_beyond_the_safety_limits_is_quarantined_with_a_polite_notice(
    stack: Stack, raw: bytes, reason: str
) -> None:
    sent = stack.deliver(raw, mail_from=CUSTOMER)
    [row] = stack.spool()
    assert (row.state, row.outcome, row.last_error) == (QueueState.QUARANTINED, "unparseable",
                                                        reason)
    [notice] = sent
    assert list(notice.rcpt_tos) == [CUSTOMER]
    assert notice.message["Auto-Submitted"] == "auto-replied"
    assert reason in text_of(notice)
    assert stack.tickets() == []


def test_binary_garbage_from_the_null_sender_is_quarantined_without_backscatter(
    stack: Stack,
) -> None:
    sent = stack.deliver(b"\x00\x01\x02" * 25 + b"\r\n" * 40, mail_from="")
    [row] = stack.spool()
    assert (row.state, row.outcome, row.last_error) == (
        QueueState.QUARANTINED, "unparseable", "binary data without mail headers")
    assert sent == []


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_nul_bytes_in_headers_and_body_are_stored_without_them(
    db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from support import databases

    ctx = (databases.sqlite_database(tmp_path) if db == "sqlite"
           else databases.postgres_database())
    with ctx as url, SmtpSink() as sink:
        stack = Stack(tmp_path, url, sink)
        try:
            headers = std_headers(subject="Bad\x00subject")
            sent = stack.deliver(raw_mail(headers, b"Line\x00one\nline two\n"),
                                 mail_from=CUSTOMER)
            [ticket] = stack.tickets()
            assert ticket.subject == "Bad subject"
            assert ticket.articles[0].text == "Lineone\nline two"
            assert recipients(sent) == sorted([[CUSTOMER], *ENGINEERS])
        finally:
            stack.close()


def test_raw_8bit_headers_are_decoded(stack: Stack) -> None:
    headers = [f"From: {'Иван Петров'} <{CUSTOMER}>".encode(), f"To: {SUPPORT}".encode(),
               "Subject: Не работает принтер".encode("cp1251"),
               f"Message-ID: <{new_id('acme.example')}>".encode()]
    sent = stack.deliver(raw_mail(headers, "Текст письма".encode("cp1251")), mail_from=CUSTOMER)
    [ticket] = stack.tickets()
    assert ticket.subject == "Не работает принтер"
    assert ticket.articles[0].text == "Текст письма"
    assert recipients(sent) == sorted([[CUSTOMER], *ENGINEERS])


@pytest.mark.parametrize(
    ("declared", "actual"),
    [("utf-8", "cp1251"), ("koi8-r", "utf-8"), ("x-no-such-charset", "koi8-r"),
     ("us-ascii", "cp1251")],
)
def test_charset_lies_are_detected(stack: Stack, declared: str, actual: str) -> None:
    body = "Здравствуйте! Принтер в бухгалтерии не печатает уже третий день подряд."
    headers = [*std_headers(), "MIME-Version: 1.0",
               f"Content-Type: text/plain; charset={declared}",
               "Content-Transfer-Encoding: 8bit"]
    stack.deliver(raw_mail(headers, body.encode(actual)), mail_from=CUSTOMER)
    [ticket] = stack.tickets()
    assert ticket.articles[0].text == body


def test_encoded_address_in_display_name_does_not_change_the_sender(stack: Stack) -> None:
    # The display name decodes to "anna@provider.example <": identity comes from the addr-spec.
    headers = std_headers(from_=f"=?UTF-8?Q?anna=40provider.example_=3C?= <{CUSTOMER}>")
    stack.deliver(raw_mail(headers, "#status closed\nhello"), mail_from=CUSTOMER)
    [ticket] = stack.tickets()
    assert (ticket.requester, ticket.status) == (CUSTOMER, "new")
    assert ticket.articles[0].kind == "customer"


def test_lookalike_contract_domain_is_an_unknown_sender(stack: Stack) -> None:
    # "аcme.example" with a Cyrillic "а", as the punycode a mail client sends.
    fake = "ivan@" + "\u0430cme.example".encode("idna").decode()
    sent = stack.deliver(raw_mail(std_headers(from_=f"Иван <{fake}>")), mail_from=fake)
    assert stack.tickets() == []
    assert outcomes(stack) == ["unknown_sender"]
    assert [(list(m.rcpt_tos), m.message["Auto-Submitted"]) for m in sent] == [
        ([fake], "auto-replied")]


def test_raw_utf8_address_without_smtputf8_is_no_sender_and_gets_no_notice(
    stack: Stack,
) -> None:
    headers = ["From: Иван <ivan@\u0430cme.example>".encode(), *std_headers()[1:]]
    sent = stack.deliver(raw_mail(headers), mail_from="ivan@xn--cme-8cd.example")
    assert (sent, stack.tickets(), outcomes(stack)) == ([], [], ["unknown_sender"])


def test_references_flood_is_capped_and_the_mail_is_processed(stack: Stack) -> None:
    refs = "\r\n ".join(f"<{i}.flood@evil.example>" for i in range(2000))
    headers = [*std_headers(), f"References: {refs}"]
    started = time.monotonic()
    sent = stack.deliver(raw_mail(headers), mail_from=CUSTOMER)
    assert time.monotonic() - started < 5
    [ticket] = stack.tickets()
    assert "References cut to the last 100 ids" in ticket.articles[0].defects
    assert recipients(sent) == sorted([[CUSTOMER], *ENGINEERS])


def zip_bomb(uncompressed_mib: int) -> bytes:
    """A real zip whose one entry inflates to ``uncompressed_mib`` MiB of zeros (~1000:1)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive, \
            archive.open("zeros.bin", "w", force_zip64=True) as entry:
        chunk = bytes(1 << 20)
        for _ in range(uncompressed_mib):
            entry.write(chunk)
    return buffer.getvalue()


def test_zip_bomb_attachment_is_stored_unopened_by_content_hash(stack: Stack) -> None:
    bomb = zip_bomb(64)
    [entry] = zipfile.ZipFile(io.BytesIO(bomb)).infolist()
    assert entry.file_size == 64 << 20 and len(bomb) < 100_000
    started = time.monotonic()
    sent = stack.deliver(build(from_=CUSTOMER, body="Логи во вложении.",
                               attachments=[("logs.zip", "application/zip", bomb)]),
                         mail_from=CUSTOMER)
    assert time.monotonic() - started < 5
    assert recipients(sent) == sorted([[CUSTOMER], *ENGINEERS])
    [stored] = stack.ticket(stack.tickets()[0].id).articles[0].attachments
    digest = hashlib.sha256(bomb).hexdigest()
    assert (stored.filename, stored.content_type, stored.size, stored.sha256) == (
        "logs.zip", "application/zip", len(bomb), digest)
    with transaction(stack.factory) as s:
        # Nothing was unpacked: the one blob is the archive as it came.
        assert [(b.sha256, len(b.data)) for b in s.scalars(select(Blob))] == [(digest, len(bomb))]


def test_engineer_reply_with_an_attached_mail_reaches_the_customer(stack: Stack) -> None:
    ticket, _ = open_ticket(stack)
    [notice] = [m for m in stack.sink.messages if list(m.rcpt_tos) == [ANNA]]
    token_address = str(notice.message["Reply-To"])
    inner = ("From: vendor@printers.example\nSubject: Firmware 2.1\nMessage-ID: <fw@printers.example>"
             "\n\nUpdate the firmware to 2.1.\n")
    raw = raw_mail(
        [f"From: {ANNA}", f"To: {token_address}", "Subject: Re: notice",
         f"Message-ID: <{new_id('provider.example')}>", "MIME-Version: 1.0",
         'Content-Type: multipart/mixed; boundary="M"'],
        "--M\nContent-Type: text/plain; charset=utf-8\n\nОтвет производителя во вложении.\n"
        "--M\nContent-Type: message/rfc822\nContent-Disposition: attachment\n\n"
        f"{inner}--M--\n")
    sent = stack.deliver(raw, mail_from=ANNA, rcpt=(token_address,))
    assert outcomes(stack)[-1] == "engineer_reply"
    [reply] = [m for m in sent if CUSTOMER in m.rcpt_tos]
    [part] = list(reply.message.iter_attachments())
    assert (part.get_filename(), part.get_content_type()) == (
        "Firmware 2.1.eml", "application/octet-stream")
    assert part.get_content() == inner.rstrip("\n").replace("\n", "\r\n").encode()
    assert [a.kind for a in stack.ticket(ticket.id).articles] == ["customer", "ack", "reply"]
