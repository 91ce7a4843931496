"""Address headers (From, To, Cc, Reply-To) read strictly from their raw values.

Addresses are split before encoded words are decoded, so an encoded comma or
``<`` in a display name cannot smuggle in an extra address (CVE-2023-27043).
"""

from __future__ import annotations

import email.utils
import re

from mailticket.mail.charsets import decode_header_value
from mailticket.mail.inbound import MAX_ADDRESSES
from mailticket.mail.mime import FOLD

_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,64}\?[bBqQ]\?[^?\s]{0,2000}\?=")
_ANGLE_ADDR = re.compile(r"([^<>]*)<([^<>]*)>\s*", re.DOTALL)
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf'{_ATEXT}(?:\.{_ATEXT})*|"(?:[^"\\\r\n]|\\.)*"')
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_DOMAIN_LITERAL = re.compile(r"\[[A-Za-z0-9.:]+\]")
_DAEMON_LOCAL = re.compile(
    r"(?i)^(mailer[-_]?daemon|postmaster|mail[-_]?delivery[-_]?(?:sub)?system)$"
)
# getaddresses grew strict parsing against CVE-2023-27043 in 3.13 (and late
# 3.11/3.12 patch releases); split_address_list guards older ones.
_STRICT: dict[str, bool] = (
    {"strict": True} if getattr(email.utils, "supports_strict_parsing", False) else {}
)


def split_address_list(value: str) -> list[str] | None:
    """Top-level comma-separated segments of an address header; None if unbalanced.

    Group syntax (``name: a, b;``) is flattened. Refusing unbalanced quotes,
    comments and brackets outright is what keeps a parser confusion such as
    CVE-2023-27043 (``alice@x)<bob@y>``) from producing a smuggled address.
    """
    segments: list[str] = []
    buf: list[str] = []
    parens = 0
    quoted = angle = escaped = False
    skip_to = 0
    for index, ch in enumerate(value):
        if index < skip_to:
            continue
        word = _ENCODED_WORD.match(value, index) if ch == "=" and not (quoted or parens) else None
        if word is not None:
            # An encoded word is one atom: a ":" or "," inside it (which RFC 2047
            # forbids in a phrase, and attackers use) must not end a name or address.
            buf.append(word.group())
            skip_to = word.end()
            continue
        if escaped:
            escaped = False
        elif ch == "\\" and (quoted or parens):
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif parens:
            parens += {"(": 1, ")": -1}.get(ch, 0)
        elif ch == '"':
            quoted = True
        elif ch == "(":
            parens = 1
        elif ch in ")>" and not (ch == ">" and angle):
            return None
        elif ch == "<":
            if angle:
                return None
            angle = True
        elif ch == ">":
            angle = False
        elif ch in ",:;" and not angle:
            # A group's display name ends at ":" and is not an address.
            if ch != ":":
                segments.append("".join(buf))
            buf = []
            if len(segments) > MAX_ADDRESSES:
                return [s.strip() for s in segments if s.strip()]
            continue
        buf.append(ch)
    if quoted or parens or angle:
        return None
    segments.append("".join(buf))
    return [s.strip() for s in segments if s.strip()]


def addr_spec(addr: str) -> str | None:
    """``addr`` lower-cased with an IDNA domain if it is a strict addr-spec, else None."""
    local, at, domain = addr.strip().rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local):
        return None
    domain = domain.rstrip(".")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if not (_DOMAIN.fullmatch(domain) or _DOMAIN_LITERAL.fullmatch(domain)):
        return None
    result = f"{local}@{domain}".lower()
    return result if len(result) <= 254 else None


def parse_addresses(
    values: list[str], label: str, hint: str | None, defects: list[str]
) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs from raw header values, at most MAX_ADDRESSES."""
    result: list[tuple[str, str]] = []
    for value in values:
        segments = split_address_list(FOLD.sub("", value))
        if segments is None:
            defects.append(f"unbalanced quotes, comments or brackets in {label}; ignored")
            continue
        for segment in segments:
            if len(result) >= MAX_ADDRESSES:
                defects.append(f"{label} cut to the first {MAX_ADDRESSES} addresses")
                return result
            pairs = email.utils.getaddresses([segment], **_STRICT)
            name, addr = pairs[0] if len(pairs) == 1 else ("", "")
            clean = addr_spec(addr) if addr else None
            angle = _ANGLE_ADDR.fullmatch(segment) if clean is None else None
            if angle is not None and _ENCODED_WORD.search(angle.group(1)):
                # The stdlib cannot read a display name whose encoded words hold
                # specials; the splitter has checked the brackets, so take <addr>.
                name, clean = angle.group(1).strip().strip('"'), addr_spec(angle.group(2))
            if clean is None:
                defects.append(f"invalid address in {label}: {segment[:80]!r}")
                continue
            result.append((decode_header_value(name, hint), clean))
    return result


def is_daemon_address(address: str) -> bool:
    """Whether ``address`` is a mail system's own (mailer-daemon, postmaster, ...)."""
    return bool(_DAEMON_LOCAL.match(address.partition("@")[0]))


_BRACKETED = re.compile(r"<\s*([^<>\s]+@[^<>\s]+?)\s*>")
_BARE_ADDR = re.compile(r"[^\s<>()\[\],;:\"]+@[A-Za-z0-9.-]+")
# Display-name text that must never supply an address: encoded words, quotes, comments.
_NAME_TEXT = re.compile(r'=\?[^?\s]{1,64}\?[bBqQ]\?[^?\s]{0,2000}\?=|"[^"]*"?|\([^()]*\)?')


def salvage_address(values: list[str]) -> str | None:
    """The best addr-spec in header values too broken to parse strictly, or None.

    Unbalanced brackets, a bare display name or two addresses glued together
    leave :func:`parse_addresses` nothing; an address in angle brackets is the
    mailbox by convention, otherwise the first strict addr-spec in the text.
    Encoded words are not decoded first, so a display name cannot supply it.
    """
    for value in values:
        text = _NAME_TEXT.sub(" ", FOLD.sub("", value))
        for pattern in (_BRACKETED, _BARE_ADDR):
            for match in pattern.finditer(text):
                clean = addr_spec(match.group(match.lastindex or 0))
                if clean is not None:
                    return clean
    return None
