"""The lean parse of big mail (mail/lean.py): the stdlib's tree and bytes, without its copies.

Every check compares with the stdlib itself: ``BytesParser(policy=compat32)``
and ``get_payload(decode=True)`` on the same bytes. The lean path is forced on
small mail here (``lean_from=0, min_run=1``: every run of base64-alphabet lines
becomes a placeholder), so the regression mails (tests/mails), the RT corpus
when ../shared is beside the checkout, and the mutated mail exercise it on
every line shape the parser distinguishes. The last test holds the point of
it: parsing a mail with an 8 MB attachment allocates about one more copy of
the mail, where ``parsebytes`` and ``get_payload`` took nine.
"""

from __future__ import annotations

import base64
import email.policy
import hashlib
import os
import tracemalloc
from email.message import Message
from email.parser import BytesParser

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from support.corpora import (
    REGRESSION_MAILS,
    RT_CORPUS,
    regression_mails,
    rt_corpus_files,
    rt_corpus_params,
)
from support.mails import build

from mailticket.mail.body import _SERIALISE
from mailticket.mail.lean import Runs, parse_tree
from mailticket.mail.parse import parse

# Seeds of the mutation test: always the own mails, plus the RT corpus when present.
SEED_FILES = regression_mails() + rt_corpus_files()
STDLIB = BytesParser(policy=email.policy.compat32)
ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def _shape(root: Message) -> list[tuple[object, ...]]:
    """Everything the parser sets on each part of a tree."""
    return [
        (part._headers, part._unixfrom, part.preamble, part.epilogue,  # type: ignore[attr-defined]
         [type(d).__name__ for d in part.defects], part.get_default_type(),
         part.get_payload() if not part.is_multipart() else len(part.get_payload()))
        for part in root.walk()
    ]


def _serialised(root: Message) -> bytes | str:
    try:
        return root.as_bytes(policy=_SERIALISE)
    except Exception as exc:  # the stdlib's own failure must be the same one
        return type(exc).__name__


def assert_same_as_stdlib(raw: bytes, *, lean_from: int = 0, min_run: int = 1) -> Runs:
    """Decoded payloads (before splicing), then the whole tree, equal the stdlib's."""
    expected = STDLIB.parsebytes(raw)
    tree, runs = parse_tree(raw, lean_from=lean_from, min_run=min_run)
    for want, got in zip(expected.walk(), tree.walk(), strict=True):
        if not want.is_multipart():
            assert runs.decoded_payload(got) == want.get_payload(decode=True)
    runs.splice(tree)
    assert _shape(tree) == _shape(expected)
    assert _serialised(tree) == _serialised(expected)
    return runs


