"""Parse and decode a big mail without whole-message copies (issue 9: RSS with a 25 MB file).

``BytesParser.parsebytes`` decodes the whole mail to one str (two bytes a
character as soon as one 8-bit byte is in it), copies that into a StringIO
(four bytes a character), and the feed parser keeps every line of a part as a
str of its own until it joins them: a 34 MB mail cost some 300 MB. Then
``Message.get_payload(decode=True)`` copies a base64 body three more times
(ASCII bytes, its lines, their join) before decoding it.

So :func:`parse_tree` feeds the stdlib feed parser the raw bytes in slices,
and hands it each long run of base64-alphabet lines (an encoded file) as one
placeholder line. To the feed parser every line of such a run is the same
kind of line (not blank, no header, no boundary: only ``[A-Za-z0-9+/=]`` and
a line end), and the placeholder keeps the run's last line end, so the tree
has the structure, defects and strings ``parsebytes`` gives, with placeholders
where the runs were. :class:`Runs` decodes a part that is one clean base64 run
straight from the raw bytes, and puts the runs' text back (:meth:`Runs.splice`)
before anything else reads a part. Whatever is not clean base64 goes through
the stdlib, so the decoded bytes are always the stdlib's.
"""

from __future__ import annotations

import binascii
import email.policy
import io
import re
import secrets
from dataclasses import dataclass
from email.feedparser import BytesFeedParser
from email.message import Message
from typing import cast

# Mails smaller than this are fed as they are (nothing to gain, and no scan).
LEAN_FROM = 1024 * 1024
# Shorter runs of base64 lines are fed as they are.
MIN_RUN = 64 * 1024
_FEED_SLICE = 64 * 1024
_DECODE_SLICE = 1024 * 1024

# A run of whole lines of the base64 alphabet (possessive: no backtracking stack).
_RUN = re.compile(rb"(?m)^(?:[A-Za-z0-9+/=]++\r?\n)++")
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/\r\n]*")
_PADDING_TEXT = re.compile(r"=[\r\n]*(?:=[\r\n]*)?")
_PADDING_BYTES = re.compile(rb"=[\r\n]*(?:=[\r\n]*)?")


@dataclass(frozen=True)
class Runs:
    """The runs of base64 lines cut out of a mail, and the placeholders that stand for them."""

    raw: bytes = b""
    spans: tuple[tuple[int, int], ...] = ()
    prefix: str = ""
    # Smaller base64 payloads are left to the stdlib's decoder.
    min_run: int = MIN_RUN

    def _token(self) -> re.Pattern[str]:
        # The placeholder and, when the parser left it there, the line end it was fed with.
        return re.compile(re.escape(self.prefix) + r"([0-9]{8})(\r?\n)?")

    def _span(self, match: re.Match[str]) -> tuple[int, int]:
        """The raw bytes a placeholder stands for (without the line end the parser took)."""
        start, end = self.spans[int(match.group(1))]
        if not match.group(2):
            end -= 2 if self.raw[end - 2:end] == b"\r\n" else 1
        return start, end

    def splice(self, root: Message) -> None:
        """Put the runs back into every payload, preamble and epilogue under ``root``."""
        if not self.spans:
            return
        stack = [root]
        while stack:
            part = stack.pop()
            payload = _payload(part)
            if isinstance(payload, list):
                stack.extend(p for p in payload if isinstance(p, Message))
            elif isinstance(payload, str):
                _set_payload(part, self._text(payload))
            for attr in ("preamble", "epilogue"):
                value = getattr(part, attr)
                if isinstance(value, str):
                    setattr(part, attr, self._text(value))

    def _text(self, value: str) -> str:
        """``value`` with every placeholder replaced by its run (one copy at most)."""
        if self.prefix not in value:
            return value
        view = memoryview(self.raw)
        pieces: list[str] = []
        pos = 0
        for match in self._token().finditer(value):
            start, end = self._span(match)
            pieces.append(value[pos:match.start()])
            pieces.append(str(view[start:end], "ascii"))
            pos = match.end()
        pieces.append(value[pos:])
        if len(pieces) == 3 and not pieces[0] and not pieces[2]:
            return pieces[1]
        return "".join(pieces)

    def decoded_payload(self, part: Message) -> bytes | str | None:
        """``part.get_payload(decode=True)`` of the spliced part, without its copies.

        A base64 part that is one clean run is decoded from the raw bytes; any
        other part gets its runs back first.
        """
        payload = _payload(part)
        if not isinstance(payload, str):
            return _stdlib_decoded(part)
        base64 = str(part.get("content-transfer-encoding", "")).lower() == "base64"
        if self.spans and self.prefix in payload:
            match = self._token().fullmatch(payload)
            if base64 and match is not None:
                start, end = self._span(match)
                data = _clean_base64(self.raw, start, end)
                if data is not None:
                    return data
            payload = self._text(payload)
            _set_payload(part, payload)
        if base64 and len(payload) >= self.min_run:
            data = _clean_base64(payload, 0, len(payload))
            if data is not None:
                return data
        return _stdlib_decoded(part)


