"""Validate a whole config file: read it, parse the TOML, check every section.

This is where :func:`mailticket.config.settings.load` and :func:`~mailticket.config.settings.check`
do their work. It reads the process-level sections (daemon, database, listeners,
relay, mail, worker, imap) itself and hands calendars and SLA plans to
``config_sla``, engineers and contracts to ``config_contracts``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

from mailticket.config.contracts import read_contracts, read_engineers
from mailticket.config.digest import read_digest
from mailticket.config.features import read_contract_types, read_feedback, read_kb, read_routing
from mailticket.config.locate import Key, Locator
from mailticket.config.read import (
    ID,
    ID_REASON,
    Problems,
    absolute,
    address_problem,
    as_table,
    check_choice,
    check_keys,
    check_minimum,
    check_port,
    check_positive,
    check_retry_range,
    domain_problem,
    get_value,
    is_loopback,
    read_addresses,
    read_fields,
    resolve_file,
)
from mailticket.config.settings import (
    EVIDENCE_LEVELS,
    EVIDENCE_SENDER,
    LOCALES,
    REPLY_TOKEN_DAYS,
    Config,
    DaemonConfig,
    DatabaseConfig,
    ImapAccountConfig,
    ListenerConfig,
    MailConfig,
    RelayConfig,
    WorkerConfig,
    engineer_evidence,
)
from mailticket.config.sla import (
    calendar_warnings,
    read_calendars,
    read_oncall,
    read_plans,
    read_reports,
)
from mailticket.errors import ConfigProblem

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TICKET_PREFIX = re.compile(r"[A-Z][A-Z0-9]{0,9}")
_SECTIONS = (
    "daemon",
    "database",
    "listeners",
    "relay",
    "mail",
    "worker",
    "imap",
    "calendars",
    "sla_plans",
    "engineers",
    "contracts",
    "contract_types",
    "routing",
    "kb",
    "feedback",
    "oncall",
    "reports",
    "digest",
)


def validate_file(path: Path, today: date) -> tuple[Config | None, list[ConfigProblem]]:
    """Read, parse and validate one file: the config (None on problems) and all problems."""
    file = str(path)
    try:
        data_bytes = path.read_bytes()
    except FileNotFoundError:
        return None, [ConfigProblem(file, 0, "", f"file not found: {path.absolute()}")]
    except OSError as exc:
        return None, [ConfigProblem(file, 0, "", f"cannot read the file: {exc.strerror}")]
    try:
        text = data_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data_bytes.count(b"\n", 0, exc.start) + 1
        return None, [ConfigProblem(file, line, "", "not valid UTF-8")]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", str(exc))
        line = int(match.group(1)) if match else text.count("\n") + 1
        reason = str(exc)[: match.start()] + f" (column {match.group(2)})" if match else str(exc)
        return None, [ConfigProblem(file, line, "", f"invalid TOML: {reason}")]
    p = Problems(file, Locator(text))
    config = _read_config(p, data, path.absolute(), today)
    problems = sorted(p.items, key=lambda problem: problem.line)
    return (None if problems else config), problems


def _read_config(p: Problems, data: dict[str, Any], path: Path, today: date) -> Config:
    """Validate every section; cross-references use ids even from invalid entries.

    ``today`` picks the years whose national decrees must be known (warnings only).
    """
    check_keys(p, data, (), _SECTIONS)
    base = path.parent
    tables = {
        name: (as_table(p, data[name], (name,)) if name in data else None) or {}
        for name in ("daemon", "database", "relay", "mail", "worker", "calendars", "sla_plans",
                     "contract_types", "kb", "feedback", "oncall", "reports", "digest")
    }
    daemon, templates_dir = _read_daemon(p, tables["daemon"], base)
    mail = _read_mail(p, tables["mail"])
    listeners = _read_listeners(p, data.get("listeners"), base)
    calendars = read_calendars(p, tables["calendars"])
    warnings = Problems(p.file, p.locator)
    if mail.from_address and mail.from_address not in mail.support_addresses:
        warnings.add(
            ("mail", "from_address"),
            f"{mail.from_address!r} is not one of mail.support_addresses: replies to our mail "
            "and bounces to its VERP sender are built on it and would be refused at RCPT",
        )
    calendar_warnings(warnings, calendars, today)
    plans = read_plans(p, tables["sla_plans"], set(tables["calendars"]))
    engineers, engineer_ids = read_engineers(p, data.get("engineers"), mail, set(tables["calendars"]))
    contract_types = read_contract_types(p, tables["contract_types"], set(tables["sla_plans"]))
    type_plans = {k: v.sla_plan for k, v in contract_types.items() if v.sla_plan}
    contracts = read_contracts(
        p, data.get("contracts"), set(tables["sla_plans"]), engineer_ids, mail, type_plans
    )
    routing = read_routing(p, data.get("routing"), set(contracts), engineer_ids)
    exposed = [listener for listener in listeners if not is_loopback(listener.host)]
    if mail.reply_token_secret == "change-me" and exposed:
        where = f"{exposed[0].host}:{exposed[0].port}"
        p.add(
            ("mail", "reply_token_secret"),
            f"still 'change-me' while a listener binds {where}; set a long random secret",
        )
    config = Config(
        path=path,
        daemon=daemon,
        database=_read_database(p, tables["database"], base),
        listeners=listeners,
        imap=_read_imap(p, data.get("imap"), base, mail.support_addresses),
        relay=_read_relay(p, tables["relay"], base),
        mail=mail,
        worker=_read_worker(p, tables["worker"]),
        calendars=calendars,
        sla_plans=plans,
        engineers=engineers,
        contracts=contracts,
        templates_dir=templates_dir,
        routing=routing,
        contract_types=contract_types,
        kb=read_kb(p, tables["kb"], base),
        feedback=read_feedback(p, tables["feedback"]),
        oncall=read_oncall(p, tables["oncall"], engineer_ids),
        reports=read_reports(p, tables["reports"]),
        digest=read_digest(p, tables["digest"], engineer_ids, set(calendars)),
    )
    if engineers and engineer_evidence(config) == EVIDENCE_SENDER:
        warnings.add(
            ("mail", "engineer_evidence"),
            "token+sender: a reply token and a matching From act as the engineer; anyone who "
            "sees one engineer notice can act on that ticket. Configure trusted_authserv_ids "
            "or a submission listener and use token+authenticated",
        )
    return dataclasses.replace(
        config, warnings=tuple(sorted(warnings.items, key=lambda problem: problem.line))
    )


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


def _read_daemon(p: Problems, table: dict[str, Any], base: Path) -> tuple[DaemonConfig, Path]:
    """``[daemon]``, plus ``templates_dir`` which lives on :class:`Config` itself."""
    path: Key = ("daemon",)
    values, _ = read_fields(p, table, path, DaemonConfig, extra=("templates_dir",))
    if "instance_id" in values and not ID.fullmatch(values["instance_id"]):
        p.add((*path, "instance_id"), ID_REASON)
    check_minimum(p, values, path, "workers", 1)
    check_choice(p, values, path, "log_format", ("kv", "json"))
    if "log_level" in values:
        values["log_level"] = values["log_level"].upper()
        check_choice(p, values, path, "log_level", _LOG_LEVELS)
    check_positive(p, values, path, "poll_interval", "instance_grace")
    values["data_dir"] = absolute(base, values.get("data_dir", DaemonConfig.data_dir))
    templates = get_value(p, table, path, "templates_dir", Path, Path("templates"))
    return DaemonConfig(**values), absolute(base, templates)


def _read_database(p: Problems, table: dict[str, Any], base: Path) -> DatabaseConfig:
    """``[database]``: a SQLite or PostgreSQL URL."""
    values, _ = read_fields(p, table, ("database",), DatabaseConfig)
    url: str = values.get("url", DatabaseConfig.url)
    scheme = url.partition("://")[0] if "://" in url else ""
    dialect = scheme.partition("+")[0]
    if dialect == "sqlite":
        url = _sqlite_url(url, base)
    elif dialect != "postgresql":
        # Never echo the URL itself: it may carry a password.
        shown = f"scheme {scheme!r}" if scheme else "URL"
        p.add(
            ("database", "url"),
            f"unsupported database {shown}: use sqlite:///path or postgresql+psycopg://…",
        )
    return DatabaseConfig(url=url)


def _sqlite_url(url: str, base: Path) -> str:
    """Make the file of a ``sqlite:///relative/path`` URL absolute, so any cwd works."""
    prefix, sep, rest = url.partition(":///")
    target, question, query = rest.partition("?")
    if not sep or target in ("", ":memory:") or target.startswith(("/", "file:")):
        return url
    return f"{prefix}:///{absolute(base, Path(target))}{question}{query}"


