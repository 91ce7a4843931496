"""Transfer encodings the stdlib gives up on: broken base64 and uuencode.

``Message.get_payload(decode=True)`` hands back the still-encoded bytes when
base64 has a length no padding can fix (4n+1 characters) and when a uuencoded
body is malformed (a blank line before ``end``, a line its length byte
contradicts), and it never looks for uuencoded files inside text/plain.
Support mail from old clients and scripts has all three, so these decoders
salvage what can be read and the caller records a defect. They run only after
the stdlib's decode has reported a problem or the text holds a ``begin`` line.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
# One padded group of base64 (mailers concatenate separately padded blocks).
_BASE64_GROUP = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
# A uuencoded file: "begin <octal mode> <name>" ... "end" (POSIX uuencode).
_UU_BLOCK = re.compile(
    rb"(?m)^begin[ \t]+[0-7]{3,4}[ \t]+([^\r\n]+?)[ \t]*\r?\n(.*?)^end[ \t]*(?:\r?\n|\Z)(?:[ \t]*\r?\n)?",
    re.DOTALL,
)
_UU_BEGIN = re.compile(rb"(?m)^begin[ \t]+[0-7]{3,4}[ \t]+\S")


def lenient_base64(encoded: bytes) -> bytes:
    """Decode base64 whatever its padding, stray characters or dangling character.

    Characters outside the alphabet are dropped; each padded group is decoded
    on its own; a group of 4n+1 characters loses its last, undecodable one.
    """
    out = bytearray()
    for group in _BASE64_GROUP.findall(_NOT_BASE64.sub(b"", encoded)):
        data = group.rstrip(b"=")
        if len(data) % 4 == 1:
            data = data[:-1]
        if data:
            out += binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    return bytes(out)


def _uu_line(line: bytes) -> bytes:
    """One uuencoded line; a line cut short or padded wrongly keeps what it holds."""
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        # The length byte says how many bytes follow (Fredrik Lundh's workaround,
        # as the stdlib does), and a stripped trailing space is put back.
        nbytes = (((line[0] - 32) & 63) * 4 + 5) // 3
        try:
            return binascii.a2b_uu(line[:nbytes].ljust(nbytes))
        except binascii.Error:
            return b""


def uudecode_lines(body: bytes) -> bytes:
    """The bytes of uuencoded lines (without ``begin``/``end``); bad lines are skipped."""
    out = bytearray()
    for line in body.splitlines():
        if line.strip() and line.strip() != b"`":
            out += _uu_line(line.rstrip(b"\r\n"))
    return bytes(out)


@dataclass(frozen=True)
class UuFile:
    """One uuencoded file found in a text body."""

    name: bytes  # as written after "begin <mode>", not yet decoded
    data: bytes


def lenient_uudecode(payload: bytes) -> bytes | None:
    """The file of a ``Content-Transfer-Encoding: x-uuencode`` body, or None without ``begin``."""
    match = _UU_BLOCK.search(payload)
    if match is not None:
        return uudecode_lines(match.group(2))
    begin = _UU_BEGIN.search(payload)
    if begin is None:
        return None
    # No "end" line: the mail was cut; decode what arrived.
    return uudecode_lines(payload[payload.index(b"\n", begin.start()) + 1 :])


def split_uu_files(data: bytes) -> tuple[bytes, list[UuFile]] | None:
    """Text bytes without their uuencoded blocks, and the files; None if there are none."""
    if b"begin " not in data or not _UU_BEGIN.search(data):
        return None
    files = [
        UuFile(match.group(1), uudecode_lines(match.group(2)))
        for match in _UU_BLOCK.finditer(data)
    ]
    if not files:
        return None
    return _UU_BLOCK.sub(b"", data), files
