"""Alert mail of Zabbix, Alertmanager, Nagios/Icinga and generic rules → Alert values."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.mails import build

from mailticket.config.features import read_monitoring
from mailticket.config.read import Problems
from mailticket.mail.parse import parse
from mailticket.model import Contract, Envelope, MonitoringSource, Priority
from mailticket.policy.monitoring import (
    AlertState,
    ParsedAlert,
    parse_alert,
    recognise,
    severity_priority,
)

ZABBIX = MonitoringSource(senders=("zabbix@initech.example",), format="zabbix")
AM = MonitoringSource(senders=("am@initech.example",), format="alertmanager")
NAGIOS = MonitoringSource(senders=("nagios@initech.example",), format="nagios")
GENERIC = MonitoringSource(
    senders=("robot@initech.example",),
    format="generic",
    problem_subject=r"^BACKUP FAILED: (?P<trigger>.+) on (?P<host>\S+)$",
    recovery_subject=r"^BACKUP OK: (?P<trigger>.+) on (?P<host>\S+)$",
    severity_pattern=r"^Level: (\w+)",
)

ZABBIX_PROBLEM_BODY = """Problem started at 10:15:32 on 2026.11.20
Problem name: High CPU utilization (over 90% for 5m)
Host: web01
Severity: High
Operational data: Current utilization: 95.2 %
Original problem ID: 4711
"""
ZABBIX_RESOLVED_BODY = """Problem has been resolved at 10:20:32 on 2026.11.20
Problem name: High CPU utilization (over 90% for 5m)
Problem duration: 5m 0s
Host: web01
Severity: High
Original problem ID: 4711
"""
AM_BODY = """View in Alertmanager <http://am>
[1] Firing
Labels
alertname = PostgresDown
instance = db01:9187
job = postgres
severity = critical
Annotations
summary = PostgreSQL is down
"""
NAGIOS_BODY = """***** Nagios *****

Notification Type: PROBLEM