def _payload(part: Message) -> object:
    """A part's payload as stored: ``get_payload()`` would copy a big str (surrogate check)."""
    return vars(part)["_payload"]


def _set_payload(part: Message, payload: str) -> None:
    """Store a payload as the parser does (``set_payload()`` would also reset the charset)."""
    vars(part)["_payload"] = payload


def _stdlib_decoded(part: Message) -> bytes | str | None:
    return cast("bytes | str | None", part.get_payload(decode=True))


def parse_tree(
    raw: bytes, *, lean_from: int = LEAN_FROM, min_run: int = MIN_RUN
) -> tuple[Message, Runs]:
    """The compat32 tree of ``raw`` with placeholders for long base64 runs, and those runs.

    After ``runs.splice(tree)`` the tree equals ``BytesParser().parsebytes(raw)``.
    Runs are cut from mails of ``lean_from`` bytes or more, if ``min_run`` bytes long.
    """
    parser = BytesFeedParser(policy=email.policy.compat32)
    spans = tuple(
        m.span() for m in (_RUN.finditer(raw) if len(raw) >= lean_from else ())
        if m.end() - m.start() >= min_run
    )
    if not spans:
        _feed(parser, raw, 0, len(raw))
        return parser.close(), Runs(min_run=min_run)
    prefix = _token_prefix(raw)
    pos = 0
    for index, (start, end) in enumerate(spans):
        _feed(parser, raw, pos, start)
        ending = b"\r\n" if raw[end - 2:end] == b"\r\n" else b"\n"
        parser.feed(f"{prefix}{index:08d}".encode() + ending)
        pos = end
    _feed(parser, raw, pos, len(raw))
    return parser.close(), Runs(raw, spans, prefix, min_run)


def _feed(parser: BytesFeedParser, raw: bytes, start: int, end: int) -> None:
    for pos in range(start, end, _FEED_SLICE):
        parser.feed(raw[pos:min(pos + _FEED_SLICE, end)])


def _token_prefix(raw: bytes) -> str:
    """A placeholder prefix (base64 alphabet only) that occurs nowhere in ``raw``."""
    while True:
        prefix = "mailticketrun" + secrets.token_hex(8)
        if prefix.encode() not in raw:
            return prefix


def _clean_base64(source: str | bytes, start: int, end: int) -> bytes | None:
    """The decoded bytes of base64 ``source[start:end]`` if it needs no repair, else None.

    Clean means: only the alphabet and line ends, at most two ``=`` at the end
    and a multiple of four characters. For that, the stdlib's strict decode of
    the joined lines and this decode in slices of four characters agree.
    """
    if isinstance(source, str):
        pad_at = source.find("=", start, end)
        if not _BASE64_TEXT.fullmatch(source, start, end if pad_at < 0 else pad_at):
            return None
        padding_ok = pad_at < 0 or bool(_PADDING_TEXT.fullmatch(source, pad_at, end))
        breaks = source.count("\r", start, end) + source.count("\n", start, end)
    else:
        # A run holds only the alphabet and line ends (see _RUN).
        pad_at = source.find(b"=", start, end)
        padding_ok = pad_at < 0 or bool(_PADDING_BYTES.fullmatch(source, pad_at, end))
        breaks = source.count(b"\r", start, end) + source.count(b"\n", start, end)
    if not padding_ok or (end - start - breaks) % 4:
        return None
    out = io.BytesIO()
    carry = b""
    for pos in range(start, end, _DECODE_SLICE):
        piece = source[pos:min(pos + _DECODE_SLICE, end)]
        chunk = carry + (piece.encode("ascii") if isinstance(piece, str) else piece)
        chunk = chunk.replace(b"\r", b"").replace(b"\n", b"")
        whole = len(chunk) - len(chunk) % 4
        out.write(binascii.a2b_base64(memoryview(chunk)[:whole]))
        carry = chunk[whole:]
    return out.getvalue()
