"""Our address grammar: support addresses, plus-addressed signed tokens, VERP return paths.

Encode and decode only; nothing here touches the database.

Three kinds of ``+detail`` ride on a support address (SECURITY.md R1.1, R3.4),
all signed by the one scheme in :mod:`mailticket.mail.signed`:

* a **reply token** ``support+r<key>-<ticket>-<day>-<mac>@domain`` in the
  ``Reply-To`` of every notice to an engineer. The ticket id, the issue day
  (days since 1970-01-01) and the key id are in clear; the engineer is not,
  because a notice could be forwarded and the address should not leak who got
  it. The MAC binds all of them, so the verifier must be told which engineer to
  check (the ``From:`` of the reply) and a token is worthless to anyone else;
* a **rating link** ``support+rate-<ticket>-<score>-<mac>@domain`` in the
  ``mailto:`` links of a rating request, so nobody rates by guessing addresses;
* a **VERP tag** ``support+b-<outbox id>-<mac>@domain`` as the envelope sender of
  each outgoing mail, so a bounce names the outbox row it belongs to and a
  forged bounce with a wrong MAC is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from mailticket.mail import signed

# RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
MAX_LOCAL_PART = 64
_EPOCH = date(1970, 1, 1)


def split_address(address: str) -> tuple[str, str]:
    """``Local@Domain`` → (local, domain lower-cased); no ``@`` gives an empty domain."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    if not local:
        return domain, ""
    return local, domain.lower()


def base_address(address: str) -> str:
    """The address without its ``+detail`` part, lower-cased: ``support+x@d`` → ``support@d``."""
    local, domain = split_address(address)
    return f"{local.split('+', 1)[0].lower()}@{domain}"


def is_our_address(address: str, support_addresses: tuple[str, ...]) -> bool:
    """Whether ``address`` (with or without a ``+token``) is one of our support addresses."""
    ours = {a.lower() for a in support_addresses}
    return base_address(address) in ours


def normalise_domain(domain: str) -> str:
    """A domain lower-cased and IDNA-encoded (``пример.рф`` → ``xn--e1afmkfd.xn--p1ai``).

    Identity decisions compare this form only, so a Unicode look-alike domain
    never equals an ASCII one by accident (SECURITY.md R5.4).
    """
    domain = domain.strip().rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        # Not encodable: keep the Unicode form, which matches no configured ASCII domain.
        return domain


def normalise_address(address: str) -> str:
    """An addr-spec lower-cased with an IDNA domain; ``""`` if it has no ``@``."""
    local, domain = split_address(address)
    if not domain or not local:
        return ""
    return f"{local.lower()}@{normalise_domain(domain)}"


def is_subdomain(domain: str, parent: str) -> bool:
    """Whether ``domain`` equals ``parent`` or lies below it (both already normalised)."""
    return domain == parent or domain.endswith("." + parent)


def _detail(address: str) -> str | None:
    """The ``+detail`` of an address, lower-cased, or None when it has none."""
    local, domain = split_address(address)
    if not domain or "+" not in local:
        return None
    return local.split("+", 1)[1].lower()


def _with_detail(support_address: str, detail: str) -> str:
    """``support@d`` + detail → ``support+detail@d``; refuses a local part over 64 octets."""
    local, domain = split_address(support_address)
    local = local.split("+", 1)[0]
    full = f"{local}+{detail}"
    if len(full.encode("utf-8")) > MAX_LOCAL_PART:
        # A config problem (very long support local part), not a runtime outcome.
        raise ValueError(f"local part {full!r} is longer than {MAX_LOCAL_PART} octets")
    return f"{full}@{domain}"


# --- request addresses ------------------------------------------------------------------

# Plain words after "+" that ask for a list by mail (issue 16): support+status@, support+queue@.
# They carry no secret: what is answered depends on who proves to be asking.
REQUEST_WORDS = frozenset({"status", "queue"})


def request_word(address: str, support_addresses: tuple[str, ...]) -> str | None:
    """``support+status@d`` → ``status`` when the address is ours and the word is known."""
    if not is_our_address(address, support_addresses):
        return None
    word = _detail(address)
    return word if word in REQUEST_WORDS else None


def request_address(support_address: str, word: str) -> str:
    """``support@d`` + ``queue`` → ``support+queue@d`` (for templates and tests)."""
    return _with_detail(support_address, word)


# --- reply tokens -----------------------------------------------------------------------


class TokenStatus(StrEnum):
    """Why a reply token was or was not accepted (for the audit reason)."""

    VALID = "valid"
    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown key"
    BAD_MAC = "bad mac"
    EXPIRED = "expired"
    FROM_FUTURE = "issued in the future"


@dataclass(frozen=True)
class ReplyToken:
    """The clear fields of a reply token; ``mac`` is not verified by decoding."""

    key_id: int
    ticket_id: int
    issued_day: int
    mac: str


