"""Typed test configs built in code, so tests say exactly which contract or engineer they rely on."""

from __future__ import annotations

import dataclasses
from datetime import date, time
from pathlib import Path
from typing import Any

from mailticket.config import (
    Config,
    DaemonConfig,
    DatabaseConfig,
    ListenerConfig,
    MailConfig,
    OncallConfig,
    RelayConfig,
    RoutingRule,
    WorkerConfig,
)
from mailticket.model import (
    Calendar,
    Contract,
    ContractType,
    Engineer,
    Interval,
    Line,
    MonitoringSource,
    Priority,
    PriorityTargets,
    SlaPlan,
)

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret-0123456789"

BUSINESS = (Interval(time(8, 0), time(20, 0)),)


def calendars() -> dict[str, Calendar]:
    """A 24/7 calendar and Moscow business hours Mon–Fri 08:00–20:00."""
    return {
        "24x7": Calendar(id="24x7", timezone="Europe/Moscow", week=((),) * 7, always_open=True),
        "msk": Calendar(
            id="msk", timezone="Europe/Moscow", week=(BUSINESS,) * 5 + ((), ())
        ),
    }


def plans() -> dict[str, SlaPlan]:
    """The shipped "standard" plan: critical 24/7 30 min / 4 h, the rest on business hours."""
    return {
        "standard": SlaPlan(
            id="standard",
            name="Standard",
            targets={
                Priority.CRITICAL: PriorityTargets(30, 240, "24x7"),
                Priority.MAJOR: PriorityTargets(120, 960, "msk"),
                Priority.MINOR: PriorityTargets(240, 2400, "msk"),
                Priority.TECHNICAL: PriorityTargets(480, 4800, "msk"),
            },
        )
    }


def standard_plan_toml(business: str = "24x7") -> str:
    """The daemon tests' "standard" plan as TOML: critical on ``24x7``, the rest on ``business``.

    Critical 30 min / 4 h, major 2 h / 12 h, minor 8 h / 36 h, technical 12 h / 120 h.
    """
    targets = {"critical": ("30m", "4h", "24x7"), "major": ("2h", "12h", business),
               "minor": ("8h", "36h", business), "technical": ("12h", "120h", business)}
    blocks = [f"""[sla_plans.standard.{name}]
first_response = "{first}"
resolution = "{resolution}"
calendar = "{calendar}"
""" for name, (first, resolution, calendar) in targets.items()]
    return '[sla_plans.standard]\nname = "Standard"\n' + "".join(blocks)


def engineers() -> dict[str, Engineer]:
    return {
        e.address: e
        for e in (
            Engineer("anna@provider.example", "Анна Петрова", Line.L1),
            Engineer("boris@provider.example", "Boris Ivanov", Line.L1, locale="en"),
            Engineer("vera@provider.example", "Вера Смирнова", Line.L2),
            Engineer("lead@provider.example", "Lead Engineer", Line.L3),
        )
    }


def contracts() -> dict[str, Contract]:
    return {
        "acme": Contract(
            id="acme",
            name="ООО «Акме»",
            sla_plan="standard",
            contacts=("ivan@gmail.example",),
            domains=("acme.example",),
            locale="ru",
        ),
        "globex": Contract(
            id="globex",
            name="Globex Corp",
            sla_plan="standard",
            domains=("globex.example",),
            locale="en",
            dedicated_engineer="boris@provider.example",
        ),
        # Monitoring, a deputy and customer priority keywords (issue 8).
        "initech": Contract(
            id="initech",
            name="Initech",
            sla_plan="standard",
            contacts=("ops@initech.example",),
            domains=("initech.example",),
            locale="ru",
            dedicated_engineer="vera@provider.example",
            deputy_engineer="anna@provider.example",
            contract_type=ContractType.COMPLEX,
            allow_subject_priority=True,
            monitoring=(
                MonitoringSource(senders=("zabbix@initech.example",), format="zabbix"),
                MonitoringSource(senders=("alertmanager@initech.example",), format="alertmanager",
                                 on_recovery="note"),
            ),
        ),
    }


def routing_rules() -> tuple[RoutingRule, ...]:
    """Rules that only touch the initech contract, so other tests route as before."""
    return (
        RoutingRule(name="initech databases", contracts=("initech",), source="monitoring",
                    subject_keywords=("postgres", "postgresql"), line="L3",
                    assignee="lead@provider.example"),
        RoutingRule(name="initech 1C", contracts=("initech",), source="human",
                    subject_keywords=("1С", "1C"), line="L2", priority="major"),
    )


def oncall() -> OncallConfig:
    """Two on-call pairs, weeks from Monday 2026-11-16 10:00 MSK: Anna+Vera, then Boris+Lead."""
    return OncallConfig(
        rota=(("anna@provider.example", "vera@provider.example"),
              ("boris@provider.example", "lead@provider.example")),
        start=date(2026, 11, 16),
        handover=time(10, 0),
        timezone="Europe/Moscow",
    )


def make_config(tmp: Path, db_url: str, **overrides: Any) -> Config:
    """A complete config writing outgoing mail to ``tmp/outgoing`` unless a relay is given."""
    mail = MailConfig(
        support_addresses=("support@provider.example",),
        from_name="Support",
        message_id_domain="mt.provider.example",
        ticket_prefix="MT",
        default_locale="ru",
        reply_token_secret=SECRET,
        admin_addresses=("admin@provider.example",),
        trusted_authserv_ids=("mx.provider.example",),
        # Most tests reply with the token alone; the evidence tests (issue 18) and the
        # conversation tests set "token+authenticated", the default for this config.
        engineer_evidence="token+sender",
    )
    cfg = Config(
        path=tmp / "test.toml",
        daemon=DaemonConfig(instance_id="mt-test", data_dir=tmp, workers=1, poll_interval=0.05),
        database=DatabaseConfig(url=db_url),
        listeners=(ListenerConfig(host="127.0.0.1", port=0),),
        relay=RelayConfig(maildir=tmp / "outgoing", retry_base_seconds=1, retry_max_seconds=5),
        mail=mail,
        worker=WorkerConfig(max_attempts=3, lease_seconds=30, retry_base_seconds=0.01,
                            retry_max_seconds=0.05),
        calendars=calendars(),
        sla_plans=plans(),
        engineers=engineers(),
        contracts=contracts(),
        templates_dir=REPO / "templates",
        oncall=oncall(),
        routing=routing_rules(),
    )
    mail_over = overrides.pop("mail", None)
    if mail_over:
        cfg = dataclasses.replace(cfg, mail=dataclasses.replace(cfg.mail, **mail_over))
    return dataclasses.replace(cfg, **overrides)
