"""Routing table: contract type defaults, dedicated engineer, rules in order, subject priority."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from support.configs import make_config

from mailticket import config as config_mod
from mailticket.config import Config, ContractTypeConfig, RoutingRule
from mailticket.model import Contract, ContractType, Line, Priority
from mailticket.policy.routing import (
    Route,
    decide,
    notice_recipients,
    rule_matches,
    subject_priority,
)

REPO = Path(__file__).resolve().parents[2]

RULES = (
    RoutingRule(name="db alerts", source="monitoring", subject_keywords=("postgres",),
                line="L3", assignee="lead@provider.example"),
    RoutingRule(name="initech 1C", contracts=("initech",), source="human",
                subject_keywords=("1С", "1C"), line="L2", priority="major"),
    RoutingRule(name="partner", sender_domains=("partner.example",), priority="technical"),
    RoutingRule(name="app support", contract_types=("application_support",),
                assignee="vera@provider.example"),
)


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    base = make_config(tmp_path, "sqlite://", routing=RULES)
    contracts = dict(base.contracts)
    contracts["app"] = Contract(id="app", name="App", sla_plan="standard", domains=("app.example",),
                                contract_type=ContractType.APPLICATION_SUPPORT)
    return dataclasses.replace(base, contracts=contracts)


@pytest.mark.parametrize(
    ("contract", "sender", "subject", "monitoring", "priority", "expected"),
    [
        # No contract: L1, nobody, the starting priority.
        (None, "x@nowhere.example", "Вопрос", False, Priority.MINOR,
         Route(Priority.MINOR, Line.L1, None, None)),
        # Dedicated engineer first; acme may not set priority from the subject.
        ("globex", "bob@globex.example", "[CRITICAL] Mail down", False, Priority.MINOR,
         Route(Priority.MINOR, Line.L1, "boris@provider.example", "technical_support")),
        ("acme", "ivan@acme.example", "[АВАРИЯ] всё упало", False, Priority.MINOR,
         Route(Priority.MINOR, Line.L1, None, "technical_support")),
        # initech allows subject keywords, in either language and any case.
        ("initech", "ops@initech.example", "[АВАРИЯ] Склад не работает", False, Priority.MINOR,
         Route(Priority.CRITICAL, Line.L1, "vera@provider.example", "complex", None, "subject")),
        ("initech", "ops@initech.example", "Re: [urgent] отчёт", False, Priority.MINOR,
         Route(Priority.MAJOR, Line.L1, "vera@provider.example", "complex", None, "subject")),
        # A human rule by subject keyword: line and priority, the assignee stays.
        ("initech", "ops@initech.example", "Ошибка в 1С при проведении", False, Priority.MINOR,
         Route(Priority.MAJOR, Line.L2, "vera@provider.example", "complex", "initech 1C", "rule")),
        # The subject keyword still wins over a rule's priority.
        ("initech", "ops@initech.example", "[КРИТИЧНО] 1С не запускается", False, Priority.MINOR,
         Route(Priority.CRITICAL, Line.L2, "vera@provider.example", "complex", "initech 1C",
               "subject")),
        # Monitoring: the alert's priority, monitoring rules only, no subject keywords.
        ("initech", "zabbix@initech.example", "Problem: Postgres is down [CRITICAL]", True,
         Priority.MAJOR,
         Route(Priority.MAJOR, Line.L3, "lead@provider.example", "complex", "db alerts", "alert")),
        ("initech", "zabbix@initech.example", "Problem: 1C licence server down", True,
         Priority.CRITICAL,
         Route(Priority.CRITICAL, Line.L1, "vera@provider.example", "complex", None, "alert")),
        # A keyword must be a whole word: "postgresql" is not "postgres".
        ("initech", "zabbix@initech.example", "Problem: postgresql replication lag", True,
         Priority.MINOR,
         Route(Priority.MINOR, Line.L1, "vera@provider.example", "complex", None, "alert")),
        # Sender domain rule, including subdomains.
        ("acme", "ops@mail.partner.example", "Question", False, Priority.MINOR,
         Route(Priority.TECHNICAL, Line.L1, None, "technical_support", "partner", "rule")),
        # Application support starts at L2 and its rule names the assignee.
        ("app", "u@app.example", "Report fails", False, Priority.MINOR,
         Route(Priority.MINOR, Line.L2, "vera@provider.example", "application_support",
               "app support")),
    ],
)
def test_routing_table(cfg: Config, contract: str | None, sender: str, subject: str,
                       monitoring: bool, priority: Priority, expected: Route) -> None:
    found = cfg.contracts.get(contract or "")
    assert decide(cfg, found, sender=sender, subject=subject, monitoring=monitoring,
                  priority=priority) == expected


def test_contract_type_config_overrides_the_default_line(cfg: Config) -> None:
    cfg = dataclasses.replace(cfg, routing=(), contract_types={
        "application_support": ContractTypeConfig(line="L3")})
    route = decide(cfg, cfg.contracts["app"], sender="u@app.example", subject="x")
    assert (route.line, route.contract_type) == (Line.L3, "application_support")


def test_first_matching_rule_wins(cfg: Config) -> None:
    rules = (RoutingRule(name="first", line="L4"), RoutingRule(name="second", line="L2"))
    route = decide(dataclasses.replace(cfg, routing=rules), None, sender="a@b.example", subject="")
    assert (route.rule, route.line) == ("first", Line.L4)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("[CRITICAL] Server down", Priority.CRITICAL),
        ("Сервер лежит [АВАРИЯ]", Priority.CRITICAL),
        ("[ Срочно ] нужен доступ", Priority.MAJOR),
        ("[LOW] шрифт в отчёте", Priority.MINOR),
        ("[вопрос] как настроить подпись", Priority.TECHNICAL),
        ("Re: [#MT-12] [critical] still down", Priority.CRITICAL),
        ("[#MT-12] critical without brackets", None),
        ("[INFO] weekly", None),
        ("", None),
    ],
)
def test_subject_priority(subject: str, expected: Priority | None) -> None:
    assert subject_priority(subject) == expected


def test_rule_sources() -> None:
    human = RoutingRule(source="human", line="L2")
    robot = RoutingRule(source="monitoring", line="L2")
    anyone = RoutingRule(line="L2")
    assert [rule_matches(r, None, "a@b.example", "", False) for r in (human, robot, anyone)] == [
        True, False, True]
    assert [rule_matches(r, None, "a@b.example", "", True) for r in (human, robot, anyone)] == [
        False, True, True]


def test_deputy_is_copied_on_the_dedicated_engineers_tickets(cfg: Config) -> None:
    assert notice_recipients(cfg, "initech", "vera@provider.example") == [
        "vera@provider.example", "anna@provider.example"]
    # Another assignee, no deputy, or nobody assigned: the usual recipients.
    assert notice_recipients(cfg, "initech", "lead@provider.example") is None
    assert notice_recipients(cfg, "globex", "boris@provider.example") is None
    assert notice_recipients(cfg, "initech", None) is None
    assert notice_recipients(cfg, None, "vera@provider.example") is None


def example() -> str:
    """The shipped config, its knowledge-base folder made absolute so it loads from tmp."""
    text = (REPO / "config.example.toml").read_text()
    return text.replace('dir = "kb"', f'dir = "{REPO / "kb"}"')


def _problems(tmp_path: Path, extra: str) -> list[tuple[str, str]]:
    text = example() + extra
    path = tmp_path / "c.toml"
    path.write_text(text)
    return [(p.key, p.reason) for p in config_mod.check(path)]


def test_routing_and_contract_type_config_problems(tmp_path: Path) -> None:
    assert _problems(tmp_path, """