Service: HTTP
Host: web01
Address: 10.0.0.5
State: CRITICAL
"""


@pytest.mark.parametrize(
    ("source", "subject", "body", "expected"),
    [
        (ZABBIX, "Problem: High CPU utilization (over 90% for 5m)", ZABBIX_PROBLEM_BODY,
         ParsedAlert(AlertState.PROBLEM, "web01", "High CPU utilization (over 90% for 5m)",
                     "High", "4711")),
        (ZABBIX, "Resolved in 5m 0s: High CPU utilization (over 90% for 5m)",
         ZABBIX_RESOLVED_BODY,
         ParsedAlert(AlertState.OK, "web01", "High CPU utilization (over 90% for 5m)",
                     "High", "4711")),
        (ZABBIX, "Resolved: Disk full", "Host: db01\nSeverity: Disaster\n",
         ParsedAlert(AlertState.OK, "db01", "Disk full", "Disaster")),
        # Zabbix 3/4 defaults: "PROBLEM:"/"OK:" with Trigger lines.
        (ZABBIX, "PROBLEM: Zabbix agent on app02 is unreachable",
         "Trigger: Zabbix agent on app02 is unreachable\nTrigger severity: Average\n"
         "Original event ID: 99\n",
         ParsedAlert(AlertState.PROBLEM, "app02 is unreachable",
                     "Zabbix agent on app02 is unreachable", "Average", "99")),
        (ZABBIX, "Updated problem in 1h: Disk full", "Host: db01\nSeverity: High\n",
         ParsedAlert(AlertState.INFO, "db01", "Disk full", "High")),
        (AM, "[FIRING:1] PostgresDown (db01:9187 postgres critical)", AM_BODY,
         ParsedAlert(AlertState.PROBLEM, "db01:9187", "PostgresDown", "critical")),
        (AM, "[RESOLVED] PostgresDown (db01:9187 postgres critical)", "",
         ParsedAlert(AlertState.OK, "db01:9187", "PostgresDown", "critical")),
        (NAGIOS, "** PROBLEM Service Alert: web01/HTTP is CRITICAL **", NAGIOS_BODY,
         ParsedAlert(AlertState.PROBLEM, "web01", "HTTP", "CRITICAL")),
        (NAGIOS, "** RECOVERY Service Alert: web01/HTTP is OK **", "",
         ParsedAlert(AlertState.OK, "web01", "HTTP", "OK")),
        (NAGIOS, "** PROBLEM Host Alert: gw1 is DOWN **", "",
         ParsedAlert(AlertState.PROBLEM, "gw1", "host status", "DOWN")),
        (NAGIOS, "** ACKNOWLEDGEMENT Service Alert: web01/HTTP is CRITICAL **", "",
         ParsedAlert(AlertState.INFO, "web01", "HTTP", "CRITICAL")),
        (NAGIOS, "[PROBLEM] disk /var on fs01.initech.example is WARNING!", "",
         ParsedAlert(AlertState.PROBLEM, "fs01.initech.example", "disk /var", "WARNING")),
        (NAGIOS, "[RECOVERY] Host fs01 is UP!", "",
         ParsedAlert(AlertState.OK, "fs01", "host status", "UP")),
        (GENERIC, "BACKUP FAILED: nightly full on nas1", "Level: high\n",
         ParsedAlert(AlertState.PROBLEM, "nas1", "nightly full", "high")),
        (GENERIC, "BACKUP OK: nightly full on nas1", "",
         ParsedAlert(AlertState.OK, "nas1", "nightly full", "")),
    ],
)
def test_formats(source: MonitoringSource, subject: str, body: str, expected: ParsedAlert) -> None:
    assert parse_alert(source, subject, body) == expected


@pytest.mark.parametrize(
    ("source", "subject"),
    [
        (ZABBIX, "Как настроить триггер?"),
        (AM, "PostgresDown"),
        (NAGIOS, "Weekly report"),
        (GENERIC, "BACKUP STARTED: nightly full on nas1"),
    ],
)
def test_other_mail_from_a_monitoring_sender_is_not_an_alert(
    source: MonitoringSource, subject: str
) -> None:
    assert parse_alert(source, subject, "Hello") is None


def test_severity_table_and_contract_overrides() -> None:
    assert [severity_priority(ZABBIX, s) for s in
            ("Disaster", "High", "Average", "Warning", "Information", "Not classified", "???")] == [
        Priority.CRITICAL, Priority.MAJOR, Priority.MINOR, Priority.MINOR, Priority.TECHNICAL,
        Priority.TECHNICAL, Priority.MINOR]
    custom = MonitoringSource(senders=("z@x.example",), severity_map=(("average", "major"),))
    assert severity_priority(custom, "AVERAGE") == Priority.MAJOR
    assert severity_priority(custom, "Высокая") == Priority.MAJOR


CONTRACTS = {
    "initech": Contract(id="initech", name="Initech", sla_plan="standard",
                        domains=("initech.example",), monitoring=(ZABBIX, AM)),
}


def test_recognise_by_from_or_envelope_and_key_is_per_contract_host_trigger() -> None:
    raw = build(from_="Zabbix <ZABBIX@initech.example>", subject="Problem: Disk full",
                body="Host: DB01\nSeverity: Disaster\n")
    found = recognise(CONTRACTS, parse(raw), Envelope("bounces@initech.example", ()))
    assert found is not None and found.alert is not None
    assert (found.contract.id, found.alert.priority, found.alert.state) == (
        "initech", Priority.CRITICAL, AlertState.PROBLEM)
    again = recognise(CONTRACTS, parse(build(from_="zabbix@initech.example",
                                             subject="Resolved: Disk full",
                                             body="Host: db01\n")), Envelope("", ()))
    assert again is not None and again.alert is not None
    assert again.alert.key == found.alert.key and len(found.alert.key) == 40
    # The envelope sender alone is enough (a relay that rewrites From).
    via_envelope = recognise(CONTRACTS, parse(build(from_="Monitoring <noreply@relay.example>",
                                                    subject="[RESOLVED] PostgresDown")),
                             Envelope("am@initech.example", ()))
    assert via_envelope is not None and via_envelope.source is AM


def test_people_and_unparsed_robot_mail() -> None:
    person = parse(build(from_="ops@initech.example", subject="Problem: printer"))
    assert recognise(CONTRACTS, person, Envelope("ops@initech.example", ())) is None
    chatter = parse(build(from_="zabbix@initech.example", subject="Zabbix weekly report"))
    found = recognise(CONTRACTS, chatter, Envelope("", ()))
    assert found is not None and found.alert is None
    assert found.reason == "no zabbix alert in this mail"


def test_config_problems_are_located() -> None:
    p = Problems("c.toml", None)
    raw = [
        {"senders": ["zabbix@initech.example"], "format": "snmp", "on_recovery": "close",
         "flap_window": "soon", "severity_map": {"High": "urgent"}},
        {"senders": ["zabbix@initech.example"], "format": "generic",
         "problem_subject": "(?P<host>x", "host_pattern": "no group"},
        {"senders": ["r@initech.example"], "format": "generic", "problem_subject": "^(?P<host>x)$"},
    ]
    assert read_monitoring(p, raw, ("contracts", 0, "monitoring"), {}, has_contacts=False) == ()
    assert [(i.key, i.reason) for i in p.items] == [
        ("contracts[0].monitoring[0].format",
         "must be one of zabbix, alertmanager, nagios, generic"),
        ("contracts[0].monitoring[0].on_recovery", "must be one of resolve, note"),
        ("contracts[0].monitoring[0].flap_window", 'expected a duration such as "1h" or "30m"'),
        ("contracts[0].monitoring[0].contacts",
         "required when the contract lists no contacts: engineers' replies on alert tickets go "
         "to these addresses"),
        ("contracts[0].monitoring[0].severity_map.High",
         "must be one of critical, major, minor, technical"),
        ("contracts[0].monitoring[1].senders[0]",
         "duplicate address 'zabbix@initech.example' (also at line 1)"),
        ("contracts[0].monitoring[1].contacts",
         "required when the contract lists no contacts: engineers' replies on alert tickets go "
         "to these addresses"),
        ("contracts[0].monitoring[1].problem_subject",
         "invalid regular expression: missing ), unterminated subpattern at position 0"),
        ("contracts[0].monitoring[1].host_pattern", "needs one group, (...), around the value"),
        ("contracts[0].monitoring[1].problem_subject", 'required when format = "generic"'),
        ("contracts[0].monitoring[2].contacts",
         "required when the contract lists no contacts: engineers' replies on alert tickets go "
         "to these addresses"),
        ("contracts[0].monitoring[2].problem_subject",
         "needs the named groups trigger, e.g. (?P<trigger>\\S+)"),
    ]


def test_example_config_shows_every_format(tmp_path: Path) -> None:
    from mailticket import config

    cfg = config.load(Path(__file__).resolve().parents[2] / "config.example.toml")
    formats = {s.format for c in cfg.contracts.values() for s in c.monitoring}
    assert formats == {"zabbix", "alertmanager", "nagios", "generic"}
