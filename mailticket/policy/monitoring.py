"""Read alert mail from a customer's monitoring system: who sent it and what it says.

Monitoring robots write in fixed formats, so their mail is not a request to
answer but a state change to record: "Problem: Disk full on db01" opens (or
adds to) a ticket, "Resolved: Disk full on db01" resolves it. This module only
reads: it recognises a configured monitoring sender *before* the classifier
would call the mail automatic and drop it, and turns the subject and body into
an :class:`Alert` (host, trigger, severity → priority, problem or ok). It knows
the default mail formats of Zabbix, Prometheus Alertmanager, Nagios and
Icinga 2, and generic rules with regexes from the config. Nothing here has side
effects; ``alert_tickets`` acts on the result.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mailticket.mail.parse import InboundMail
from mailticket.model import Contract, Envelope, MonitoringSource, Priority
from mailticket.policy.contracts import address_listed


class AlertState(enum.StrEnum):
    """What an alert mail says about its trigger."""

    PROBLEM = "problem"
    OK = "ok"
    # Acknowledgements, updates, downtime and flapping notices: recorded, nothing more.
    INFO = "info"


@dataclass(frozen=True)
class ParsedAlert:
    """The fields one alert mail carries, before the contract's severity table is applied."""

    state: AlertState
    host: str
    trigger: str
    severity: str = ""
    event_id: str = ""


@dataclass(frozen=True)
class Alert:
    """An alert of one contract's monitoring, ready to be put on a ticket."""

    contract_id: str
    source: MonitoringSource
    state: AlertState
    host: str
    trigger: str
    severity: str
    priority: Priority
    event_id: str = ""

    @property
    def key(self) -> str:
        """The identity of the trigger: one open ticket per contract, host and trigger."""
        text = "\x1f".join((self.contract_id, self.host.casefold(), self.trigger.casefold()))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


@dataclass(frozen=True)
class Recognised:
    """Mail from a configured monitoring sender; ``alert`` is None if its text was not an alert."""

    contract: Contract
    source: MonitoringSource
    alert: Alert | None
    reason: str


# Severity words of Zabbix (en/ru), Alertmanager labels and Nagios/Icinga states.
_SEVERITIES: dict[str, Priority] = {
    **dict.fromkeys(("disaster", "critical", "down", "emergency", "page", "чрезвычайная",
                     "критическая", "авария"), Priority.CRITICAL),
    **dict.fromkeys(("high", "major", "error", "unreachable", "высокая"), Priority.MAJOR),
    **dict.fromkeys(("average", "warning", "minor", "unknown", "средняя", "предупреждение"),
                    Priority.MINOR),
    **dict.fromkeys(("information", "info", "not classified", "none", "ok", "up",
                     "информация", "не классифицировано"), Priority.TECHNICAL),
}


def severity_priority(source: MonitoringSource, severity: str) -> Priority:
    """The priority of a severity word: the contract's table first, then the built-in one."""
    word = severity.strip().casefold()
    for name, value in source.severity_map:
        if name == word:
            return Priority(value)
    return _SEVERITIES.get(word, Priority.MINOR)


def find_source(
    contracts: Mapping[str, Contract], mail: InboundMail, envelope: Envelope
) -> tuple[Contract, MonitoringSource] | None:
    """The contract and monitoring source whose senders include the From (or envelope) address."""
    candidates = (mail.from_addr, envelope.mail_from)
    for contract in contracts.values():
        for source in contract.monitoring:
            if any(address_listed(c, source.senders) for c in candidates):
                return contract, source
    return None


def recognise(
    contracts: Mapping[str, Contract], mail: InboundMail, envelope: Envelope
) -> Recognised | None:
    """None for mail that is not from a monitoring sender; else what its alert says."""
    found = find_source(contracts, mail, envelope)
    if found is None:
        return None
    contract, source = found
    parsed = parse_alert(source, mail.subject, mail.text)
    if parsed is None:
        return Recognised(contract, source, None, f"no {source.format} alert in this mail")
    alert = Alert(
        contract_id=contract.id,
        source=source,
        state=parsed.state,
        host=parsed.host[:200],
        trigger=parsed.trigger[:500],
        severity=parsed.severity,
        priority=severity_priority(source, parsed.severity),
        event_id=parsed.event_id,
    )
    return Recognised(contract, source, alert, f"{source.format} {parsed.state}")


def parse_alert(source: MonitoringSource, subject: str, text: str) -> ParsedAlert | None:
    """Read one alert in the source's format; None when the mail is not one."""
    subject = " ".join(subject.split())
    return _PARSERS[source.format](source, subject, text)


def _field(text: str, *names: str) -> str:
    """The value of the first ``Name: value`` line (any of ``names``) in a body."""
    for name in names:
        match = re.search(rf"(?im)^[ \t]*{name}[ \t]*[:=][ \t]*(\S.*?)[ \t]*$", text)
        if match:
            return match.group(1)
    return ""


# Zabbix 5/6/7 default media type messages ("Problem: …", "Resolved in 5m: …",
# "Updated problem in 1h: …") and the older "PROBLEM:"/"OK:" of Zabbix 3/4.
_ZABBIX_SUBJECT = re.compile(
    r"^(?P<kind>problem|resolved(?: in [^:]+)?|ok|updated problem(?: in [^:]+)?|проблема"
    r"|решено(?: за [^:]+)?)\s*:\s*(?P<name>.+)$",
    re.IGNORECASE,
)


