"""Validate the contract features beyond plain tickets: monitoring, routing, types, KB, feedback.

These sections are read after engineers and contracts exist, so every reference
(a routing rule's assignee, a contract type's SLA plan) is checked against the
real ids, and each mistake is reported with its file line like the rest of the
config. Regexes of generic monitoring rules are compiled here, once, so a typo
is a config problem and not an exception on the first alert.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mailticket.config.locate import Key
from mailticket.config.read import (
    Problems,
    absolute,
    as_table,
    check_choice,
    check_keys,
    domain_problem,
    get_value,
    read_addresses,
    read_fields,
    unknown_reference,
)
from mailticket.config.settings import (
    ContractTypeConfig,
    FeedbackConfig,
    KbConfig,
    RoutingRule,
    parse_duration,
)
from mailticket.model import ContractType, Line, MonitoringSource, Priority

FORMATS = ("zabbix", "alertmanager", "nagios", "generic")
SOURCES = ("any", "human", "monitoring")
_TYPES = tuple(t.value for t in ContractType)
_PRIORITIES = tuple(p.value for p in Priority)
_LINES = tuple(line.value for line in Line)
_MONITORING_KEYS = (
    "senders",
    "format",
    "on_recovery",
    "flap_window",
    "severity_map",
    "contacts",
    "problem_subject",
    "recovery_subject",
    "host_pattern",
    "trigger_pattern",
    "severity_pattern",
)
_PATTERNS = (
    "problem_subject",
    "recovery_subject",
    "host_pattern",
    "trigger_pattern",
    "severity_pattern",
)


def read_contract_type(p: Problems, table: Mapping[str, Any], path: Key) -> ContractType:
    """A contract's ``contract_type``; technical support when it is missing or wrong."""
    value: str = get_value(p, table, path, "contract_type", str, ContractType.TECHNICAL_SUPPORT)
    if value not in _TYPES:
        p.add((*path, "contract_type"), f"must be one of {', '.join(_TYPES)}")
        return ContractType.TECHNICAL_SUPPORT
    return ContractType(value)