def _read_listeners(p: Problems, raw: object, base: Path) -> tuple[ListenerConfig, ...]:
    """``[[listeners]]``; without any, the default loopback SMTP listener."""
    if raw is None:
        return (ListenerConfig(),)
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        p.add(("listeners",), "expected [[listeners]] tables")
        return ()
    out: list[ListenerConfig] = []
    seen: dict[tuple[str, int], Key] = {}
    for index, table in enumerate(raw):
        path: Key = ("listeners", index)
        values, _ = read_fields(p, table, path, ListenerConfig)
        check_choice(p, values, path, "protocol", ("smtp", "lmtp"))
        check_port(p, values, path)
        if values.get("hostname"):
            problem = domain_problem(values["hostname"])
            if problem:
                p.add((*path, "hostname"), problem)
        for key in (
            "max_message_size",
            "max_recipients",
            "timeout",
            "max_connections",
            "max_connections_per_ip",
        ):
            check_minimum(p, values, path, key, 1)
        check_minimum(p, values, path, "reserved_connections", 0)
        for spec in values.get("trusted_peers", ()):
            try:
                ipaddress.ip_network(spec, strict=False)
            except ValueError:
                p.add((*path, "trusted_peers"), f"{spec!r} is not an IP address or network")
        for key, other in (("tls_cert", "tls_key"), ("tls_key", "tls_cert")):
            resolve_file(p, values, path, key, base)
            if key in table and other not in table:
                p.add((*path, other), f"required when {key} is set")
        listener = ListenerConfig(**values)
        if listener.submission and listener.protocol != "smtp":
            p.add((*path, "submission"), 'requires protocol = "smtp"')
        if listener.submission and listener.tls_cert is None and not is_loopback(listener.host):
            p.add(
                (*path, "submission"),
                "a submission listener on a non-loopback host needs tls_cert and tls_key "
                "(AUTH only over TLS)",
            )
        if listener.require_starttls and listener.tls_cert is None:
            p.add((*path, "require_starttls"), "needs tls_cert and tls_key to offer STARTTLS")
        # The default reserve shrinks to fit a small max_connections (the limiter
        # always leaves strangers one slot); only a reserve asked for is checked.
        if (
            "reserved_connections" in table
            and listener.trusted_peers
            and listener.reserved_connections >= listener.max_connections >= 1
        ):
            p.add(
                (*path, "reserved_connections"),
                f"must be below max_connections ({listener.max_connections})",
            )
        if 1 <= listener.max_connections < listener.max_connections_per_ip:
            p.add(
                (*path, "max_connections_per_ip"),
                f"must not exceed max_connections ({listener.max_connections})",
            )
        where = (listener.host, listener.port)
        if where in seen:
            p.add(
                (*path, "port"),
                f"{listener.host}:{listener.port} is already used (line {p.line(seen[where])})",
            )
        seen.setdefault(where, (*path, "port"))
        out.append(listener)
    return tuple(out)


