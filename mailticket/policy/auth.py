"""Decide who sent a mail, from evidence rather than from the ``From:`` header.

A ``From:`` header is typed by the sender, so it proves nothing on its own
(SECURITY.md §1). An engineer is trusted only with one piece of evidence that
an outsider cannot produce:

1. SMTP AUTH as that engineer on our submission listener;
2. a reply token (``support+r…@``) whose MAC verifies for that engineer;
3. a DKIM (or DMARC) pass aligned with the ``From:`` domain, in the *first*
   ``Authentication-Results`` header, written by an authserv-id we trust
   (RFC 8601; SECURITY.md §2). SPF alone never counts.

A mail that claims an engineer's address without evidence is flagged as
forged: the pipeline gives it no effect and tells the real engineer. Customers
are matched by contract contact, then by contract domain. The module is pure:
it reads the parsed mail, the envelope and the config, and returns a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import authres

from mailticket.config import Config
from mailticket.mail.addresses import (
    TokenStatus,
    find_token_address,
    is_our_address,
    is_subdomain,
    normalise_address,
    normalise_domain,
    split_address,
    verify_reply_token,
)
from mailticket.mail.parse import InboundMail
from mailticket.model import Engineer, Envelope, Evidence, Principal, PrincipalKind
from mailticket.policy import contracts

# Envelope.source of mail that came in through the engineers' submission listener.
SUBMISSION_SOURCE = "submission"
# Comments may precede the authserv-id: "Authentication-Results: (x) mx.example.net; ...".
_COMMENT_RE = re.compile(r"\([^()]*\)")


@dataclass(frozen=True)
class Authentication:
    """Who sent a mail and why we believe it."""

    principal: Principal
    # The ticket named by a reply token that verified for the sender, if any.
    token_ticket_id: int | None
    # The From: names an engineer, but no evidence backs it.
    forged: bool
    # One line for the audit log, naming the evidence used or missing.
    reason: str
    # The engineer a presented token belongs to when that is not the sender; tell them.
    token_owner: str | None = None
    # A lower Authentication-Results header claims a trusted authserv-id (log it).
    forged_auth_results: bool = False


@dataclass(frozen=True)
class _ArVerdict:
    """What the Authentication-Results headers say about one From domain."""

    aligned_pass: bool
    forged: bool
    note: str


def authenticate(
    mail: InboundMail, envelope: Envelope, config: Config, today: date
) -> Authentication:
    """Classify the sender of ``mail`` as engineer (with evidence), customer, or unknown."""
    sender = normalise_address(mail.from_addr)
    if not sender:
        return _unknown("", "no usable From address")
    if is_our_address(sender, config.mail.support_addresses):
        return _unknown(sender, "From is one of our own support addresses")

    engineers = {normalise_address(key): eng for key, eng in config.engineers.items()}
    ar = _read_auth_results(mail, split_address(sender)[1], config.mail.trusted_authserv_ids)
    token_address = _token_address(mail, envelope, config.mail.support_addresses)

    engineer = engineers.get(sender)
    if engineer is not None:
        return _authenticate_engineer(
            sender, engineer, engineers, envelope, config, today, ar, token_address
        )

    notes = [ar.note] if ar.note else []
    owner = None
    if token_address is not None:
        owner = _token_owner(token_address, engineers, config, today)
        if owner is not None:
            # A token is a bearer credential for its owner only (SECURITY.md R1.3).
            notes.append(f"reply token of {owner} presented by {sender}: not accepted")
    principal, note = _match_customer(sender, config)
    notes.insert(0, note)
    return Authentication(
        principal=principal,
        token_ticket_id=None,
        forged=False,
        reason="; ".join(notes),
        token_owner=owner,
        forged_auth_results=ar.forged,
    )


def _authenticate_engineer(
    sender: str,
    engineer: Engineer,
    engineers: dict[str, Engineer],
    envelope: Envelope,
    config: Config,
    today: date,
    ar: _ArVerdict,
    token_address: str | None,
) -> Authentication:
    """The sender's From: is an engineer: accept it only with evidence."""
    notes: list[str] = []
    evidence = Evidence.NONE
    token_ticket: int | None = None
    owner: str | None = None

    auth_user = normalise_address(envelope.auth_user or "")
    if auth_user and envelope.source == SUBMISSION_SOURCE:
        if auth_user == sender:
            evidence = Evidence.SMTP_AUTH
            notes.append("SMTP AUTH as the sender on the submission listener")
        else:
            notes.append(f"SMTP AUTH as {auth_user}, not as the sender")

    if token_address is not None:
        check = verify_reply_token(config.mail.reply_token_secret, token_address, sender, today)
        if check.status is TokenStatus.VALID:
            token_ticket = check.ticket_id
            if evidence is Evidence.NONE:
                evidence = Evidence.REPLY_TOKEN
            notes.append(f"reply token for ticket {check.ticket_id} verified for the sender")
        else:
            owner = _token_owner(token_address, engineers, config, today)
            if owner is not None:
                notes.append(f"reply token belongs to {owner}, not to the sender")
            else:
                notes.append(f"reply token refused: {check.status}")

    if ar.aligned_pass and evidence is Evidence.NONE:
        evidence = Evidence.DKIM
    if ar.note:
        notes.append(ar.note)

    if evidence is Evidence.NONE:
        notes.insert(0, f"From claims engineer {sender} without evidence")
        return Authentication(
            principal=Principal(
                kind=PrincipalKind.UNKNOWN, address=sender, claimed_engineer=sender
            ),
            token_ticket_id=None,
            forged=True,
            reason="; ".join(notes),
            token_owner=owner,
            forged_auth_results=ar.forged,
        )
    notes.insert(0, f"engineer {sender} by {evidence}")
    return Authentication(
        principal=Principal(
            kind=PrincipalKind.ENGINEER, address=engineer.address.lower(), evidence=evidence
        ),
        token_ticket_id=token_ticket,
        forged=False,
        reason="; ".join(notes),
        token_owner=owner,
        forged_auth_results=ar.forged,
    )


