"""Write outgoing mail straight to SMTP bytes, for the shapes notify sends all day.

Why not ``EmailMessage``: the stdlib parses every header value into a token tree
when it is set, refolds the tree when the message is generated, and on 3.11 our
``compose.to_bytes`` then has to re-parse the output to catch header injection
(CVE-2024-6923). That is about 4 ms per mail, three mails per new ticket, the
largest cost of the whole pipeline. Our mail has a fixed shape (a text part,
perhaps an HTML alternative), so this module writes it with string operations.

Safety is by construction, then checked: every value reaching a header is
either cleaned by ``compose.clean_header`` (no controls, single spaces) or
matches a strict pattern (addresses, message ids, tokens); anything non-ASCII,
over-long or looking like an encoded word (``=?``) is written as RFC 2047
encoded words, which hold no spaces or controls. :func:`write` finally checks
the header block it produced: CRLF only, every line a continuation or one of
the header names it was asked to write, in order, and nothing else.

Bodies are encoded exactly as ``email.contentmanager`` does for
``policy.SMTP.clone(cte_type="7bit")`` (7bit when ASCII with short lines,
otherwise the shorter of quoted-printable and base64), so a reader sees the same
mail as from the stdlib path; tests compare the two.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
import sys
from collections.abc import Sequence
from email import quoprimime

# RFC 5322 says SHOULD 78: the stdlib's policy.SMTP folds at this width too.
WIDTH = 78
# An encoded word is at most 75 characters (RFC 2047 §2): "=?utf-8?b?" + text + "?=".
_EW_HEAD, _EW_TAIL = "=?utf-8?b?", "?="
_EW_MAX = 75
# A literal word longer than this is encoded too, so that every line stays within WIDTH.
_LONG_WORD = WIDTH - 10

# RFC 5322 atext, for display names that need no quoting.
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")
_NEWLINES = re.compile(r"\r\n|\r|\n")
_HEADER_LINE = re.compile(r"([!-9;-~]+):")


def _encoded_words(text: str, first_room: int) -> list[str]:
    """``text`` as UTF-8 ``B`` encoded words; the first fits in ``first_room`` characters.

    A word never splits a character (RFC 2047 §5) and never exceeds 75
    characters; the spaces of ``text`` are inside the words, so a reader that
    drops the folding white space between adjacent encoded words gets ``text``
    back exactly.
    """
    words: list[str] = []
    room = first_room
    chunk = b""
    for char in text:
        data = char.encode("utf-8")
        # Base64 of n bytes is 4*ceil(n/3) characters.
        if chunk and len(_EW_HEAD) + len(_EW_TAIL) + 4 * -(-(len(chunk) + len(data)) // 3) > room:
            words.append(_EW_HEAD + base64.b64encode(chunk).decode("ascii") + _EW_TAIL)
            chunk = b""
            room = min(_EW_MAX, WIDTH - 1)
        chunk += data
    if chunk or not words:
        words.append(_EW_HEAD + base64.b64encode(chunk).decode("ascii") + _EW_TAIL)
    return words


def _needs_encoding(word: str) -> bool:
    return not word.isascii() or "=?" in word or len(word) > _LONG_WORD


def _fold(name: str, tokens: Sequence[str]) -> str:
    """``Name: t1 t2 …``, folded before a token when the line would pass WIDTH."""
    line = name + ":"
    lines: list[str] = []
    for index, token in enumerate(tokens):
        if index and len(line) + 1 + len(token) > WIDTH:
            lines.append(line)
            line = ""
        line += " " + token
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def unstructured(name: str, value: str) -> str:
    """An unstructured field (Subject, X-…) from a cleaned value: ASCII words, then encoded words.

    Words before the first one that needs encoding stay readable; from there on
    the rest is encoded as one run, so the single spaces between words survive.
    """
    words = value.split(" ") if value else []
    plain: list[str] = []
    for index, word in enumerate(words):
        if _needs_encoding(word):
            rest = " ".join(words[index:])
            used = len(name) + 1 + sum(len(w) + 1 for w in plain)
            room = WIDTH - used - 1
            if room < len(_EW_HEAD) + len(_EW_TAIL) + 8:
                room = WIDTH - 1  # the first word starts on a fresh line
            return _fold(name, [*plain, *_encoded_words(rest, min(room, _EW_MAX))])
        plain.append(word)
    return _fold(name, plain)


def phrase(display_name: str, first_room: int = _EW_MAX) -> list[str]:
    """A cleaned display name as phrase tokens: atoms, one quoted string, or encoded words."""
    if not display_name:
        return []
    words = display_name.split(" ")
    if not display_name.isascii() or "=?" in display_name or any(
        len(word) > _LONG_WORD for word in words
    ):
        return _encoded_words(display_name, min(first_room, _EW_MAX))
    if _ATEXT_PHRASE.fullmatch(display_name):
        return words
    # One quoted string, split at its (single) spaces: a fold there is white space
    # inside the quotes, which unfolding turns back into that space.
    return ('"' + display_name.replace("\\", "\\\\").replace('"', '\\"') + '"').split(" ")


def address_field(name: str, mailboxes: Sequence[tuple[str, str]]) -> str:
    """``From``/``To``/``Cc``/``Reply-To`` from ``(display_name, addr_spec)`` pairs.

    ``addr_spec`` must already be validated (``compose`` does); names are cleaned.
    """
    tokens: list[str] = []
    for index, (display_name, spec) in enumerate(mailboxes):
        words = phrase(display_name, WIDTH - len(name) - 2 if index == 0 else _EW_MAX)
        item = [*words, "<" + spec + ">"] if words else [spec]
        if index < len(mailboxes) - 1:
            item[-1] += ","
        tokens.extend(item)
    return _fold(name, tokens)


def message_ids(name: str, ids: Sequence[str]) -> str:
    """``Message-ID``/``In-Reply-To``/``References``: validated bare ids, never encoded."""
    return _fold(name, ["<" + mid + ">" for mid in ids])


def simple(name: str, value: str) -> str:
    """A header whose value is a fixed token or a validated one (Date, Auto-Submitted …)."""
    return name + ": " + value + "\r\n"


def _base64_body(data: bytes) -> str:
    per_line = WIDTH // 4 * 3
    return "".join(
        binascii.b2a_base64(data[i : i + per_line]).decode("ascii")
        for i in range(0, len(data), per_line)
    )


def encode_text(text: str) -> tuple[str, str]:
    """``(cte, body)`` as ``email.contentmanager`` picks them for 7-bit SMTP output."""
    lines = text.encode("utf-8").splitlines()
    if max((len(x) for x in lines), default=0) <= WIDTH:
        normal = b"\n".join(lines) + b"\n"
        if normal.isascii():
            return "7bit", normal.decode("ascii")
    sniff = b"\r\n".join(lines[:10]) + b"\r\n"
    sniff_qp = quoprimime.body_encode(sniff.decode("latin-1"), WIDTH)
    if len(sniff_qp) > len(binascii.b2a_base64(sniff)):
        return "base64", _base64_body(b"\r\n".join(lines) + b"\r\n")
    if len(lines) <= 10:
        return "quoted-printable", sniff_qp
    normal = b"\n".join(lines) + b"\n"
    return "quoted-printable", quoprimime.body_encode(normal.decode("latin-1"), WIDTH)


def _text_part(text: str, subtype: str) -> tuple[list[str], str]:
    """Header lines and body of one ``text/*`` part."""
    cte, body = encode_text(text)
    headers = [
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n',
        f"Content-Transfer-Encoding: {cte}\r\n",
    ]
    return headers, _NEWLINES.sub("\r\n", body)


def _boundary(bodies: Sequence[str]) -> str:
    """A boundary in the stdlib's style that occurs in no body."""
    while True:
        token = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
        if not any(token in body for body in bodies):
            return token


def write(fields: Sequence[tuple[str, str]], text: str, html: str | None) -> bytes:
    """The whole mail: the header ``fields``, then the body parts.

    Each field is ``(name, lines)``, the lines made by this module's functions;
    the output is refused unless its header block holds exactly those names.

    :raises ValueError: the header block is not what was asked for.
    """
    top = "".join(lines for _, lines in fields)
    top_names = [name for name, _ in fields]
    if html is None:
        part_headers, body = _text_part(text, "plain")
        out = top + "MIME-Version: 1.0\r\n" + "".join(part_headers) + "\r\n" + body
        top_names += ["MIME-Version", "Content-Type", "Content-Transfer-Encoding"]
    else:
        plain_headers, plain = _text_part(text, "plain")
        html_headers, html_body = _text_part(html, "html")
        boundary = _boundary((plain, html_body))
        out = (
            top + "MIME-Version: 1.0\r\n"
            + f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'
            + f"--{boundary}\r\n" + "".join(plain_headers) + "\r\n" + plain
            + f"\r\n--{boundary}\r\n" + "".join(html_headers) + "\r\n" + html_body
            + f"\r\n--{boundary}--\r\n"
        )
        top_names += ["MIME-Version", "Content-Type"]
    _check_header_block(out, top_names)
    return out.encode("ascii")


def _check_header_block(out: str, names: Sequence[str]) -> None:
    """Refuse output whose top-level header lines are not exactly ``names`` (plus folds)."""
    end = out.find("\r\n\r\n")
    if end < 0:
        raise ValueError("generated mail has no header/body separator")
    found: list[str] = []
    for line in out[:end].split("\r\n"):
        if "\r" in line or "\n" in line or len(line) > 998:
            raise ValueError("generated header line is broken or too long")
        if line[:1] == " ":
            if not line.strip() or not found:
                raise ValueError("generated header has an empty or stray continuation line")
            continue
        match = _HEADER_LINE.match(line)
        if match is None:
            raise ValueError(f"generated header line is not a header: {line[:40]!r}")
        found.append(match.group(1))
    if found != list(names):
        raise ValueError("generated headers differ from the headers asked for")
    if not out.isascii():
        raise ValueError("generated mail is not ASCII")
