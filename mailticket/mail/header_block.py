"""Repair a broken header block on the raw bytes, before the stdlib parser sees it.

The feed parser ends the header block at the first line that is no header:
a bare CR (it splits lines on CR, LF and CRLF alike), a continuation line a
mailer forgot to indent, a stray word or a quoted mbox ``>From`` line before
the first header. Everything after it becomes body text, so the Message-ID
is lost and the same mail delivered twice makes two tickets (issue 18).

:func:`repair_header_block` recovers the headers as far as they go and
records each repair: a bare CR or LF inside a header is folded as whitespace
(or, when a header name follows it, taken as the line end it was meant to
be) and never ends the block; an unindented line between two headers is a
continuation; junk lines before the first header are dropped. A line that is
followed by no header starts the body, as before. Well-formed mail (nearly
all of it) costs two regex searches over the header block.
"""

from __future__ import annotations

import re

# A header line as the stdlib feed parser sees it (email.feedparser.headerRE),
# or a continuation, or an mbox From_ line (the parser handles those itself).
_HEADER_LINE = re.compile(rb"(From |[\041-\071\073-\176]*:|[\t ])")
_FIELD_START = re.compile(rb"[\041-\071\073-\176]+:")
# A line (after a LF) that is neither a header, a continuation nor From_.
# (The name run is possessive: the line is odd when it does not end in ":".)
_ODD_LINE = re.compile(rb"\n(?![\t ]|From )(?=[\041-\071\073-\176]*+[^:])")
# Repairs stop this far in; the parser's own limits apply after them.
_MAX_BLOCK = 256 * 1024
# At most this many junk lines before the first header are dropped.
_MAX_JUNK = 3


def _block(raw: bytes) -> bytes:
    """The header block: up to and including the line end before the first empty line."""
    if raw.startswith((b"\n", b"\r\n")):
        return b""
    # Two finds, not one regex search: this runs on every mail. The style of
    # the first line end goes first, so the other find stops at its answer.
    first = raw.find(b"\n", 0, _MAX_BLOCK)
    styles = (b"\n\r\n", b"\n\n") if raw[first - 1 : first] == b"\r" else (b"\n\n", b"\n\r\n")
    end = raw.find(styles[0], 0, _MAX_BLOCK)
    other = raw.find(styles[1], 0, end + 2 if end >= 0 else _MAX_BLOCK)
    if other >= 0 and (end < 0 or other < end):
        end = other
    return raw[: end + 1] if end >= 0 else raw[:_MAX_BLOCK]


def repair_header_block(raw: bytes) -> tuple[bytes, list[str]]:
    """``raw`` with its header block repaired, and what was repaired (empty if nothing)."""
    block = _block(raw)
    # The block's own line end is the one most of its lines use.
    pairs, lfs, crs = block.count(b"\r\n"), block.count(b"\n"), block.count(b"\r")
    crlf = pairs * 2 > lfs
    bare = crs != pairs or (crlf and lfs != pairs)
    first_odd = not _HEADER_LINE.match(block) and bool(block)
    if not bare and not first_odd and not _ODD_LINE.search(block, 0, max(len(block) - 1, 0)):
        return raw, []
    defects: list[str] = []
    eol = b"\r\n" if crlf else b"\n"
    text = block[: -len(eol)] if block.endswith(eol) else block
    if bare:
        text = _fold_bare(text, eol, defects)
    lines = text.split(eol)
    kept = _recover_lines(lines, defects)
    if not defects:
        return raw, []
    fixed = eol.join(kept) + (eol if block.endswith(eol) else b"")
    return fixed + raw[len(block) :], defects


def _fold_bare(text: bytes, eol: bytes, defects: list[str]) -> bytes:
    """Bare CR and LF (not the block's line end) as whitespace, or a line end before a field."""
    pieces = re.split(rb"(\r\n|\r|\n)", text)
    out = bytearray(pieces[0])
    for index in range(1, len(pieces), 2):
        brk, following = pieces[index], pieces[index + 1]
        kind = "CR" if brk == b"\r" else "LF"
        if brk == eol:
            out += brk
        elif _FIELD_START.match(following) or following[:1] in (b" ", b"\t"):
            defects.append(f"bare {kind} in the header block read as a line end")
            out += eol
        else:
            defects.append(f"bare {kind} in a header folded as whitespace")
            out += b" "
        out += following
    return bytes(out)


def _recover_lines(lines: list[bytes], defects: list[str]) -> list[bytes]:
    """Header lines with junk before the first header dropped and unindented continuations folded.

    Only a few junk lines directly followed by a header field are dropped, and
    only a line between two headers is folded: a mail without headers or
    without the empty line keeps its body text.
    """
    junk = 0
    while junk < min(len(lines), _MAX_JUNK + 1) and not _FIELD_START.match(lines[junk]):
        if lines[junk].startswith(b"From ") and junk == 0:
            break  # the mbox From_ line: the parser takes it as the envelope
        junk += 1
    if 0 < junk <= _MAX_JUNK and junk < len(lines):
        for line in lines[:junk]:
            shown = line[:60].decode("ascii", "replace")
            defects.append(f"junk before the first header dropped: {shown!r}")
        lines = lines[junk:]
    kept: list[bytes] = []
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else b""
        if index and not _HEADER_LINE.match(line) and _FIELD_START.match(following):
            shown = line[:60].decode("ascii", "replace")
            defects.append(f"unindented header continuation folded: {shown!r}")
            line = b" " + line
        elif index and not _HEADER_LINE.match(line):
            # Nothing header-like follows: the body starts here, as the parser decides.
            kept.extend(lines[index:])
            break
        kept.append(line)
    return kept