def _unknown(sender: str, reason: str) -> Authentication:
    return Authentication(
        principal=Principal(kind=PrincipalKind.UNKNOWN, address=sender),
        token_ticket_id=None,
        forged=False,
        reason=reason,
    )


def _token_address(
    mail: InboundMail, envelope: Envelope, support_addresses: tuple[str, ...]
) -> str | None:
    """The first token-shaped recipient at one of our addresses: envelope first, then To/Cc."""
    for candidates in (envelope.rcpt_tos, mail.to, mail.cc):
        ours = [a for a in candidates if is_our_address(a, support_addresses)]
        found = find_token_address(ours)
        if found is not None:
            return found
    return None


def _token_owner(
    token_address: str, engineers: dict[str, Engineer], config: Config, today: date
) -> str | None:
    """The configured engineer a token verifies for, trying each one (the list is short)."""
    for address in engineers:
        check = verify_reply_token(config.mail.reply_token_secret, token_address, address, today)
        if check.status is TokenStatus.VALID:
            return address
    return None


def _match_customer(sender: str, config: Config) -> tuple[Principal, str]:
    """A contract contact (exact address first), else a contract domain, else unknown."""
    found = contracts.find_contract(config.contracts.values(), sender)
    if found is None:
        return Principal(PrincipalKind.UNKNOWN, sender), "unknown sender"
    principal = Principal(PrincipalKind.CUSTOMER, sender, contract_id=found.contract.id)
    if found.how is contracts.Membership.CONTACT:
        return principal, f"customer: contact of contract {found.contract.id}"
    note = f"customer: domain of contract {found.contract.id}"
    if found.also:
        note += f" (first in config order; also matches {', '.join(found.also)})"
    return principal, note


# --- Authentication-Results ------------------------------------------------------------


def _authserv_id(value: str) -> str:
    """The authserv-id of one header value, read leniently (it is only compared)."""
    value = _COMMENT_RE.sub(" ", value)
    head = value.split(";", 1)[0].strip()
    return head.split()[0].lower() if head else ""


def _read_auth_results(
    mail: InboundMail, from_domain: str, trusted_ids: tuple[str, ...]
) -> _ArVerdict:
    """Evaluate the A-R headers for ``from_domain`` by RFC 8601 and SECURITY.md R2.1/R2.2.

    Only the topmost header counts, and only if a trusted authserv-id wrote it.
    Our MTA must strip incoming headers with its id, so a lower header that
    still carries a trusted id was typed by the sender: everything is void.
    """
    values = mail.headers.get("authentication-results", ())
    if not values:
        return _ArVerdict(False, False, "")
    trusted = {t.lower() for t in trusted_ids}
    if not trusted:
        return _ArVerdict(False, False, "Authentication-Results ignored: no trusted authserv-id")
    lower_ids = [_authserv_id(v) for v in values[1:]]
    if any(i in trusted for i in lower_ids):
        return _ArVerdict(
            False,
            True,
            "forged Authentication-Results: a lower header claims a trusted authserv-id",
        )
    first = values[0]
    first_id = _authserv_id(first)
    if first_id not in trusted:
        return _ArVerdict(
            False, False, f"Authentication-Results from untrusted {first_id!r} ignored"
        )
    try:
        # CR/LF inside a decoded value would confuse the parser; folding is whitespace anyway.
        header = authres.AuthenticationResultsHeader.parse_value(
            first.replace("\r", " ").replace("\n", " ")
        )
    except Exception:  # authres raises its own errors and ValueError/IndexError on odd input.
        return _ArVerdict(False, False, "Authentication-Results unparseable: no evidence")
    if _aligned_pass(header.results, from_domain):
        return _ArVerdict(True, False, f"aligned DKIM/DMARC pass from {first_id}")
    return _ArVerdict(False, False, f"no aligned DKIM/DMARC pass from {first_id}")


def _aligned_pass(results: list[authres.core.AuthenticationResult], from_domain: str) -> bool:
    """Whether a ``dkim=pass`` (header.d aligned) or ``dmarc=pass`` (header.from equal) is there."""
    for result in results:
        method = str(result.method or "").lower()
        if str(result.result or "").lower() != "pass":
            continue
        props = {
            (str(p.type).lower(), str(p.name).lower()): str(p.value or "")
            for p in result.properties
        }
        if method == "dkim":
            signer = normalise_domain(props.get(("header", "d"), ""))
            # Relaxed alignment: the signer may be a parent of the From domain, but
            # never a bare top-level label that would align with everything.
            if "." in signer and is_subdomain(from_domain, signer):
                return True
        elif method == "dmarc" and (
            normalise_domain(props.get(("header", "from"), "")) == from_domain
        ):
            return True
    return False
