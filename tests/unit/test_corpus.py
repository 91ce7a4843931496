"""parse() over the Request Tracker test-mail corpus (shared/corpus/rt, see its README.md).

Every file must parse; the interesting ones are checked for their exact
decoded subject and a distinctive piece of body text, attachment or DSN data.
The corpus lives beside the repo, not in it: without ../shared this module is
skipped (with the path in the reason), and tests/unit/test_regression_mails.py
covers its kinds of mail (charsets, nested mail, DSN, digest, RFC 2231 names,
signed and encrypted mail) with the project's own.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from support.corpora import RT_CORPUS as CORPUS
from support.corpora import RT_MISSING, rt_corpus_files

from mailticket.mail.parse import DsnRecipient, InboundMail, parse

if not CORPUS.is_dir():
    pytest.skip(RT_MISSING, allow_module_level=True)
FILES = [p.relative_to(CORPUS).as_posix() for p in rt_corpus_files()]


def load(name: str) -> InboundMail:
    return parse((CORPUS / name).read_bytes())


def test_corpus_is_complete() -> None:
    # The README lists 60 mails; fewer means the corpus is not where we look.
    assert len(FILES) == 60


@pytest.mark.parametrize("name", FILES)
def test_every_file_parses(name: str) -> None:
    parsed = load(name)
    assert parsed.raw_size == (CORPUS / name).stat().st_size
    assert "\ufffd" not in parsed.subject
    assert all("\n" not in v for values in parsed.headers.values() for v in values)


@pytest.mark.parametrize(
    ("name", "subject", "text"),
    [
        ("emails/russian-subject-no-content-type", "тест тест", None),
        ("emails/new-ticket-from-gb18030", "测试", "测试"),
        ("emails/subject-with-folding-ws", "test", "test"),
        ("emails/nested-rfc-822", "[Jonas Liljegren] Re: [Para] Nivåer?",
         "Material för att uppdatera texten om nivåer.\n\nDenna text bör dessutom ligga som "
         "ett uppslagsord och inte där den ligger nu.\n\n-- \n"
         "/ Jonas  -  http://jonas.example.com/myself/en/index.html"),
        ("emails/8859-15-message-series/msg3", "test äöüßÄÖÜß€",
         "test nochmal in anderer Queue\ntest äöüßÄÖÜß€"),
        ("emails/new-ticket-from-iso-8859-1", "Re: rt-3.0.3pre1", "Håvard"),
        ("emails/text-html-with-umlaut",
         "An example of mail containing text-html with an umlaut in the content",
         "Hello,\n\nist this kind of Messages, that causes rt to crash.\n\n"
         "Mit freundlichen Grüßen\nGregor Stever      ^^causes Error!!"),
        ("emails/multipart-alternative-with-umlaut",
         "RE: [rt-users] HTML-encoded mails with umlaute",
         "Hello,\n\nist this kind of Messages, that causes rt to crash. \n\n"
         "Mit freundlichen Grüßen\nGregor Stever      ^^causes Error!!"),
        ("emails/outlook-rfc822", "msg attachment",
         "Could this look more spammy? “Check out the attached file.” 😊"),
        ("emails/email-file-attachment.eml", "This is a test",
         "This is a test with an email file attachment."),
        ("emails/rfc2231-attachment-filename-continuations",
         "Client ? Japanese Attachment Name issue", "Some data in a file"),
        ("emails/rt-send-cc", "testing send-cc headers", ""),
        ("emails/lorem-ipsum", "", None),
        ("gnupg/1-signed-MIME-plain.txt", "Test Email ID:1",
         "This is a test email with MIME signature.\nID:1"),
        ("gnupg/7-encrypted-MIME-plain.txt", "Test Email ID:7", ""),
        ("smime/3-signed-binary.eml", "Test Email ID:3",
         "This is a test email with binary attachment and detached signature.\nID:3"),
    ],
)  # fmt: skip
def test_decoded_subject_and_text(name: str, subject: str, text: str | None) -> None:
    parsed = load(name)
    assert parsed.subject == subject
    if text is not None:
        assert parsed.text == text


def test_very_long_subject_survives_intact() -> None:
    subject = load("emails/very-long-subject").subject
    assert subject == "0123456789" * 30


def test_undeclared_latin1_body_and_8bit_from_name() -> None:
    parsed = load("emails/new-ticket-from-iso-8859-1-full")
    assert (parsed.from_name, parsed.from_addr) == ("Wilhelmsen Håvard", "hw@nordkapp.net")
    assert "All Norwegian letters is converted to strange letters like Ã¸" in parsed.text
    assert parsed.message_id is None


def test_lorem_ipsum_without_headers_is_all_body() -> None:
    parsed = load("emails/lorem-ipsum")
    assert parsed.text.startswith("Lorem ipsum dolor sit amet, consectetur adipisicing elit")
    assert (parsed.message_id, parsed.from_addr, parsed.date) == (None, "", None)
    assert parsed.defects == ("MissingHeaderBodySeparatorDefect",)


def test_multipart_report_gives_dsn_recipients() -> None:
    parsed = load("emails/multipart-report")
    assert parsed.subject == "Returned mail: User unknown"
    assert (parsed.is_report, parsed.report_type) == (True, "delivery-status")
    assert parsed.from_addr == "mailer-daemon@other.example.com"
    assert parsed.dsn == (
        DsnRecipient(
            address="jesmund@mailbox.other.example.com",
            action="failed",
            status="5.1.1",
            diagnostic="SMTP; 550 5.1.1 <jesmund>... User unknown",
        ),
    )
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [
        ("Thank you!.eml", "message/rfc822")
    ]
    assert "StartBoundaryNotFoundDefect" in parsed.defects


def test_rfc2231_filename_continuations() -> None:
    (attachment,) = load("emails/rfc2231-attachment-filename-continuations").attachments
    assert attachment.filename == "新しいテキスト ドキュメント.txt"
    assert attachment.content_type == "text/plain"


def test_nested_rfc822_stays_an_attachment() -> None:
    parsed = load("emails/nested-rfc-822")
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [
        ("Re: [Para] Nivåer?.eml", "message/rfc822")
    ]
    # The forwarded mail's own text is inside the attachment, not the body.
    assert "Material för att uppdatera" in parsed.text
    assert b"Subject: Re: [Para] =?iso-8859-1?q?Niv=E5er=3F?=" in parsed.attachments[0].data


def test_outlook_rfc822_without_filename_is_named_after_its_subject() -> None:
    parsed = load("emails/outlook-rfc822")
    assert parsed.message_id == (
        "MN6PR12MB8566625839C42BCD2B16AC1B8FD6A@MN6PR12MB8566.namprd12.prod.outlook.com"
    )
    (attachment,) = parsed.attachments
    assert attachment.filename == "Updates to our terms of use.eml"
    # The inner Exchange id that crashes CPython's header parser is kept verbatim.
    assert b"@microsoft.com]>" in attachment.data
    assert parsed.html is not None and "Check out the attached file" in parsed.html


def test_nested_mime_digest_keeps_outer_text() -> None:
    parsed = load("emails/nested-mime-sample")
    assert parsed.text.startswith("MIME is fun at times.")
    assert [a.filename for a in parsed.attachments] == [
        "first outer message.eml",
        "2nd outer message.eml",
    ]


def test_digest_of_seven_messages() -> None:
    parsed = load("emails/8859-15-message-series/dir")
    assert [a.content_type for a in parsed.attachments] == ["message/rfc822"] * 7
    assert parsed.headers["precedence"] == ("bulk",)


def test_signed_mail_with_text_attachment() -> None:
    parsed = load("gnupg/2-signed-MIME-plain-with-attachment.txt")
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [
        ("text-attachment", "text/plain"),
        ("signature.asc", "application/pgp-signature"),
    ]
    assert b"The magic word is:  zanzibar." in parsed.attachments[0].data


def test_encrypted_smime_has_no_text_and_a_defect() -> None:
    parsed = load("smime/4-encrypted-plain.eml")
    assert parsed.text == ""
    assert [a.filename for a in parsed.attachments] == ["smime.p7m"]
    assert "encrypted content; body not readable" in parsed.defects


def test_koi8r_forward_with_inline_image() -> None:
    parsed = load("emails/crashes-file-based-parser")
    assert parsed.text.startswith("FYI\n\n\n----------  Forwarded Message  ----------")
    assert "Somebody at IP 127.0.0.1 scanned my ports." in parsed.text
    assert [(a.filename, a.inline) for a in parsed.attachments] == [("BackGrnd.jpg", True)]


def test_duplicate_message_ids_are_reported_as_sent() -> None:
    first = load("emails/email-file-attachment.eml")
    second = load("emails/email-file-attachment-2.eml")
    assert first.message_id == second.message_id == "A23A3AC0-D9E3-4965-83DF-F29217AF28F6@mac.com"
    assert first.subject != second.subject


def test_dates_are_utc() -> None:
    assert load("emails/multipart-report").date == datetime(2003, 8, 22, 16, 15, 18, tzinfo=UTC)
    assert load("emails/new-ticket-from-gb18030").date is None
