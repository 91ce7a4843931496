"""aiosmtpd's two hot paths, done faster under exactly the same rules: DATA and address parsing.

Why this exists: under load most of the listener's CPU per message went to
two places in aiosmtpd 1.4.6. Its address parser for MAIL and RCPT defines a
class on every call and runs the email package's full header parser; here
the common ``<dot-atom@domain> PARAMS`` shape is read by one regular
expression and anything else goes to that same parser (cached), with the
same answer either way. And it reads DATA one line at a time, keeping every
line as its own ``bytearray`` until the end. For an ordinary mail that is a
few hundred Python-level reads (most of the listener's CPU per message under
load), and for a 25 MB attachment (about 440,000 base64 lines) it holds the
body about three times over: the per-line objects weigh more than the bytes
themselves, and then they are joined. Here the body is taken from the
stream's buffer in the chunks the socket delivered, and checked once at the
end with C-speed searches.

The rules are aiosmtpd's (the SMTP-smuggling fix of 1.4.5 included), so a
message is split, refused or accepted exactly as before:

* the body ends at the first line that is exactly ``.`` — the first
  ``CRLF . CRLF`` in the stream, or ``. CRLF`` as the very first line; a lone
  ``LF`` or ``CR`` never ends a line;
* a line of more than ``line_length_limit`` octets with its ``CRLF`` makes the
  answer ``500``; more than ``data_size_limit`` octets in all makes it ``552``
  (whichever aiosmtpd would have noticed first); the rest is still read up to
  the end of data, and nothing is kept;
* one leading dot is removed from every line that starts with a dot.

It needs the private buffer of ``asyncio.StreamReader`` (aiosmtpd itself
touches it); :func:`bulk_supported` says whether it is there, and the caller
falls back to aiosmtpd's own reader when it is not.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import re
from dataclasses import dataclass
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP

END = b"\r\n.\r\n"
FIRST_LINE_END = b".\r\n"
CRLF = b"\r\n"
# Never take the last len(END) - 1 bytes of the buffer before the end of data
# is found: an END that starts in them may still be arriving.
KEEP = len(END) - 1


class DataState(enum.Enum):
    """How reading the body went (aiosmtpd's ``_DataState``)."""

    NOMINAL = "nominal"
    TOO_LONG = "too_long"
    TOO_MUCH = "too_much"


@dataclass(frozen=True)
class Body:
    """The unstuffed body when ``state`` is NOMINAL, else empty."""

    state: DataState
    content: bytes


def bulk_supported(reader: Any) -> bool:
    """Whether ``reader`` has the StreamReader internals :func:`read_body` relies on."""
    return (
        isinstance(getattr(reader, "_buffer", None), bytearray)
        and callable(getattr(reader, "_wait_for_data", None))
        and callable(getattr(reader, "_maybe_resume_transport", None))
        and hasattr(reader, "_eof")
        and hasattr(reader, "_exception")
    )


async def read_body(
    reader: asyncio.StreamReader, data_size_limit: int | None, line_length_limit: int
) -> Body:
    """Read up to and including the end-of-data line; raises IncompleteReadError on EOF first."""
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    # Bytes we keep: everything while within the size limit, plus enough past it
    # to tell which of the two limits aiosmtpd would have hit first.
    keep_limit = (data_size_limit + line_length_limit + 2) if data_size_limit else None
    chunks: list[bytes] = []
    kept = 0
    total = 0
    first = True
    while True:
        if reader._exception is not None:  # type: ignore[attr-defined]
            raise reader._exception  # type: ignore[attr-defined]
        end = -1
        take = 0
        if first and len(buffer) >= len(FIRST_LINE_END):
            first = False
            if buffer.startswith(FIRST_LINE_END):
                end, take = 0, len(FIRST_LINE_END)
        elif first and not FIRST_LINE_END.startswith(bytes(buffer)):
            first = False
        if end < 0 and not first:
            found = buffer.find(END)
            if found >= 0:
                # The CRLF before the dot ends the body's last line.
                end, take = found + len(CRLF), found + len(END)
        if end >= 0:
            chunk = bytes(buffer[:end])
            del buffer[:take]
        elif not first and len(buffer) > KEEP:
            chunk = bytes(buffer[: len(buffer) - KEEP])
            del buffer[: len(chunk)]
        else:
            chunk = b""
        if chunk:
            total += len(chunk)
            if keep_limit is None or kept <= keep_limit:
                chunks.append(chunk)
                kept += len(chunk)
        reader._maybe_resume_transport()  # type: ignore[attr-defined]
        if end >= 0:
            break
        if reader._eof:  # type: ignore[attr-defined]
            raise asyncio.IncompleteReadError(bytes(buffer), None)
        await reader._wait_for_data("read_body")  # type: ignore[attr-defined]
    raw = b"".join(chunks)
    del chunks
    state = _state(raw, total, data_size_limit, line_length_limit)
    if state is not DataState.NOMINAL:
        return Body(state, b"")
    return Body(state, unstuff(raw))


def unstuff(raw: bytes) -> bytes:
    """Remove one leading dot from every line (RFC 5321 §4.5.2)."""
    if raw.startswith(b"."):
        raw = raw[1:]
    if b"\r\n." in raw:
        raw = raw.replace(b"\r\n.", b"\r\n")
    return raw


# Bodies are checked for long lines in windows of about this size (cut after a
# LF), so the split never holds more than one window's lines at a time.
WINDOW = 1 << 20


def first_long_line(raw: bytes, line_length_limit: int) -> tuple[int, int] | None:
    """(start, length without CRLF) of the first line over the limit, or None.

    Lines are split at CRLF only, as aiosmtpd does; a line is too long when it
    is more than ``line_length_limit`` octets with its CRLF. A final line with
    no CRLF (a truncated prefix) counts by its length so far.
    """
    most = line_length_limit - len(CRLF)
    if raw.count(b"\n") != raw.count(CRLF):
        # A bare LF is line content: walk the CRLFs (rare, and hostile mail).
        return _scan(raw, most, 0)
    # Every LF ends a CRLF, so each LF-separated piece is one line plus its CR
    # (the last piece: a line not ended yet, which only a cut prefix has, and
    # then it is long enough to count), and split() runs at C speed.
    start = 0
    while start < len(raw):
        cut = raw.find(b"\n", min(start + WINDOW, len(raw)))
        stop = len(raw) if cut < 0 else cut + 1
        if max(map(len, raw[start:stop].split(b"\n"))) > most + 1:
            return _scan(raw, most, start)
        start = stop
    return None


def _scan(raw: bytes, most: int, start: int) -> tuple[int, int] | None:
    while start < len(raw):
        stop = raw.find(CRLF, start)
        length = (len(raw) if stop < 0 else stop) - start
        if length > most:
            return start, length
        if stop < 0:
            return None
        start = stop + len(CRLF)
    return None


def _state(raw: bytes, total: int, size_limit: int | None, line_limit: int) -> DataState:
    """Which refusal aiosmtpd would have given for this body (``raw`` may be a prefix)."""
    long_line = first_long_line(raw, line_limit)
    too_much = bool(size_limit) and total > (size_limit or 0)
    if long_line is None:
        return DataState.TOO_MUCH if too_much else DataState.NOMINAL
    if not too_much:
        return DataState.TOO_LONG
    assert size_limit is not None
    start, length = long_line
    end = start + length + len(CRLF)
    # aiosmtpd checks the running size at each line end and the line length when
    # the line is complete, except that a line past the stream limit (limit + 1
    # octets without CRLF) is refused before any of it is counted.
    if end <= size_limit:
        return DataState.TOO_LONG
    if start > size_limit:
        return DataState.TOO_MUCH
    return DataState.TOO_LONG if length > line_limit else DataState.TOO_MUCH


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# <dot-atom@dot-atom> and what follows: the shape of nearly every MAIL/RCPT.
# The email parser reads exactly this text as the address and, after any
# spaces or tabs, the rest as the parameters; anything else (quotes, comments,
# routes, literals) goes through the parser itself.
_SIMPLE = re.compile(
    rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*(?![ \t(])(.*)",
    re.DOTALL,
)


def parse_address(arg: str, local_part_limit: int) -> tuple[str | None, str | None]:
    """aiosmtpd's ``SMTP._getaddr``: (address, rest of the line), (None, None) if malformed."""
    simple = _SIMPLE.fullmatch(arg)
    if simple is None:
        return _parse_address(arg, local_part_limit)
    addr, rest = simple[1], simple[2]
    if local_part_limit and len(addr.rpartition("@")[0]) > local_part_limit:
        return None, None
    return addr, rest


@functools.lru_cache(maxsize=1024)
def _parse_address(arg: str, local_part_limit: int) -> tuple[str | None, str | None]:
    """The email package's parse, as aiosmtpd 1.4.6 does it."""
    if not arg:
        return "", ""
    address: Any
    try:
        if arg.lstrip().startswith("<"):
            address, rest = get_angle_addr(arg)
        else:
            address, rest = get_addr_spec(arg)
    except HeaderParseError:
        return None, None
    addr: str = address.addr_spec
    localpart, _, _ = addr.rpartition("@")
    if local_part_limit and len(localpart) > local_part_limit:
        return None, None
    return addr, rest


class FastSMTP(SMTP):
    """aiosmtpd's SMTP with the cached address parser and the bulk DATA reader.

    Everything around the reading is aiosmtpd 1.4.6's ``smtp_DATA``; a
    configuration it does not cover (``decode_data``, a handler without
    ``handle_DATA``, a reader without the internals) uses aiosmtpd's own.
    """

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        return parse_address(arg, self.local_part_limit)

    async def smtp_DATA(self, arg: str) -> None:
        """DATA: 354, read the body, then the handler's reply (or 500/552)."""
        if (
            self._decode_data
            or "DATA" not in self._handle_hooks
            or not bulk_supported(self._reader)
        ):
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            body = await read_body(self._reader, self.data_size_limit, self.line_length_limit)
        except asyncio.CancelledError:
            # The connection was reset during DATA (aiosmtpd cancels this coroutine).
            self._writer.close()
            raise
        except asyncio.IncompleteReadError:
            self._writer.close()
            return
        if body.state is DataState.TOO_LONG:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        if body.state is DataState.TOO_MUCH:
            await self.push("552 Error: Too much mail data")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        self.envelope.content = body.content
        self.envelope.original_content = body.content
        del body
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)
