"""Decide where a new ticket goes: its first line, its assignee and its priority.

A contract's dedicated engineer gets its tickets first (and the deputy is
copied on their notices); the contract type sets the default line (application
support starts at L2); ``[[routing]]`` rules in the config, checked in order,
override line, assignee and priority by contract, contract type, sender domain,
subject keywords and whether a person or a monitoring system wrote. Last, a
customer may raise the priority with a subject keyword such as ``[CRITICAL]``
or ``[АВАРИЯ]``, but only when the contract allows it, because otherwise every
request would soon be critical. :func:`decide` is pure; :func:`stamp` writes
the decision on the ticket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailticket.config import Config, RoutingRule
from mailticket.model import Contract, ContractType, Line, Priority
from mailticket.policy.contracts import domain_listed

# First line per contract type when [contract_types.TYPE] does not say.
DEFAULT_LINES: dict[ContractType, Line] = {
    ContractType.TECHNICAL_SUPPORT: Line.L1,
    ContractType.APPLICATION_SUPPORT: Line.L2,
    ContractType.COMPLEX: Line.L1,
}

# Words a customer may put in square brackets in the subject, English and Russian.
SUBJECT_PRIORITIES: dict[str, Priority] = {
    **dict.fromkeys(("critical", "crit", "emergency", "outage", "авария", "критично",
                     "критический", "критичный"), Priority.CRITICAL),
    **dict.fromkeys(("major", "high", "urgent", "срочно", "высокий", "важно"), Priority.MAJOR),
    **dict.fromkeys(("minor", "low", "низкий", "средний"), Priority.MINOR),
    **dict.fromkeys(("question", "вопрос", "технический"), Priority.TECHNICAL),
}
_BRACKETED = re.compile(r"\[\s*([^\[\]#]{2,30}?)\s*\]")


@dataclass(frozen=True)
class Route:
    """Where a new ticket goes, and why (for the audit log)."""

    priority: Priority
    line: Line
    assignee: str | None
    contract_type: str | None
    rule: str | None = None
    priority_from: str = "default"


def subject_priority(subject: str) -> Priority | None:
    """The priority named by the first bracketed keyword in a subject, if any."""
    for match in _BRACKETED.finditer(subject):
        value = SUBJECT_PRIORITIES.get(match.group(1).casefold().replace("ё", "е"))
        if value is not None:
            return value
    return None


def _has_keyword(subject: str, keywords: tuple[str, ...]) -> bool:
    folded = subject.casefold()
    return any(
        re.search(rf"(?<!\w){re.escape(word.casefold())}(?!\w)", folded) for word in keywords
    )


def rule_matches(
    rule: RoutingRule, contract: Contract | None, sender: str, subject: str, monitoring: bool
) -> bool:
    """Whether every condition the rule gives holds; a rule without conditions matches all."""
    if rule.contracts and (contract is None or contract.id not in rule.contracts):
        return False
    if rule.contract_types and (
        contract is None or contract.contract_type.value not in rule.contract_types
    ):
        return False
    if rule.sender_domains and not domain_listed(sender, rule.sender_domains):
        return False
    if rule.subject_keywords and not _has_keyword(subject, rule.subject_keywords):
        return False
    if rule.source == "human" and monitoring:
        return False
    return not (rule.source == "monitoring" and not monitoring)


def decide(
    config: Config,
    contract: Contract | None,
    *,
    sender: str,
    subject: str,
    monitoring: bool = False,
    priority: Priority = Priority.MINOR,
) -> Route:
    """Route a new ticket: contract defaults, then the first matching rule, then the subject.

    :param priority: the starting priority (an alert's severity, or minor for mail).
    """
    ctype = contract.contract_type if contract is not None else None
    line = Line.L1
    if ctype is not None:
        configured = config.contract_types.get(ctype.value)
        line = Line(configured.line) if configured and configured.line else DEFAULT_LINES[ctype]
    assignee = contract.dedicated_engineer if contract is not None else None
    source = "alert" if monitoring else "default"
    rule_name = None
    for rule in config.routing:
        if rule_matches(rule, contract, sender, subject, monitoring):
            rule_name = rule.name
            line = Line(rule.line) if rule.line else line
            assignee = rule.assignee or assignee
            if rule.priority:
                priority, source = Priority(rule.priority), "rule"
            break
    if not monitoring and contract is not None and contract.allow_subject_priority:
        asked = subject_priority(subject)
        if asked is not None:
            priority, source = asked, "subject"
    return Route(priority, line, assignee, ctype.value if ctype else None, rule_name, source)


def notice_recipients(
    config: Config, contract_id: str | None, assignee: str | None
) -> list[str] | None:
    """The dedicated engineer and deputy on the contract's tickets; None: the usual people."""
    contract = config.contracts.get(contract_id or "")
    if contract is None or not contract.deputy_engineer or not assignee:
        return None
    if assignee != contract.dedicated_engineer:
        return None
    return [assignee, contract.deputy_engineer]
