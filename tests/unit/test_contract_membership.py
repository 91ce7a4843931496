"""The one "does this address belong to this contract" check and its normalisation."""

from __future__ import annotations

import pytest

from mailticket.config import RoutingRule
from mailticket.mail.parse import parse
from mailticket.model import Contract, Envelope, MonitoringSource
from mailticket.policy.contracts import (
    ContractMatch,
    Membership,
    address_listed,
    belongs,
    domain_listed,
    find_contract,
    membership,
)
from mailticket.policy.monitoring import find_source
from mailticket.policy.routing import rule_matches

# пример.рф in punycode, as the config requires it.
IDN = "xn--e1afmkfd.xn--p1ai"
ACME = Contract(
    id="acme", name="Acme", sla_plan="std",
    contacts=("cto@partner.example",), domains=("client.example", IDN),
)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        # Case: local part and domain fold.
        ("CTO@Partner.EXAMPLE", Membership.CONTACT),
        ("Anna@CLIENT.example", Membership.DOMAIN),
        # A trailing dot on the domain is the same domain.
        ("cto@partner.example.", Membership.CONTACT),
        ("anna@client.example.", Membership.DOMAIN),
        # Angle brackets and spaces from a header are ignored.
        (" <anna@client.example> ", Membership.DOMAIN),
        # IDNA: the Unicode and the punycode form are one domain.
        ("Иван@Пример.РФ", Membership.DOMAIN),
        (f"ivan@{IDN}", Membership.DOMAIN),
        ("ivan@пример.рф.", Membership.DOMAIN),
        # A subdomain belongs to its contract domain.
        ("ops@mail.client.example", Membership.DOMAIN),
        ("ops@a.b.client.example", Membership.DOMAIN),
        # Look-alikes do not: a Cyrillic "с", a longer name, the domain inside another.
        ("boss@сlient.example", None),
        ("boss@xn--lient-0ye.example", None),
        ("boss@evilclient.example", None),
        ("boss@client.example.evil.test", None),
        ("boss@client-example.test", None),
        ("boss@example", None),
        # A contact is that address only: not its domain, not a +detail of it.
        ("ceo@partner.example", None),
        ("cto+x@partner.example", None),
        # Garbage never matches.
        ("", None),
        ("client.example", None),
        ("@client.example", None),
        ("anna@", None),
    ],
)
def test_membership(address: str, expected: Membership | None) -> None:
    assert membership(ACME, address) is expected
    assert belongs(ACME, address) is (expected is not None)


def test_the_contract_side_is_normalised_too() -> None:
    loose = Contract(id="x", name="X", sla_plan="std", contacts=("CTO@Partner.Example.",),
                     domains=("@Client.Example", "пример.рф"))
    assert membership(loose, "cto@partner.example") is Membership.CONTACT
    assert membership(loose, "anna@client.example") is Membership.DOMAIN
    assert membership(loose, f"ivan@{IDN}") is Membership.DOMAIN


def test_empty_entries_match_nothing() -> None:
    assert not address_listed("", ("", "x"))
    assert not domain_listed("anna@client.example", ("", "@"))


def test_a_contact_anywhere_wins_over_a_domain() -> None:
    first = Contract(id="first", name="F", sla_plan="std", domains=("partner.example",))
    second = Contract(id="second", name="S", sla_plan="std", contacts=("cto@partner.example",))
    assert find_contract([first, second], "CTO@partner.example") == ContractMatch(
        second, Membership.CONTACT)
    assert find_contract([first, second], "ceo@partner.example") == ContractMatch(
        first, Membership.DOMAIN)


def test_overlapping_domains_take_the_first_and_name_the_rest() -> None:
    parent = Contract(id="parent", name="P", sla_plan="std", domains=("client.example",))
    child = Contract(id="child", name="C", sla_plan="std", domains=("eu.client.example",))
    assert find_contract([parent, child], "a@eu.client.example") == ContractMatch(
        parent, Membership.DOMAIN, ("child",))
    assert find_contract([parent, child], "a@client.example") == ContractMatch(
        parent, Membership.DOMAIN)
    assert find_contract([parent, child], "a@сlient.example") is None


def test_routing_sender_domains_use_the_same_check() -> None:
    rule = RoutingRule(name="r", sender_domains=("client.example",))
    assert rule_matches(rule, None, "Ops@Mail.Client.Example.", "", monitoring=False)
    assert not rule_matches(rule, None, "ops@evilclient.example", "", monitoring=False)
    assert not rule_matches(rule, None, "ops@сlient.example", "", monitoring=False)


def test_monitoring_senders_use_the_same_normalisation() -> None:
    source = MonitoringSource(senders=("zabbix@client.example",))
    contract = Contract(id="acme", name="A", sla_plan="std", domains=("client.example",),
                        monitoring=(source,))
    mail = parse(b"From: someone@else.example\r\nSubject: x\r\n\r\nbody\r\n")
    for sender, found in (("<Zabbix@CLIENT.example.>", True), ("zabbix@сlient.example", False)):
        envelope = Envelope(mail_from=sender, rcpt_tos=("support@provider.example",))
        assert (find_source({"acme": contract}, mail, envelope) is not None) is found
