"""Decide who sent a mail, from evidence rather than from the ``From:`` header.

A ``From:`` header is typed by the sender, so it proves nothing on its own
(SECURITY.md §1). An engineer is trusted only with one piece of evidence that
an outsider cannot produce:

1. SMTP AUTH as that engineer on our submission listener;
2. a reply token (``support+r…@``) whose MAC verifies for that engineer;
3. a DKIM (or DMARC) pass aligned with the ``From:`` domain, in the *first*
   ``Authentication-Results`` header, written by an authserv-id we trust
   (RFC 8601; SECURITY.md §2). SPF alone never counts.

A reply token proves possession of one notice, not identity (SECURITY.md
R1.2), so ``verified`` says whether SMTP AUTH or a trusted DKIM/DMARC pass
also backs the sender; the engineer path decides by the configured evidence
level (``config.engineer_evidence``) what a token-only reply may do. Every
piece of evidence refused is named in ``refusals`` with a stable code, so the
paths can log and audit why. A mail with two From (or Subject, Message-ID …)
fields is ambiguous: which one a reader sees is up to the reader, so it
authenticates nobody and is quarantined (``ambiguous``).

A mail that claims an engineer's address without evidence is flagged as
forged: the pipeline gives it no effect and tells the real engineer. Customers
are matched by contract contact, then by contract domain. The module is pure:
it reads the parsed mail, the envelope and the config, and returns a value.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass
from datetime import date, timedelta

import authres

from mailticket.config import Config
from mailticket.mail.addresses import (
    TokenStatus,
    decode_reply_token,
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
# RFC 5322 §3.6: each of these occurs at most once; a second copy is a forgery tool.
SINGLE_FIELDS = ("from", "sender", "subject", "message-id", "date", "to", "cc", "reply-to",
                 "in-reply-to", "references")
_EPOCH = date(1970, 1, 1)


class Refusal(enum.StrEnum):
    """Why a piece of engineer evidence was refused: stable codes for logs and audit."""

    NO_EVIDENCE = "no_evidence"
    TOKEN_OWNER_MISMATCH = "token_owner_mismatch"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_INVALID = "token_invalid"
    AUTH_USER_MISMATCH = "auth_user_mismatch"
    WEAK_EVIDENCE = "weak_evidence"
    REPLAYED = "replayed"
    DUPLICATE_FROM = "duplicate_from"
    DUPLICATE_HEADER = "duplicate_header"
    MULTIPLE_FROM = "multiple_from"
    DKIM_LENGTH_TAG = "dkim_length_tag"
    DKIM_UNALIGNED = "dkim_unaligned"
    FORGED_AUTHRES = "forged_authres"


@dataclass(frozen=True)
class Refused:
    """One refused piece of evidence: the code and a sentence for people."""

    code: Refusal
    detail: str


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
    # SMTP AUTH as the sender or an aligned trusted DKIM/DMARC pass backs the From.
    verified: bool = False
    # Evidence that was presented and refused, in the order found.
    refusals: tuple[Refused, ...] = ()
    # The sender's valid reply token (its ``+detail``) and the day it was issued.
    token: str | None = None
    token_issued: date | None = None
    # The ticket a token of another engineer (``token_owner``) names.
    token_owner_ticket_id: int | None = None
    # Set when duplicate single-occurrence fields make the mail ambiguous: quarantine it.
    ambiguous: Refused | None = None


@dataclass(frozen=True)
class _ArVerdict:
    """What the Authentication-Results headers say about one From domain."""

    aligned_pass: bool
    forged: bool
    note: str
    refusals: tuple[Refused, ...] = ()


def authenticate(
    mail: InboundMail, envelope: Envelope, config: Config, today: date
) -> Authentication:
    """Classify the sender of ``mail`` as engineer (with evidence), customer, or unknown."""
    ambiguous = _ambiguous(mail)
    if ambiguous is not None:
        unknown = _unknown(normalise_address(mail.from_addr), ambiguous.detail)
        return dataclasses.replace(unknown, ambiguous=ambiguous, refusals=(ambiguous,))
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
        owner, _ = _token_owner(token_address, engineers, config, today)
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
    refusals: list[Refused] = []
    evidence = Evidence.NONE
    token_ticket: int | None = None
    owner: str | None = None
    owner_ticket: int | None = None
    token: str | None = None
    issued: date | None = None
    verified = False

    auth_user = normalise_address(envelope.auth_user or "")
    if auth_user and envelope.source == SUBMISSION_SOURCE:
        if auth_user == sender:
            evidence = Evidence.SMTP_AUTH
            verified = True
            notes.append("SMTP AUTH as the sender on the submission listener")
        else:
            notes.append(f"SMTP AUTH as {auth_user}, not as the sender")
            refusals.append(Refused(Refusal.AUTH_USER_MISMATCH,
                                    f"SMTP AUTH as {auth_user}, not as {sender}"))

    if token_address is not None:
        check = verify_reply_token(config.mail.reply_token_secret, token_address, sender, today)
        if check.status is TokenStatus.VALID:
            token_ticket = check.ticket_id
            token = split_address(token_address)[0].split("+", 1)[1].lower()
            decoded = decode_reply_token(token)
            issued = _EPOCH + timedelta(days=decoded.issued_day) if decoded else None
            if evidence is Evidence.NONE:
                evidence = Evidence.REPLY_TOKEN
            notes.append(f"reply token for ticket {check.ticket_id} verified for the sender")
        else:
            owner, owner_ticket = _token_owner(token_address, engineers, config, today)
            if owner is not None:
                notes.append(f"reply token belongs to {owner}, not to the sender")
                refusals.append(Refused(Refusal.TOKEN_OWNER_MISMATCH,
                                        f"reply token of {owner} presented by {sender}"))
            elif check.status is TokenStatus.EXPIRED:
                notes.append(f"reply token refused: {check.status}")
                refusals.append(Refused(Refusal.TOKEN_EXPIRED,
                                        f"reply token for ticket {check.ticket_id} expired"))
                owner_ticket = check.ticket_id
            else:
                notes.append(f"reply token refused: {check.status}")
                refusals.append(Refused(Refusal.TOKEN_INVALID,
                                        f"reply token refused: {check.status}"))

    if ar.aligned_pass:
        verified = True
        if evidence is Evidence.NONE:
            evidence = Evidence.DKIM
    if ar.note:
        notes.append(ar.note)
    refusals.extend(ar.refusals)

    if evidence is Evidence.NONE:
        notes.insert(0, f"From claims engineer {sender} without evidence")
        if not refusals:
            refusals.append(Refused(Refusal.NO_EVIDENCE,
                                    f"From claims engineer {sender} without evidence"))
        return Authentication(
            principal=Principal(
                kind=PrincipalKind.UNKNOWN, address=sender, claimed_engineer=sender
            ),
            token_ticket_id=None,
            forged=True,
            reason="; ".join(notes),
            refusals=tuple(refusals),
            token_owner=owner,
            token_owner_ticket_id=owner_ticket,
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
        verified=verified,
        refusals=tuple(refusals),
        token=token,
        token_issued=issued,
        token_owner=owner,
        token_owner_ticket_id=owner_ticket,
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
) -> tuple[str | None, int | None]:
    """The engineer a token verifies for and its ticket, trying each one (the list is short)."""
    for address in engineers:
        check = verify_reply_token(config.mail.reply_token_secret, token_address, address, today)
        if check.status is TokenStatus.VALID:
            return address, check.ticket_id
    return None, None


def _ambiguous(mail: InboundMail) -> Refused | None:
    """A second copy of a single-occurrence field, or a From of many without a Sender.

    Readers disagree about which copy counts (DKIM may sign one, a client shows
    the other; RFC 6376 §8.15), so such a mail can prove nobody's identity.
    """
    for name in SINGLE_FIELDS:
        count = len(mail.headers.get(name, ()))
        if count > 1:
            code = Refusal.DUPLICATE_FROM if name == "from" else Refusal.DUPLICATE_HEADER
            return Refused(code, f"{count} {name} header fields; RFC 5322 allows one")
    if len(mail.from_addresses) > 1 and not mail.headers.get("sender"):
        return Refused(Refusal.MULTIPLE_FROM,
                       f"From names {len(mail.from_addresses)} addresses and there is no Sender")
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
        note = "forged Authentication-Results: a lower header claims a trusted authserv-id"
        return _ArVerdict(False, True, note, (Refused(Refusal.FORGED_AUTHRES, note),))
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
    passed, refusals = _aligned_pass(header.results, from_domain, _signatures(mail))
    if passed:
        return _ArVerdict(True, False, f"aligned DKIM/DMARC pass from {first_id}", refusals)
    return _ArVerdict(False, False, f"no aligned DKIM/DMARC pass from {first_id}", refusals)


def _signatures(mail: InboundMail) -> list[dict[str, str]]:
    """The tags of every DKIM-Signature field (RFC 6376 §3.2 tag=value; list), lower-cased names."""
    found = []
    for value in mail.headers.get("dkim-signature", ()):
        tags: dict[str, str] = {}
        for item in value.split(";"):
            name, eq, tag_value = item.partition("=")
            if eq:
                tags[name.strip().lower()] = "".join(tag_value.split())
        found.append(tags)
    return found


def _signed_with_length(
    signatures: list[dict[str, str]], signer: str, header_b: str
) -> bool:
    """Whether a signature by ``signer`` (the one ``header.b`` names, if given) has ``l=``.

    ``l=`` signs only the first bytes of the body, so anything appended after
    them passes (RFC 6376 §8.2). A result that names no signature we can find
    is taken as the MTA's word: it may have verified and removed it.
    """
    for tags in signatures:
        if normalise_domain(tags.get("d", "")) != signer:
            continue
        if header_b and not tags.get("b", "").startswith(header_b):
            continue
        if "l" in tags:
            return True
    return False


def _aligned_pass(
    results: list[authres.core.AuthenticationResult],
    from_domain: str,
    signatures: list[dict[str, str]],
) -> tuple[bool, tuple[Refused, ...]]:
    """Whether a ``dkim=pass`` (header.d aligned, no ``l=``) or ``dmarc=pass`` (header.from
    equal, no aligned ``l=`` signature it may rest on) is there; and what was refused."""
    refusals: list[Refused] = []
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
            if not ("." in signer and is_subdomain(from_domain, signer)):
                refusals.append(Refused(Refusal.DKIM_UNALIGNED,
                                        f"DKIM pass for {signer!r} is not aligned with {from_domain}"))
                continue
            if _signed_with_length(signatures, signer, "".join(props.get(("header", "b"), "").split())):
                refusals.append(Refused(Refusal.DKIM_LENGTH_TAG,
                                        f"DKIM signature of {signer} signs only part of the body (l=)"))
                continue
            return True, tuple(refusals)
        if method == "dmarc" and (
            normalise_domain(props.get(("header", "from"), "")) == from_domain
        ):
            aligned = {normalise_domain(t.get("d", "")) for t in signatures}
            if any("." in d and is_subdomain(from_domain, d)
                   and _signed_with_length(signatures, d, "") for d in aligned):
                refusals.append(Refused(Refusal.DKIM_LENGTH_TAG,
                                        f"DMARC pass for {from_domain} may rest on an l= signature"))
                continue
            return True, tuple(refusals)
    return False, tuple(refusals)
