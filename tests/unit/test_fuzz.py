"""Fuzzing the pure mail path: parse → classify → authenticate → thread keys → compose.

Hypothesis mutates real-looking mail (the project's regression mails in
tests/mails, mail built by ``support.mails``, and the RT corpus when ../shared
is beside the checkout) with byte flips, splices, truncation and hostile
fragments (bare CR/LF, NUL, encoded words, deep MIME, long headers), then runs
every pure stage. The only exception allowed is ``UnparseableMessage`` (a
recorded, polite refusal); anything else, or more than ``MAX_SECONDS`` for one
input, is a bug. The last stage builds the mail we would send about the input
(its subject, sender name, text, HTML and attachment names copied in, as an
acknowledgement or an engineer notice does) and checks that none of it can add
a header or a recipient.

A normal test run tries ``QUICK_EXAMPLES`` inputs in a few seconds. For a long
run set ``MAILTICKET_FUZZ_SECONDS`` (e.g. 600): the test then keeps drawing
fresh batches until the time is up and prints how many inputs it tried.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from support.configs import make_config
from support.corpora import RT_CORPUS, regression_mails, rt_corpus_files
from support.mails import build

from mailticket.errors import UnparseableMessage
from mailticket.mail import compose
from mailticket.mail.classify import classify
from mailticket.mail.inbound import InboundMail
from mailticket.mail.parse import parse
from mailticket.model import Envelope
from mailticket.policy.auth import authenticate
from mailticket.policy.thread_keys import thread_keys

MAX_SECONDS = 2.0
QUICK_EXAMPLES = 200
FUZZ_SECONDS = float(os.environ.get("MAILTICKET_FUZZ_SECONDS", "0") or 0)
CONFIG = make_config(Path("/nonexistent"), "sqlite://")
TODAY = date(2026, 11, 20)


OWN = [p.read_bytes() for p in regression_mails()]
RT = [p.read_bytes() for p in rt_corpus_files()]


def _built() -> list[bytes]:
    """Mail built by ``support.mails`` for what the files lack: commands, loops, a path name."""
    return [
        build(from_="Иван <ivan@acme.example>"),
        build(from_="anna@provider.example", to="support+r1-1-20000-aaaaaaaaaaaaaaaaaaaaaaaaaa"
              "@provider.example", subject="Re: [#MT-1] x", body="#status closed\nok",
              in_reply_to="ticket-1@mt.provider.example"),
        build(from_="ivan@acme.example", subject="Автоответ: в отпуске",
              headers={"Auto-Submitted": "auto-replied", "Precedence": "bulk"}),
        build(from_="ivan@acme.example", charset="koi8-r", body="Привет, мир",
              attachments=[("../../etc/passwd", "text/plain", b"root:x:0:0")]),
        build(from_="MAILER-DAEMON@mx.example", subject="Undelivered Mail Returned to Sender",
              body="This is the mail system at host mx.example.\n\n<ivan@acme.example>: "
              "host said: 550 5.1.1 user unknown"),
    ]


# Always the own and the built mail; the RT corpus adds its 60 when ../shared is there.
BUILT = _built()
SEEDS = OWN + BUILT + RT
FRAGMENTS = [
    b"\r\n", b"\n", b"\r", b"\x00", b"\xff\xfe", b"\r\n\r\n", b"\r\n.\r\n", b"\n.\n",
    b"=?UTF-8?Q?=0D=0ABcc:_evil@x.example?=", b"=?koi8-r?B?8NLJ18XU?=", b"=?x-unknown?Q?a?=",
    b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n",
    b"Content-Type: message/rfc822\r\n\r\n", b"--b--\r\n", b"Content-Transfer-Encoding: base64\r\n",
    b"Message-ID: <[83c48ddd-JFBV=@microsoft.com]>\r\n", b"From: a@b.example)<c@d.example>\r\n",
    b"Subject: \xd0\x9f\xd1\x80\xd0\xb8\r\n", b"References: " + b"<x@y> " * 50 + b"\r\n",
    b"Content-Disposition: attachment; filename*=utf-8''..%2F..%2Fetc%2Fpasswd\r\n",
    b"Auto-Submitted: auto-replied\r\n", b"Content-Type: multipart/report; "
    b"report-type=delivery-status; boundary=b\r\n", b"A" * 5000, b"\t" * 100, b":",
]


@st.composite
def mutated_mail(draw: st.DrawFn) -> bytes:
    """A seed mail with a few random edits."""
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice", "repeat"]))
        pos = draw(st.integers(0, max(0, len(raw))))
        if op == "flip" and raw:
            raw[min(pos, len(raw) - 1)] = draw(st.integers(0, 255))
        elif op == "insert":
            piece = draw(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=64)))
            raw[pos:pos] = piece
        elif op == "delete":
            raw[pos:pos + draw(st.integers(1, 200))] = b""
        elif op == "truncate":
            del raw[pos:]
        elif op == "splice":
            other = draw(st.sampled_from(SEEDS))
            cut = draw(st.integers(0, len(other)))
            raw[pos:] = other[cut:]
        elif op == "repeat" and raw:
            end = min(len(raw), pos + draw(st.integers(1, 300)))
            raw[pos:pos] = bytes(raw[pos:end]) * draw(st.integers(2, 50))
    return bytes(raw)


def run_pure_path(raw: bytes) -> None:
    """Every pure stage on one input; only UnparseableMessage may escape, and fast.

    Time is this thread's CPU time, so a busy machine (other test runs on the
    same cores) cannot fail an input that is fast on its own.
    """
    started = time.thread_time()
    try:
        mail = parse(raw)
    except UnparseableMessage:
        return
    envelope = Envelope(mail_from=mail.from_addr, rcpt_tos=("support@provider.example",))
    classify(mail, envelope, our_addresses=CONFIG.mail.support_addresses,
             loop_header_value=CONFIG.daemon.instance_id,
             message_id_domain=CONFIG.mail.message_id_domain)
    authenticate(mail, envelope, CONFIG, TODAY)
    thread_keys(mail, CONFIG.mail.ticket_prefix)
    compose_about(mail)
    elapsed = time.thread_time() - started
    assert elapsed < MAX_SECONDS, f"{elapsed:.2f} s for one input of {len(raw)} bytes"


# The only top-level headers compose() may write for an acknowledgement.
ALLOWED_HEADERS = {"from", "to", "subject", "date", "message-id", "references",
                   "auto-submitted", "x-auto-response-suppress", "precedence",
                   "x-mailticket-loop", "mime-version", "content-type",
                   "content-transfer-encoding"}


def compose_about(mail: InboundMail) -> None:
    """Our mail about ``mail``, with its hostile values copied in: no header or recipient added."""
    attachments = [(a.filename, a.content_type, a.data[:64]) for a in mail.attachments[:3]]
    msg = compose.compose(
        from_addr="support@provider.example", from_name=mail.from_name or "Support",
        to=["ivan@acme.example"],
        subject=compose.subject_with_tag(mail.subject, "[#MT-1]"),
        text=f"{mail.from_name} <{mail.from_addr}> wrote:\n{mail.text[:2000]}",
        html=mail.html[:2000] if mail.html else None,
        message_id="1.fuzz@mt.provider.example", references=mail.references[-3:],
        auto_submitted="auto-replied", loop_id="mt-test", attachments=attachments,
        date=datetime(2026, 11, 20, 12, tzinfo=UTC),
    )
    raw = compose.to_bytes(msg)
    back = message_from_bytes(raw, policy=policy.default)
    names = [name.lower() for name in back]
    assert len(names) == len(set(names)) and set(names) <= ALLOWED_HEADERS, names
    assert names[:5] == ["from", "to", "subject", "date", "message-id"], names
    assert [str(a.addr_spec) for a in back["To"].addresses] == ["ivan@acme.example"]


FUZZ_SETTINGS = settings(
    max_examples=QUICK_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# Inputs the long fuzz runs found; each crashed the pure path before its fix.
FOUND = [
    # A NUL inside an encoded word's charset name: codecs.lookup raised ValueError.
    b"From: a@b.example\r\nSubject: =?\x00SO-8859-15?Q?test_=E4?=\r\n\r\nx\r\n",
    # A NUL in a part's charset parameter, with 8-bit text: Message.get_payload()
    # decoded it with that charset and raised ValueError.
    b"From: a@b.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B"
    b"\r\n\r\n--B\r\nContent-Type: text/plain; charset=\"\x00koi8-r\"\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n\xf0\xd2\xc9\r\n--B--\r\n",
    # An attached mail (message/rfc822) copied into our mail: the stdlib wrote it
    # as base64 with bare LFs and compose.to_bytes refused it, so an engineer's
    # reply forwarding an .eml never reached the customer (found by the compose stage).
    b"From: a@b.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B"
    b"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--B\r\n"
    b"Content-Type: message/rfc822\r\n\r\nFrom: c@d.example\r\nSubject: inner\r\n\r\n"
    b"body\r\n--B--\r\n",
]


@pytest.mark.parametrize("raw", FOUND, ids=["nul-in-encoded-word-charset", "nul-in-part-charset",
                                           "attached-mail-in-our-mail"])
def test_inputs_found_by_fuzzing(raw: bytes) -> None:
    run_pure_path(raw)
    assert parse(raw).from_addr == "a@b.example"


def test_seeds_cover_the_regression_mails_and_built_mail() -> None:
    assert (len(OWN), len(BUILT)) == (26, 5)
    for raw in OWN + BUILT:
        run_pure_path(raw)


@pytest.mark.skipif(not RT, reason=f"{RT_CORPUS} not found: the RT corpus seeds are an extra set "
                    "kept in ../shared beside the repo")
def test_seeds_cover_the_rt_corpus() -> None:
    assert len(RT) == 60
    for raw in RT:
        run_pure_path(raw)


@pytest.mark.timeout(0 if FUZZ_SECONDS > 0 else 60)
def test_mutated_mail_never_crashes_the_pure_path() -> None:
    """QUICK_EXAMPLES fixed-seed inputs; with MAILTICKET_FUZZ_SECONDS, random batches until then."""
    tried = 0

    def one(raw: bytes) -> None:
        nonlocal tried
        tried += 1
        run_pure_path(raw)

    if FUZZ_SECONDS <= 0:
        seed(20261120)(FUZZ_SETTINGS(given(mutated_mail())(one)))()
        assert tried >= QUICK_EXAMPLES
        return
    batch = settings(FUZZ_SETTINGS, max_examples=2000)(given(mutated_mail())(one))
    deadline = time.monotonic() + FUZZ_SECONDS
    batches, outcome = 0, "failed"
    try:
        while time.monotonic() < deadline:
            batch()
            batches += 1
        outcome = "no failure"
    finally:
        print(f"\nfuzz: {tried} inputs in {batches} full batches over "
              f"{FUZZ_SECONDS:.0f} s, {outcome}")
