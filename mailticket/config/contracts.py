"""Validate engineers and customer contracts: who may write to us and under which SLA plan.

References are checked across sections (a contract's plan and engineers must
exist), and one address or domain may belong to one engineer or contract only,
so ``auth`` can match a sender without ambiguity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mailticket.config.features import read_contract_type, read_monitoring
from mailticket.config.locate import Key
from mailticket.config.passwords import is_valid_hash
from mailticket.config.read import (
    ID,
    ID_REASON,
    Problems,
    address_problem,
    check_keys,
    domain_problem,
    get_value,
    read_addresses,
    read_entries,
    unknown_reference,
)
from mailticket.config.settings import LOCALES, MailConfig
from mailticket.config.sla import timezone_problem
from mailticket.model import Contract, Engineer, Line

_ENGINEER_KEYS = ("name", "line", "password_hash", "locale", "calendar", "timezone")
_LINES = ", ".join(line.value for line in Line)


def read_engineers(
    p: Problems, raw: object, mail: MailConfig, calendar_ids: set[str] | None = None
) -> tuple[dict[str, Engineer], set[str]]:
    """Engineers keyed by lower-cased address, and every well-formed address that was given.

    The second value lets contracts check their references without repeating
    an error about an engineer whose other fields are wrong. ``calendar_ids``
    are the calendars an engineer's ``calendar`` may name.
    """
    out: dict[str, Engineer] = {}
    seen: dict[str, Key] = {}
    for path, key, table in read_entries(p, raw, "engineers"):
        before = len(p.items)
        if key is None:
            check_keys(p, table, path, ("address", *_ENGINEER_KEYS))
            given: str | None = get_value(p, table, path, "address", str, required=True)
            address_path: Key = (*path, "address")
        else:
            check_keys(p, table, path, _ENGINEER_KEYS)
            given, address_path = key, path
        address = given.strip().lower() if given is not None else None
        if address is not None:
            problem = address_problem(address)
            if problem:
                p.add(address_path, problem)
            elif address in seen:
                p.add(
                    address_path,
                    f"duplicate engineer {address!r} (also at line {p.line(seen[address])})",
                )
            elif address in mail.support_addresses:
                p.add(address_path, f"{address!r} is a support address, not an engineer")
            else:
                seen[address] = address_path
        name: str | None = get_value(p, table, path, "name", str, required=True)
        line: str | None = get_value(p, table, path, "line", str, required=True)
        if line is not None and line.upper() not in {item.value for item in Line}:
            p.add((*path, "line"), f"must be one of {_LINES}")
        password_hash: str | None = get_value(p, table, path, "password_hash", str)
        if password_hash is not None and not is_valid_hash(password_hash):
            p.add((*path, "password_hash"),
                  "not a mailticket password hash; make one with `mailticket hash-password`")
            password_hash = None
        locale: str = get_value(p, table, path, "locale", str, mail.default_locale)
        if "locale" in table and locale not in LOCALES:
            p.add((*path, "locale"), f"must be one of {', '.join(LOCALES)}")
        calendar: str | None = get_value(p, table, path, "calendar", str)
        known = calendar_ids if calendar_ids is not None else set()
        if calendar is not None and calendar not in known:
            p.add((*path, "calendar"), unknown_reference("calendar", calendar, known, "calendars"))
        zone: str | None = get_value(p, table, path, "timezone", str)
        if zone is not None and (problem := timezone_problem(zone)) is not None:
            p.add((*path, "timezone"), problem)
        if len(p.items) == before and address and name is not None and line is not None:
            out[address] = Engineer(address, name, Line(line.upper()), password_hash, locale,
                                    calendar, zone)
    return out, set(seen)


_CONTRACT_KEYS = (
    "name",
    "sla_plan",
    "contacts",
    "domains",
    "locale",
    "dedicated_engineer",
    "deputy_engineer",
    "contract_type",
    "allow_subject_priority",
    "monitoring",
    "status_all_tickets",
)


def read_contracts(
    p: Problems, raw: object, plan_ids: set[str], engineer_ids: set[str], mail: MailConfig,
    type_plans: Mapping[str, str] | None = None,
) -> dict[str, Contract]:
    """``[[contracts]]`` (or ``[contracts.ID]``) with their references checked.

    :param type_plans: default SLA plan per contract type; a contract of such a
        type may leave ``sla_plan`` out.
    """
    out: dict[str, Contract] = {}
    ids: dict[str, Key] = {}
    contacts_seen: dict[str, Key] = {}
    domains_seen: dict[str, Key] = {}
    monitors_seen: dict[str, Key] = {}
    type_plans = type_plans or {}
    for path, key, table in read_entries(p, raw, "contracts"):
        before = len(p.items)
        if key is None:
            check_keys(p, table, path, ("id", *_CONTRACT_KEYS))
            cid: str | None = get_value(p, table, path, "id", str, required=True)
            id_path: Key = (*path, "id")
        else:
            check_keys(p, table, path, _CONTRACT_KEYS)
            cid, id_path = key, path
        if cid is not None and not ID.fullmatch(cid):
            p.add(id_path, ID_REASON)
        elif cid is not None and cid in ids:
            p.add(id_path, f"duplicate contract id {cid!r} (also at line {p.line(ids[cid])})")
        elif cid is not None:
            ids[cid] = id_path
        name: str = get_value(p, table, path, "name", str, cid or "")
        contract_type = read_contract_type(p, table, path)
        plan: str | None = get_value(p, table, path, "sla_plan", str, type_plans.get(contract_type),
                                     required=contract_type not in type_plans)
        if plan is not None and plan not in plan_ids:
            p.add((*path, "sla_plan"), unknown_reference("SLA plan", plan, plan_ids, "plans"))
        raw_contacts: tuple[str, ...] = get_value(p, table, path, "contacts", tuple[str, ...], ())
        contacts = read_addresses(p, raw_contacts, (*path, "contacts"), seen=contacts_seen)
        for index, contact in enumerate(raw_contacts):
            if contact.strip().lower() in engineer_ids | set(mail.support_addresses):
                p.add((*path, "contacts", index), f"{contact!r} is an engineer or support address")
        raw_domains: tuple[str, ...] = get_value(p, table, path, "domains", tuple[str, ...], ())
        domains = _domains(p, raw_domains, (*path, "domains"), domains_seen)
        if not raw_contacts and not raw_domains:
            p.add(path, "no contacts or domains: nobody could open a ticket under this contract")
        locale: str = get_value(p, table, path, "locale", str, mail.default_locale)
        if "locale" in table and locale not in LOCALES:
            p.add((*path, "locale"), f"must be one of {', '.join(LOCALES)}")
        engineers = {}
        for role in ("dedicated_engineer", "deputy_engineer"):
            value: str | None = get_value(p, table, path, role, str)
            engineers[role] = value.strip().lower() if value is not None else None
            if engineers[role] is not None and engineers[role] not in engineer_ids:
                p.add(
                    (*path, role),
                    unknown_reference("engineer", engineers[role] or "", engineer_ids, "engineers"),
                )
        if (
            engineers["deputy_engineer"]
            and engineers["deputy_engineer"] == engineers["dedicated_engineer"]
        ):
            p.add((*path, "deputy_engineer"), "is the same engineer as dedicated_engineer")
        monitoring = read_monitoring(p, table.get("monitoring"), (*path, "monitoring"),
                                     monitors_seen, bool(contacts))
        allow_subject_priority: bool = get_value(p, table, path, "allow_subject_priority", bool,
                                                 False)
        status_all_tickets: bool = get_value(p, table, path, "status_all_tickets", bool, False)
        if len(p.items) == before and cid is not None and plan is not None:
            out[cid] = Contract(
                id=cid,
                name=name,
                sla_plan=plan,
                contacts=contacts,
                domains=domains,
                locale=locale,
                dedicated_engineer=engineers["dedicated_engineer"],
                deputy_engineer=engineers["deputy_engineer"],
                contract_type=contract_type,
                allow_subject_priority=allow_subject_priority,
                monitoring=monitoring,
                status_all_tickets=status_all_tickets,
            )
    return out


def _domains(p: Problems, items: Iterable[str], path: Key, seen: dict[str, Key]) -> tuple[str, ...]:
    """Lower-cased customer domains; one domain may belong to one contract only."""
    out = []
    for index, raw in enumerate(items):
        domain = raw.strip().lower().removeprefix("@")
        problem = domain_problem(domain)
        if problem:
            p.add((*path, index), problem)
        elif domain in seen:
            p.add(
                (*path, index), f"duplicate domain {domain!r} (also at line {p.line(seen[domain])})"
            )
        else:
            seen[domain] = (*path, index)
            out.append(domain)
    return tuple(out)