[[routing]]
contracts = ["nope"]
contract_types = ["hosting"]
sender_domains = ["bad domain"]
source = "robots"
line = "L9"
assignee = "who@example.com"
priority = "blocker"

[[routing]]
name = "empty"
""") == [
        ("routing[3].contracts[0]", "unknown contract 'nope' (contracts are: acme, globex)"),
        ("routing[3].contract_types[0]",
         "must be one of technical_support, application_support, complex"),
        ("routing[3].sender_domains[0]", "invalid domain 'bad domain'"),
        ("routing[3].source", "must be one of any, human, monitoring"),
        ("routing[3].line", "must be one of L1, L2, L3, L4"),
        ("routing[3].assignee", "unknown engineer 'who@example.com' (engineers are: "
         "anna@example.com, boris@example.com, clara@example.com, dmitry@example.com)"),
        ("routing[3].priority", "must be one of critical, major, minor, technical"),
        ("routing[4]", "sets nothing: give line, assignee or priority"),
    ]


def test_contract_type_supplies_the_plan(tmp_path: Path) -> None:
    text = example().replace(
        'id = "globex"\nname = "Globex Corporation"\nsla_plan = "standard"\n',
        'id = "globex"\nname = "Globex Corporation"\n')
    path = tmp_path / "c.toml"
    path.write_text(text)
    cfg = config_mod.load(path)
    assert (cfg.contracts["globex"].sla_plan, cfg.contracts["globex"].contract_type) == (
        "standard", ContractType.APPLICATION_SUPPORT)
    path.write_text(text.replace("[contract_types.application_support]\nsla_plan = \"standard\"\n",
                                 "[contract_types.application_support]\n"))
    assert [(p.key, p.reason) for p in config_mod.check(path)] == [
        ("contracts[1].sla_plan", "missing required key")]
