"""One signed-token scheme for every address we hand out and later trust.

Reply tokens, rating links and VERP return paths are all the same thing: a few
integers in clear, then a truncated HMAC-SHA256 that binds them, so a token
can be checked without a database row and nobody can make one by guessing.
One construction keeps them from drifting apart (SECURITY.md R1.1, R3.4):

* the MAC input is ``<purpose>|v1|<field>|<field>…`` with the purpose name
  first, so a token of one purpose never verifies as another even though all
  share ``mail.reply_token_secret``;
* a purpose may bind one value the token does not show (the engineer of a
  reply token), which the verifier must supply;
* the MAC is lower-case base32 (MTAs and clients fold case), cut to the
  purpose's length, and compared with :func:`hmac.compare_digest`.

Compatibility: these are exactly the token formats and MAC inputs the separate
reply-token, VERP and rating code used before this module existed, byte for
byte (tests/unit/test_signed.py pins known tokens). Reply tokens (valid 90
days) and VERP paths of rows still in the outbox therefore keep verifying
across the upgrade with no transition period. A change to any of them needs a
new version tag in the MAC input and a period in which the old one is accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

# In ``Purpose.mac_order``: where the bound value (not in the token) goes.
BOUND = -1


@dataclass(frozen=True)
class Purpose:
    """What one kind of token looks like and what its MAC binds."""

    # First field of the MAC input; never reuse one for a different layout.
    name: str
    # What the token starts with; the clear fields follow, joined by "-".
    tag: str
    # A regex per clear field, without groups (ASCII digits: each field is an integer).
    fields: tuple[str, ...]
    mac_chars: int
    # The MAC input after ``name|v1``: clear-field indexes and BOUND, in order.
    # None means the clear fields in token order and no bound value.
    mac_order: tuple[int, ...] | None = None

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """The whole token: tag, clear fields and MAC."""
        parts = [f"({f})" for f in self.fields]
        return re.compile(
            re.escape(self.tag) + "-".join(parts) + rf"-([a-z2-7]{{{self.mac_chars}}})"
        )

    @property
    def binds_value(self) -> bool:
        """Whether the verifier must supply a value the token does not show."""
        return self.mac_order is not None and BOUND in self.mac_order


# Reply-To of an engineer notice: key id, ticket, issue day; the engineer is bound.
# 130 bits of MAC (26 characters): at least 128 (SECURITY.md R1.1).
REPLY = Purpose(
    "reply", "r", (r"[0-9]{1,3}", r"[0-9]{1,12}", r"[0-9]{1,6}"), 26, mac_order=(1, BOUND, 2, 0)
)
# A rating link: ticket and score. It can only rate, once a ticket is resolved.
RATE = Purpose("rate", "rate-", (r"[0-9]{1,12}", r"[1-5]"), 16)
# The envelope sender of one outbox row; 80 bits only tie a bounce to its row.
BOUNCE = Purpose("verp", "b-", (r"[0-9]{1,18}",), 16)


@dataclass(frozen=True)
class Signed:
    """A decoded token: its clear fields and its MAC, not yet verified."""

    fields: tuple[int, ...]
    mac: str


def _message(purpose: Purpose, fields: Sequence[int], bound: str | None) -> str:
    if purpose.binds_value != (bound is not None):
        raise ValueError(f"{purpose.name} tokens {'need' if purpose.binds_value else 'take no'} "
                         "bound value")
    order = purpose.mac_order if purpose.mac_order is not None else range(len(fields))
    parts = [(bound or "") if i == BOUND else str(fields[i]) for i in order]
    return "|".join([purpose.name, "v1", *parts])


def mac(purpose: Purpose, fields: Sequence[int], secret: str, bound: str | None = None) -> str:
    """The MAC of ``fields`` (and ``bound``) for ``purpose``."""
    message = _message(purpose, fields, bound).encode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[: purpose.mac_chars]


def sign(purpose: Purpose, fields: Sequence[int], secret: str, bound: str | None = None) -> str:
    """The token ``<tag><field>-…-<mac>``; a field that its pattern refuses is a ValueError."""
    if len(fields) != len(purpose.fields):
        raise ValueError(f"{purpose.name} tokens have {len(purpose.fields)} fields")
    clear = [str(f) for f in fields]
    for value, pattern in zip(clear, purpose.fields, strict=True):
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{purpose.name} token field {value} does not match {pattern}")
    return purpose.tag + "-".join(clear) + "-" + mac(purpose, fields, secret, bound)


def decode(purpose: Purpose, token: str) -> Signed | None:
    """The clear fields and MAC of a token of ``purpose`` (any case), or None if not one."""
    match = purpose.pattern.fullmatch(token.strip().lower())
    if match is None:
        return None
    *fields, token_mac = match.groups()
    return Signed(tuple(int(f) for f in fields), token_mac)


def mac_matches(
    purpose: Purpose, signed: Signed, secret: str, bound: str | None = None
) -> bool:
    """Whether ``signed`` carries the right MAC, compared in constant time."""
    return hmac.compare_digest(mac(purpose, signed.fields, secret, bound), signed.mac)


def verify(
    purpose: Purpose, token: str, secret: str, bound: str | None = None
) -> tuple[int, ...] | None:
    """The clear fields of a genuine token of ``purpose``; None for anything else."""
    signed = decode(purpose, token)
    if signed is None or not mac_matches(purpose, signed, secret, bound):
        return None
    return signed.fields