@dataclass(frozen=True)
class TokenCheck:
    """Result of verifying one token for one engineer."""

    status: TokenStatus
    ticket_id: int | None = None


def _secret_for(secret: str | Mapping[int, str], key_id: int) -> str | None:
    # A plain string verifies every key id; a mapping (key rotation) picks by id.
    if isinstance(secret, str):
        return secret
    return secret.get(key_id)


def make_reply_token(
    secret: str, ticket_id: int, engineer: str, issued: date, key_id: int = 1
) -> str:
    """A token binding ``ticket_id`` and ``engineer``, issued on ``issued`` with key ``key_id``."""
    if ticket_id < 0 or not 0 <= key_id <= 999:
        raise ValueError("ticket_id must be ≥ 0 and key_id in 0..999")
    day = (issued - _EPOCH).days
    return signed.sign(
        signed.REPLY, (key_id, ticket_id, day), secret, bound=normalise_address(engineer)
    )


def reply_address(support_address: str, token: str) -> str:
    """``support@d`` + token → ``support+<token>@d`` (the Reply-To of an engineer notice)."""
    return _with_detail(support_address, token)


def decode_reply_token(detail: str) -> ReplyToken | None:
    """The clear fields of a token (the ``+detail`` or the token itself), or None if not one."""
    token = signed.decode(signed.REPLY, detail)
    if token is None:
        return None
    key_id, ticket_id, day = token.fields
    return ReplyToken(key_id, ticket_id, day, token.mac)


def verify_reply_token(
    secret: str | Mapping[int, str],
    address: str,
    engineer: str,
    today: date,
    max_age_days: int = 90,
) -> TokenCheck:
    """Check the token in ``address``'s ``+detail`` for ``engineer``; never raises on garbage.

    ``secret`` is one secret, or key id → secret while keys are rotated.
    """
    detail = _detail(address)
    token = signed.decode(signed.REPLY, detail) if detail is not None else None
    if token is None:
        return TokenCheck(TokenStatus.MALFORMED)
    key_id, ticket_id, issued_day = token.fields
    key = _secret_for(secret, key_id)
    if key is None:
        return TokenCheck(TokenStatus.UNKNOWN_KEY)
    if not signed.mac_matches(signed.REPLY, token, key, bound=normalise_address(engineer)):
        return TokenCheck(TokenStatus.BAD_MAC)
    # Age is checked only after the MAC, so a tampered day cannot probe anything.
    age = (today - _EPOCH).days - issued_day
    if age > max_age_days:
        return TokenCheck(TokenStatus.EXPIRED, ticket_id)
    # One day of slack for clocks and time zones around midnight.
    if age < -1:
        return TokenCheck(TokenStatus.FROM_FUTURE, ticket_id)
    return TokenCheck(TokenStatus.VALID, ticket_id)


def parse_reply_token(
    secret: str | Mapping[int, str],
    address: str,
    engineer: str,
    today: date,
    max_age_days: int = 90,
) -> int | None:
    """The ticket id if ``address`` carries a token valid for ``engineer`` today, else None."""
    check = verify_reply_token(secret, address, engineer, today, max_age_days)
    return check.ticket_id if check.status is TokenStatus.VALID else None


def find_token_address(addresses: Iterable[str]) -> str | None:
    """The first address whose ``+detail`` has the reply-token shape (MAC not checked)."""
    for address in addresses:
        detail = _detail(address)
        if detail is not None and decode_reply_token(detail) is not None:
            return address
    return None


# --- rating links ----------------------------------------------------------------------


def rating_address(support_address: str, secret: str, ticket_id: int, score: int) -> str:
    """``support+rate-<ticket>-<score>-<mac>@domain``: mail to it rates the ticket."""
    return _with_detail(support_address, signed.sign(signed.RATE, (ticket_id, score), secret))


def parse_rating_address(secret: str, address: str) -> tuple[int, int] | str | None:
    """(ticket, score) for a valid token; "forged" for a rate- token that fails; else None."""
    detail = _detail(address)
    if detail is None or not detail.startswith(signed.RATE.tag):
        return None
    fields = signed.verify(signed.RATE, detail, secret)
    if fields is None:
        return "forged"
    ticket_id, score = fields
    return ticket_id, score


# --- VERP -------------------------------------------------------------------------------


def verp_return_path(support_address: str, outbox_id: int, secret: str) -> str:
    """The envelope sender for outbox row ``outbox_id``: ``support+b-<id>-<mac>@d``."""
    if outbox_id < 0:
        raise ValueError("outbox_id must be ≥ 0")
    return _with_detail(support_address, signed.sign(signed.BOUNCE, (outbox_id,), secret))


def parse_verp(secret: str, address: str) -> int | None:
    """The outbox id a bounce address names, or None if it is not ours or the MAC is wrong."""
    detail = _detail(address)
    fields = signed.verify(signed.BOUNCE, detail, secret) if detail is not None else None
    return fields[0] if fields is not None else None