def _zabbix(source: MonitoringSource, subject: str, text: str) -> ParsedAlert | None:
    match = _ZABBIX_SUBJECT.match(subject)
    if match is None:
        return None
    kind = match.group("kind").casefold()
    if kind.startswith(("problem", "проблема")):
        state = AlertState.PROBLEM
    elif kind.startswith(("resolved", "ok", "решено")):
        state = AlertState.OK
    else:
        state = AlertState.INFO
    trigger = _field(text, "Problem name", "Trigger", "Имя проблемы", "Триггер") or match.group(
        "name"
    )
    host = _field(text, "Host", "Узел сети", "Хост")
    if not host:
        # "High CPU on web01": the default trigger names end with the host.
        host = match.group("name").rpartition(" on ")[2] if " on " in match.group("name") else "-"
    return ParsedAlert(
        state=state,
        host=host,
        trigger=trigger,
        severity=_field(text, "Severity", "Trigger severity", "Важность"),
        event_id=_field(text, r"Original (?:problem|event) ID", "Event ID", "ID проблемы"),
    )


_AM_SUBJECT = re.compile(r"^\[(?P<status>FIRING(?::\d+)?|RESOLVED)\]\s*(?P<rest>.*)$", re.I)


def _alertmanager(source: MonitoringSource, subject: str, text: str) -> ParsedAlert | None:
    """Alertmanager's default email: "[FIRING:1] Name (label values)" and "name = value" lines."""
    match = _AM_SUBJECT.match(subject)
    if match is None:
        return None
    state = AlertState.OK if match.group("status").upper() == "RESOLVED" else AlertState.PROBLEM
    rest = match.group("rest")
    values = re.findall(r"\(([^()]*)\)", rest)
    words = values[0].split() if values else []
    trigger = _field(text, "alertname") or (rest.split()[0] if rest.split() else "")
    host = _field(text, "instance", "host", "hostname") or (words[0] if words else "-")
    severity = _field(text, "severity") or next(
        (w for w in words if w.casefold() in _SEVERITIES), ""
    )
    if not trigger:
        return None
    return ParsedAlert(state, host, trigger, severity)


_NAGIOS_TYPES = {"PROBLEM": AlertState.PROBLEM, "RECOVERY": AlertState.OK}
_NAGIOS_SUBJECT = re.compile(
    r"^\*\*\s*(?P<type>[A-Z]+)\s+(?P<what>Service|Host)\s+Alert:\s*(?P<target>.+?)\s+is\s+"
    r"(?P<state>[A-Z]+)\s*\*\*$",
    re.IGNORECASE,
)
_ICINGA_HOST = re.compile(
    r"^\[(?P<type>[A-Z]+)\]\s+Host\s+(?P<host>.+?)\s+is\s+(?P<state>[A-Z]+)!?$", re.I
)
_ICINGA_SERVICE = re.compile(
    r"^\[(?P<type>[A-Z]+)\]\s+(?P<service>.+?)\s+on\s+(?P<host>.+?)\s+is\s+(?P<state>[A-Z]+)!?$",
    re.I,
)


def _nagios(source: MonitoringSource, subject: str, text: str) -> ParsedAlert | None:
    """Nagios "** PROBLEM Service Alert: web01/HTTP is CRITICAL **" and Icinga 2 "[PROBLEM] …"."""
    match = _NAGIOS_SUBJECT.match(subject)
    if match is not None:
        target = match.group("target")
        if match.group("what").lower() == "service" and "/" in target:
            host, _, trigger = target.partition("/")
        else:
            host, trigger = target, "host status"
    else:
        match = _ICINGA_HOST.match(subject) or _ICINGA_SERVICE.match(subject)
        if match is None:
            return None
        host = match.group("host")
        trigger = match.groupdict().get("service") or "host status"
    state = _NAGIOS_TYPES.get(match.group("type").upper(), AlertState.INFO)
    return ParsedAlert(state, host.strip(), trigger.strip(), match.group("state").upper())


def _generic(source: MonitoringSource, subject: str, text: str) -> ParsedAlert | None:
    """A source's own regexes: subject patterns with named groups, body patterns as fallback."""
    for pattern, state in (
        (source.recovery_subject, AlertState.OK),
        (source.problem_subject, AlertState.PROBLEM),
    ):
        match = re.search(pattern, subject) if pattern else None
        if match is None:
            continue
        groups = {k: v for k, v in match.groupdict().items() if v}
        host = groups.get("host") or _search(source.host_pattern, text)
        trigger = groups.get("trigger") or _search(source.trigger_pattern, text)
        severity = groups.get("severity") or _search(source.severity_pattern, text)
        if host and trigger:
            return ParsedAlert(state, host.strip(), trigger.strip(), severity.strip())
    return None


def _search(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.MULTILINE) if pattern else None
    return match.group(1) if match else ""


_PARSERS: dict[str, Callable[[MonitoringSource, str, str], ParsedAlert | None]] = {
    "zabbix": _zabbix,
    "alertmanager": _alertmanager,
    "nagios": _nagios,
    "generic": _generic,
}
