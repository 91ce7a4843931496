"""Whether an address belongs to a contract: the one check, with one normalisation.

Authentication, copying colleagues onto a ticket, ``#cc``, rating links and
thread joins all ask the same question, so they all ask it here. Both sides
are normalised the same way (:func:`mailticket.mail.addresses.normalise_address`):

* the local part is lower-cased (``Anna@`` is ``anna@``; MTAs and people fold
  case) but otherwise kept: ``anna+x@`` is not the contact ``anna@``;
* the domain is lower-cased, loses a trailing dot and is IDNA-encoded, so
  ``Пример.РФ.`` is ``xn--e1afmkfd.xn--p1ai`` and a Cyrillic look-alike of an
  ASCII domain (``сlient.example`` with a Cyrillic ``с``) stays a different
  domain (SECURITY.md R5.4);
* a contract's domain covers its subdomains (``mail.client.example``), never a
  longer name that merely ends the same (``evilclient.example``) nor a name that
  has it inside (``client.example.evil.test``).

A From: address alone proves nothing (R1.4); ``auth`` records on what evidence
the sender was matched. This module only answers "is it listed".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from mailticket.mail.addresses import (
    is_subdomain,
    normalise_address,
    normalise_domain,
    split_address,
)
from mailticket.model import Contract


class Membership(StrEnum):
    """How an address belongs to a contract: listed itself, or under a listed domain."""

    CONTACT = "contact"
    DOMAIN = "domain"


def address_listed(address: str, listed: Iterable[str]) -> bool:
    """Whether ``address`` is one of ``listed``, both normalised; garbage matches nothing."""
    wanted = normalise_address(address)
    return bool(wanted) and any(normalise_address(a) == wanted for a in listed)


def domain_listed(address: str, domains: Iterable[str]) -> bool:
    """Whether ``address``'s domain is one of ``domains`` or lies below one of them."""
    domain = split_address(normalise_address(address))[1]
    if not domain:
        return False
    for listed in domains:
        parent = normalise_domain(listed.strip().removeprefix("@"))
        if parent and is_subdomain(domain, parent):
            return True
    return False


def membership(contract: Contract, address: str) -> Membership | None:
    """How ``address`` belongs to ``contract``, a listed contact first; None if it does not."""
    if address_listed(address, contract.contacts):
        return Membership.CONTACT
    if domain_listed(address, contract.domains):
        return Membership.DOMAIN
    return None


def belongs(contract: Contract, address: str) -> bool:
    """Whether ``address`` is a contact of ``contract`` or under one of its domains."""
    return membership(contract, address) is not None


@dataclass(frozen=True)
class ContractMatch:
    """The contract an address belongs to, how, and other contracts whose domains also match."""

    contract: Contract
    how: Membership
    also: tuple[str, ...] = ()


def find_contract(contracts: Iterable[Contract], address: str) -> ContractMatch | None:
    """The contract of ``address``: a listed contact anywhere wins over a domain.

    Among domain matches the first in config order wins; the others are named in
    ``also`` so the audit trail shows the overlap.
    """
    candidates = list(contracts)
    for contract in candidates:
        if address_listed(address, contract.contacts):
            return ContractMatch(contract, Membership.CONTACT)
    by_domain = [c for c in candidates if domain_listed(address, c.domains)]
    if not by_domain:
        return None
    return ContractMatch(by_domain[0], Membership.DOMAIN, tuple(c.id for c in by_domain[1:]))