def _read_relay(p: Problems, table: dict[str, Any], base: Path) -> RelayConfig:
    """``[relay]``: the SMTP relay, or the maildir when no host is set."""
    path: Key = ("relay",)
    values, _ = read_fields(p, table, path, RelayConfig)
    check_port(p, values, path)
    check_choice(p, values, path, "tls", ("none", "starttls", "implicit"))
    check_positive(p, values, path, "timeout")
    check_minimum(p, values, path, "max_attempts", 1)
    check_retry_range(p, values, path)
    resolve_file(p, values, path, "ca_file", base)
    values["maildir"] = absolute(base, values.get("maildir", RelayConfig.maildir))
    relay = RelayConfig(**values)
    if relay.ca_file is not None and relay.tls == "none":
        p.add((*path, "ca_file"), 'is used only with tls = "starttls" or "implicit"')
    if (relay.username is None) != (relay.password is None):
        missing, given = (
            ("password", "username") if relay.password is None else ("username", "password")
        )
        p.add((*path, missing), f"required when {given} is set")
    if relay.host and relay.password and relay.tls == "none" and not is_loopback(relay.host):
        p.add((*path, "tls"), 'would send the password in clear text; use "starttls" or "implicit"')
    return relay


MINUTES_PER_DAY = 1440


def _read_mail(p: Problems, table: dict[str, Any]) -> MailConfig:
    """``[mail]``: our addresses and the look of our mail."""
    path: Key = ("mail",)
    overrides = table.get("auto_reply_overrides")
    plain = {k: v for k, v in table.items() if k != "auto_reply_overrides"}
    values, _ = read_fields(p, plain, path, MailConfig, extra=("auto_reply_overrides",))
    if overrides is not None:
        values["auto_reply_overrides"] = _read_overrides(
            p, overrides, (*path, "auto_reply_overrides"))
    if "support_addresses" in values:
        key = (*path, "support_addresses")
        values["support_addresses"] = read_addresses(
            p, values["support_addresses"], key, plus=False
        )
        if not table["support_addresses"]:
            p.add(key, "must list at least one address")
    if "admin_addresses" in values:
        values["admin_addresses"] = read_addresses(
            p, values["admin_addresses"], (*path, "admin_addresses")
        )
    if values.get("from_address"):
        [address] = read_addresses(p, [values["from_address"]], (*path, "from_address"),
                                   plus=False) or [""]
        values["from_address"] = address
    if "from_name" in values and ("\r" in values["from_name"] or "\n" in values["from_name"]):
        p.add((*path, "from_name"), "must not contain line breaks")
    if "message_id_domain" in values:
        values["message_id_domain"] = values["message_id_domain"].lower()
        problem = domain_problem(values["message_id_domain"])
        if problem:
            p.add((*path, "message_id_domain"), problem)
    if "ticket_prefix" in values and not _TICKET_PREFIX.fullmatch(values["ticket_prefix"]):
        p.add(
            (*path, "ticket_prefix"),
            "must be 1-10 upper-case letters or digits, starting with a letter",
        )
    check_choice(p, values, path, "default_locale", LOCALES)
    if values.get("reply_token_secret") == "":
        p.add((*path, "reply_token_secret"), "must not be empty")
    for name in ("unknown_sender_notices_per_day", "auto_replies_per_recipient_per_day"):
        check_minimum(p, values, path, name, 0)
    check_choice(p, values, path, "engineer_evidence", EVIDENCE_LEVELS)
    for name in ("admin_digest_minutes", "relay_alert_minutes"):
        check_minimum(p, values, path, name, 1)
    if values.get("admin_digest_minutes", 0) > MINUTES_PER_DAY:
        p.add((*path, "admin_digest_minutes"), f"must be at most {MINUTES_PER_DAY} (a day)")
        del values["admin_digest_minutes"]
    check_minimum(p, values, path, "command_token_days", 1)
    if values.get("command_token_days", 0) > REPLY_TOKEN_DAYS:
        p.add((*path, "command_token_days"),
              f"must be at most {REPLY_TOKEN_DAYS}, the lifetime of a reply token")
        del values["command_token_days"]
    if "trusted_authserv_ids" in values:
        # RFC 8601 authserv-ids compare case-insensitively, like domain names.
        values["trusted_authserv_ids"] = tuple(
            a.strip().lower() for a in values["trusted_authserv_ids"]
        )
    return MailConfig(**values)