def assert_same_as_stdlib_both_line_ends(raw: bytes) -> None:
    """The file as it is, and with every line end made CRLF."""
    assert_same_as_stdlib(raw)
    assert_same_as_stdlib(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


@pytest.mark.parametrize("name", [p.name for p in regression_mails()])
def test_regression_mails_parse_as_the_stdlib_does(name: str) -> None:
    assert_same_as_stdlib_both_line_ends((REGRESSION_MAILS / name).read_bytes())


@pytest.mark.parametrize("name", rt_corpus_params())
def test_rt_corpus_parses_as_the_stdlib_does(name: str) -> None:
    assert_same_as_stdlib_both_line_ends((RT_CORPUS / name).read_bytes())


def _b64_lines(data: bytes, end: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", end)


def _crafted() -> dict[str, bytes]:
    head = b"From: a@example.org\nTo: s@example.com\nSubject: x\nMIME-Version: 1.0\n"
    multi = head + b"Content-Type: multipart/mixed; boundary=BB\n\n"
    blob = _b64_lines(bytes(range(256)) * 9 + b"x", b"\n")  # ends in "=="
    part = b"--BB\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
    return {
        "attachment before the close boundary": multi + part + blob + b"--BB--\n",
        "attachment, CRLF": (multi + part + blob + b"--BB--\n").replace(b"\n", b"\r\n"),
        "one-part base64 without a last line end": head + b"Content-Transfer-Encoding: base64\n\n"
        + blob.rstrip(b"\n"),
        "one padding sign": head + b"Content-Transfer-Encoding: base64\n\n"
        + _b64_lines(b"ab" * 500, b"\n"),
        "missing padding": multi + part + blob.replace(b"==", b"") + b"--BB--\n",
        "padding in the middle": multi + part + blob + blob + b"--BB--\n",
        "a stray character": multi + part + blob[:300] + b"*\n" + blob[300:] + b"--BB--\n",
        "runs in preamble and epilogue": multi[:-1] + blob + b"\n" + part + blob + b"--BB--\n"
        + blob,
        "run where the headers end": head + blob,
        "bare CR and CR CR LF in a run": multi + part + blob[:200] + b"\r" + blob[200:400]
        + b"\r\r\n" + blob[400:] + b"--BB--\n",
        "mail attached in a mail": multi + b"--BB\nContent-Type: message/rfc822\n\n" + multi
        + part + blob + b"--BB--\n\n--BB--\n",
        "text in base64 and quoted-printable": multi + b"--BB\nContent-Type: text/plain; "
        b"charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        + _b64_lines("Привет, мир! ".encode() * 200, b"\n")
        + b"--BB\nContent-Transfer-Encoding: quoted-printable\n\n" + b"abc=3D\n" * 50
        + b"--BB--\n",
    }


@pytest.mark.parametrize("case", list(_crafted()))
def test_crafted_mail_parses_as_the_stdlib_does(case: str) -> None:
    raw = _crafted()[case]
    runs = assert_same_as_stdlib(raw)
    assert runs.spans  # the lean path was taken
    assert_same_as_stdlib(raw, lean_from=0, min_run=512)


_FRAGMENTS = [b"\r", b"\n", b"\r\n", b"\r\r\n", b"\n\n", b"--", b"From x\n", b"X: y\n",
              b" folded\n", b"=", b"\xd0\x9f", b"\x00", b"Content-Transfer-Encoding: base64\n",
              b"Content-Type: message/rfc822\n",
              b"Content-Type: multipart/mixed; boundary=zz\n\n--zz\n", b"--zz--\n"]


@st.composite
def mutated_mail(draw: st.DrawFn) -> bytes:
    """A seed mail with base64 runs and hostile fragments inserted between its lines."""
    raw = draw(st.sampled_from(SEED_FILES)).read_bytes()
    lines = raw.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        end = draw(st.sampled_from([b"\n", b"\r\n"]))
        run: list[bytes]
        if draw(st.booleans()):
            run = _b64_lines(draw(st.binary(max_size=300)), end).splitlines(keepends=True)
        else:
            line = st.binary(min_size=1, max_size=80).map(lambda b: bytes(ALPHABET[c % 65] for c in b))
            run = [draw(line) + end for _ in range(draw(st.integers(1, 6)))]
        if draw(st.booleans()) and run:
            run[-1] = run[-1].rstrip(b"\r\n")
        at = draw(st.integers(0, len(lines)))
        lines[at:at] = run
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(_FRAGMENTS)))
    mail = b"".join(lines)
    return mail[: draw(st.integers(0, len(mail)))] if draw(st.booleans()) else mail


@seed(20261123)
@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated_mail())
def test_mutated_mail_parses_as_the_stdlib_does(raw: bytes) -> None:
    assert_same_as_stdlib(raw)


def test_big_attachment_costs_about_one_more_copy() -> None:
    data = os.urandom(8 * 1000 * 1000)
    raw = build(from_="Иван <ivan@acme.example>", subject="Дамп базы",
                attachments=[("dump.bin", "application/octet-stream", data)])
    tracemalloc.start()
    try:
        mail = parse(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(a.filename, a.content_type) for a in mail.attachments] == [
        ("dump.bin", "application/octet-stream")]
    assert hashlib.sha256(mail.attachments[0].data).digest() == hashlib.sha256(data).digest()
    assert mail.subject == "Дамп базы" and mail.text.startswith("Здравствуйте!")
    # The decoded file (3/4 of the mail) plus slices; parsebytes + get_payload took ~9x.
    assert peak < 1.3 * len(raw), f"parse peak {peak / len(raw):.2f}x the mail"