def read_monitoring(
    p: Problems, raw: object, path: Key, seen: dict[str, Key], has_contacts: bool
) -> tuple[MonitoringSource, ...]:
    """A contract's ``[[contracts.monitoring]]`` sources; one sender belongs to one source only."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        p.add(path, "expected [[contracts.monitoring]] tables")
        return ()
    out = []
    for index, table in enumerate(raw):
        here: Key = (*path, index)
        before = len(p.items)
        check_keys(p, table, here, _MONITORING_KEYS)
        given: tuple[str, ...] = get_value(p, table, here, "senders", tuple[str, ...], (),
                                           required=True)
        senders = read_addresses(p, given, (*here, "senders"), seen=seen)
        if "senders" in table and not given:
            p.add((*here, "senders"), "must list at least one address")
        fmt: str = get_value(p, table, here, "format", str, "zabbix")
        if fmt not in FORMATS:
            p.add((*here, "format"), f"must be one of {', '.join(FORMATS)}")
        on_recovery: str = get_value(p, table, here, "on_recovery", str, "resolve")
        if on_recovery not in ("resolve", "note"):
            p.add((*here, "on_recovery"), "must be one of resolve, note")
        flap = parse_duration(table.get("flap_window", 60))
        if flap is None or flap < 0:
            p.add((*here, "flap_window"), 'expected a duration such as "1h" or "30m"')
            flap = 60
        contacts = read_addresses(
            p, get_value(p, table, here, "contacts", tuple[str, ...], ()), (*here, "contacts")
        )
        if not contacts and not has_contacts:
            p.add((*here, "contacts"), "required when the contract lists no contacts: "
                  "engineers' replies on alert tickets go to these addresses")
        patterns = {key: _pattern(p, table, here, key) for key in _PATTERNS}
        severity_map = _severity_map(p, table, here)
        if fmt == "generic" and not patterns["problem_subject"]:
            p.add((*here, "problem_subject"), 'required when format = "generic"')
        if len(p.items) == before:
            out.append(MonitoringSource(
                senders=senders, format=fmt, on_recovery=on_recovery, flap_window_minutes=flap,
                severity_map=severity_map, contacts=contacts, **patterns,
            ))
    return tuple(out)


def _pattern(p: Problems, table: Mapping[str, Any], path: Key, key: str) -> str:
    """A regex that compiles; a problem subject must name the ``host`` and ``trigger`` groups."""
    value: str = get_value(p, table, path, key, str, "")
    if not value:
        return ""
    try:
        compiled = re.compile(value)
    except re.error as exc:
        p.add((*path, key), f"invalid regular expression: {exc}")
        return ""
    needed = {"host", "trigger"} if key in ("problem_subject", "recovery_subject") else set()
    missing = needed - set(compiled.groupindex)
    if key.endswith("_pattern") and compiled.groups < 1:
        p.add((*path, key), "needs one group, (...), around the value")
    elif missing:
        names = sorted(missing)
        p.add((*path, key), f"needs the named groups {', '.join(names)}, "
              f"e.g. (?P<{names[0]}>\\S+)")
    return value


def _severity_map(p: Problems, table: Mapping[str, Any], path: Key) -> tuple[tuple[str, str], ...]:
    """``severity_map = { Average = "major" }``: severity words to priorities."""
    raw = table.get("severity_map")
    if raw is None:
        return ()
    mapping = as_table(p, raw, (*path, "severity_map"))
    out = []
    for word, value in (mapping or {}).items():
        if value not in _PRIORITIES:
            p.add((*path, "severity_map", word), f"must be one of {', '.join(_PRIORITIES)}")
        else:
            out.append((word.casefold(), value))
    return tuple(out)


def read_contract_types(
    p: Problems, table: Mapping[str, Any], plan_ids: set[str]
) -> dict[str, ContractTypeConfig]:
    """``[contract_types.TYPE]``: a default SLA plan and first line per contract type."""
    out: dict[str, ContractTypeConfig] = {}
    for name, raw in table.items():
        path: Key = ("contract_types", name)
        if name not in _TYPES:
            p.add(path, f"unknown contract type; expected one of {', '.join(_TYPES)}")
            continue
        sub = as_table(p, raw, path)
        if sub is None:
            continue
        values, _ = read_fields(p, sub, path, ContractTypeConfig)
        if values.get("sla_plan") is not None and values["sla_plan"] not in plan_ids:
            p.add((*path, "sla_plan"),
                  unknown_reference("SLA plan", values["sla_plan"], plan_ids, "plans"))
        if "line" in values:
            values["line"] = values["line"].upper()
            check_choice(p, values, path, "line", _LINES)
        out[name] = ContractTypeConfig(**values)
    return out


def read_routing(
    p: Problems, raw: object, contract_ids: set[str], engineer_ids: set[str]
) -> tuple[RoutingRule, ...]:
    """``[[routing]]`` rules in file order, every reference checked."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        p.add(("routing",), "expected [[routing]] tables")
        return ()
    out = []
    for index, table in enumerate(raw):
        path: Key = ("routing", index)
        before = len(p.items)
        values, _ = read_fields(p, table, path, RoutingRule)
        for offset, cid in enumerate(values.get("contracts", ())):
            if cid not in contract_ids:
                p.add((*path, "contracts", offset),
                      unknown_reference("contract", cid, contract_ids, "contracts"))
        for offset, kind in enumerate(values.get("contract_types", ())):
            if kind not in _TYPES:
                p.add((*path, "contract_types", offset), f"must be one of {', '.join(_TYPES)}")
        domains = tuple(d.strip().lower().removeprefix("@")
                        for d in values.get("sender_domains", ()))
        for offset, domain in enumerate(domains):
            problem = domain_problem(domain)
            if problem:
                p.add((*path, "sender_domains", offset), problem)
        values["sender_domains"] = domains
        check_choice(p, values, path, "source", SOURCES)
        if "line" in values:
            values["line"] = values["line"].upper()
            check_choice(p, values, path, "line", _LINES)
        check_choice(p, values, path, "priority", _PRIORITIES)
        if "assignee" in values:
            values["assignee"] = values["assignee"].strip().lower()
            if values["assignee"] not in engineer_ids:
                p.add((*path, "assignee"), unknown_reference(
                    "engineer", values["assignee"], engineer_ids, "engineers"))
        if not any(key in table for key in ("line", "assignee", "priority")):
            p.add(path, "sets nothing: give line, assignee or priority")
        if len(p.items) == before:
            out.append(RoutingRule(**{"name": f"routing[{index}]", **values}))
    return tuple(out)


def read_kb(p: Problems, table: Mapping[str, Any], base: Path) -> KbConfig:
    """``[kb]``: the article folder (relative to the config file) and suggestion settings."""
    path: Key = ("kb",)
    values, _ = read_fields(p, table, path, KbConfig)
    if "dir" in values:
        values["dir"] = absolute(base, values["dir"])
        if not values["dir"].is_dir():
            p.add((*path, "dir"), f"directory not found: {values['dir']}")
    if values.get("suggestions", 0) < 0:
        p.add((*path, "suggestions"), "must be at least 0")
    if not 0 <= values.get("min_score", 0) <= 1:
        p.add((*path, "min_score"), "must be between 0 and 1")
    return KbConfig(**values)


def read_feedback(p: Problems, table: Mapping[str, Any]) -> FeedbackConfig:
    """``[feedback]``: rating requests and the low-rating threshold."""
    path: Key = ("feedback",)
    values, _ = read_fields(p, table, path, FeedbackConfig)
    if not 1 <= values.get("low_rating", 2) <= 5:
        p.add((*path, "low_rating"), "must be 1-5")
    lines = tuple(line.upper() for line in values.get("notify_lines", ("L3",)))
    for offset, line in enumerate(lines):
        if line not in _LINES:
            p.add((*path, "notify_lines", offset), f"must be one of {', '.join(_LINES)}")
    values["notify_lines"] = lines
    return FeedbackConfig(**values)