def _read_overrides(p: Problems, raw: object, path: Key) -> dict[str, int]:
    """``[mail.auto_reply_overrides]``: address = automatic mails per 24 h (Znuny's per-address cap)."""
    table = as_table(p, raw, path) or {}
    result: dict[str, int] = {}
    for address, limit in table.items():
        problem = address_problem(address.strip())
        if problem:
            p.add((*path, address), problem)
        elif not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            p.add((*path, address), f"expected an integer >= 0, got {limit!r}")
        else:
            result[address.strip().lower()] = limit
    return result


def _read_worker(p: Problems, table: dict[str, Any]) -> WorkerConfig:
    """``[worker]``: the spool retry policy."""
    path: Key = ("worker",)
    values, _ = read_fields(p, table, path, WorkerConfig)
    check_minimum(p, values, path, "max_attempts", 1)
    check_positive(p, values, path, "lease_seconds")
    check_retry_range(p, values, path)
    return WorkerConfig(**values)


def _read_imap(
    p: Problems, raw: object, base: Path, support: tuple[str, ...]
) -> tuple[ImapAccountConfig, ...]:
    """``[[imap]]`` mailboxes; each stands for one of our support addresses."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        p.add(("imap",), "expected [[imap]] tables")
        return ()
    out: list[ImapAccountConfig] = []
    names: dict[str, Key] = {}
    for index, table in enumerate(raw):
        path: Key = ("imap", index)
        values, complete = read_fields(p, table, path, ImapAccountConfig)
        check_port(p, values, path)
        check_choice(p, values, path, "tls", ("implicit", "starttls", "none"))
        if values.get("tls") == "none" and not is_loopback(values.get("host", "")):
            p.add((*path, "tls"), 'tls = "none" is allowed only for a loopback host')
        resolve_file(p, values, path, "ca_file", base)
        resolve_file(p, values, path, "password_file", base)
        if "password" in table and "password_file" in table:
            p.add((*path, "password_file"), "set password or password_file, not both")
        elif "password" not in table and "password_file" not in table:
            p.add(path, "missing password or password_file")
        if "address" in values:
            values["address"] = values["address"].strip().lower()
            problem = address_problem(values["address"])
            if problem:
                p.add((*path, "address"), problem)
            elif values["address"] not in support:
                p.add(
                    (*path, "address"),
                    f"{values['address']!r} is not one of mail.support_addresses "
                    f"({', '.join(support)})",
                )
        name = values.get("name")
        if name is not None and name in names:
            p.add(
                (*path, "name"),
                f"duplicate IMAP account {name!r} (also at line {p.line(names[name])})",
            )
        elif name is not None:
            names[name] = (*path, "name")
        check_positive(p, values, path, "poll_interval")
        for key in ("batch_size", "max_message_size"):
            check_minimum(p, values, path, key, 1)
        if complete:
            out.append(ImapAccountConfig(**values))
    return tuple(out)
