"""Issue 6 "done when": a Friday-evening critical ticket under the shipped config, across a weekend.

The config is ``config.example.toml`` itself, loaded by ``mailticket.config.load``;
only the database URL and one admin address (the example has none) are set for
the test. Mail goes through the real pipeline (spool → worker → tickets →
outbox); the scheduler's SLA job runs at every simulated minute while anything
can happen, and every half-hour through the quiet weekend, as two
daemon instances on PostgreSQL (at the same time, in two threads) and one on
SQLite, restarted three times. The test asserts the complete list of SLA
mails, who got each and at which minute, then the incident report.

Under the shipped config: contract ``acme`` (dedicated engineer Anna, L1; deputy
Boris), plan ``standard`` (critical 24/7 30 min / 4 h; major on Moscow business
hours 2 h / 12 h; warnings at 75 %), rota from Monday 2026-01-05 10:00 MSK:
week 45 (Mon 16 Nov 10:00 – Mon 23 Nov 10:00) is Boris and Dmitry, week 46 Anna
and Clara.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from harness import Harness, as_message, body_text
from sqlalchemy import func, select
from support.configs import REPO
from support.mails import build

from mailticket import config as config_mod
from mailticket.mail.addresses import make_reply_token, reply_address
from mailticket.runners.scheduler import Scheduler
from mailticket.store.db import transaction
from mailticket.store.schema import OutboxItem, SlaEvent, Ticket

MSK = ZoneInfo("Europe/Moscow")
SUPPORT = "support@example.com"
CUSTOMER, PARTNER = "it@acme.example", "ops@partner.example"
ANNA, BORIS, CLARA, DMITRY = (f"{n}@example.com" for n in ("anna", "boris", "clara", "dmitry"))
ADMIN, SERVICE_MANAGER = "admin@example.com", "service-manager@example.com"


def msk(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=MSK).astimezone(UTC)


def shipped_config(db_url: str) -> config_mod.Config:
    """``config.example.toml`` as shipped, on the test database, with one admin address."""
    cfg = config_mod.load(REPO / "config.example.toml")
    return dataclasses.replace(
        cfg,
        database=dataclasses.replace(cfg.database, url=db_url),
        mail=dataclasses.replace(cfg.mail, admin_addresses=(ADMIN,)),
    )


@pytest.fixture
def h(db_url: str) -> Iterator[Harness]:
    harness = Harness(shipped_config(db_url))
    yield harness
    harness.close()


def ticks() -> list[datetime]:
    """Every minute Fri 19:50–Sat 00:15 and Mon 09:00–10:30; every half-hour between."""
    out: list[datetime] = []
    for start, end, step in ((msk(20, 19, 50), msk(21, 0, 15), 1),
                             (msk(21, 0, 15), msk(23, 9, 0), 30),
                             (msk(23, 9, 0), msk(23, 10, 31), 1)):
        t = start
        while t < end:
            out.append(t)
            t += timedelta(minutes=step)
    return out


def customer_mail(h: Harness, subject: str, body: str, in_reply_to: int | None = None) -> None:
    if in_reply_to is not None:
        subject = f"Re: [#MT-{in_reply_to}] {subject}"
    h.deliver(build(from_=CUSTOMER, to=SUPPORT, subject=subject, body=body),
              mail_from=CUSTOMER, rcpt=(SUPPORT,))


def engineer_mail(h: Harness, engineer: str, ticket_id: int, body: str) -> None:
    token = make_reply_token(h.config.mail.reply_token_secret, ticket_id, engineer,
                             h.clock.now.date())
    to = reply_address(SUPPORT, token)
    h.deliver(build(from_=engineer, to=to, subject=f"Re: [#MT-{ticket_id}]", body=body),
              mail_from=engineer, rcpt=(to,))


class Outbox:
    """The outbox rows added since the last look (by id, without re-reading older rows)."""

    def __init__(self, h: Harness) -> None:
        self.h, self.seen = h, 0

    def new(self) -> list[OutboxItem]:
        with transaction(self.h.factory) as s:
            rows = list(s.scalars(select(OutboxItem).where(OutboxItem.id > self.seen)
                                  .order_by(OutboxItem.id)))
        self.seen = max((r.id for r in rows), default=self.seen)
        return rows


def local(t: datetime) -> str:
    return t.astimezone(MSK).strftime("%a %H:%M")


def test_critical_ticket_friday_1950_under_the_shipped_config(h: Harness, db_url: str) -> None:
    postgres = db_url.startswith("postgresql")
    # What people do, at their exact instants (between the scheduler's minutes).
    actions: list[tuple[datetime, Callable[[], None]]] = [
        (msk(20, 19, 50), lambda: customer_mail(h, "[АВАРИЯ] Не работает сайт",
                                                "Сайт acme.example не открывается.")),
        (msk(20, 19, 55), lambda: customer_mail(h, "[СРОЧНО] Не приходит почта",
                                                "С утра не приходят письма.")),
        # Dmitry, on call this week, answers 15 minutes late and records the cause.
        (msk(20, 20, 35), lambda: engineer_mail(
            h, DMITRY, 1, "#cause Отказ диска на веб-сервере\n\nЗанимаемся, меняем диск.")),
        (msk(21, 9, 0), lambda: customer_mail(h, "[АВАРИЯ] Не работает сайт",
                                              "Сайт всё ещё недоступен.", in_reply_to=1)),
        (msk(21, 11, 30), lambda: engineer_mail(
            h, ANNA, 1, "#actions Диск заменён, данные восстановлены из резервной копии\n"
                        "#status resolved\n\nСайт работает, проверьте, пожалуйста.")),
        # After Monday's 10:00 handover: a new critical ticket pages the next pair.
        (msk(23, 10, 5), lambda: customer_mail(h, "[АВАРИЯ] Не работает VPN", "VPN упал.")),
    ]
    restarts = {msk(20, 20, 16), msk(21, 12, 0), msk(23, 9, 0)}

    def instances() -> list[Scheduler]:
        return [Scheduler(h.app, clock=h.clock)
                for _ in range(2 if postgres else 1)]

    daemons = instances()
    outbox = Outbox(h)
    sent: list[tuple[str, int, str, str]] = []
    reports = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for tick in ticks():
            while actions and actions[0][0] <= tick:
                h.clock.now, act = actions.pop(0)
                act()
                reports += [r for r in outbox.new() if r.kind == "incident_report"]
            if tick in restarts:
                daemons = instances()
            h.clock.now = tick
            for result in pool.map(lambda d: d.sla_scan(), daemons):
                assert (result.failed, result.deferred) == (0, 0)
            sent += [(local(tick), r.ticket_id or 0, r.kind, r.rcpt_tos[0])
                     for r in outbox.new() if r.kind.startswith("sla_")]
    assert actions == []
    tickets = {t.id: t for t in h.tickets()}
    assert [(t.priority, t.line, t.assignee) for t in tickets.values()] == [
        ("critical", "L1", ANNA), ("major", "L1", ANNA), ("critical", "L1", ANNA)]

    assert sorted(sent) == sorted([
        # Ticket 1, first response (due 20:20): warning at 75 % (20:12:30) to the assignee,
        # the deputy of the dedicated engineer, and the on-call pair (Boris, Dmitry).
        ("Fri 20:13", 1, "sla_warning_assignee", ANNA),
        ("Fri 20:13", 1, "sla_warning_deputy", BORIS),
        ("Fri 20:13", 1, "sla_warning_oncall", DMITRY),
        # The breach also escalates to L2 (Clara); the dedicated engineer is Anna already.
        ("Fri 20:20", 1, "sla_breach_assignee", ANNA),
        ("Fri 20:20", 1, "sla_breach_deputy", BORIS),
        ("Fri 20:20", 1, "sla_breach_escalation", CLARA),
        ("Fri 20:20", 1, "sla_breach_oncall", DMITRY),
        # Resolution (due 23:50, 24/7): the warning at 22:50 and the breach, at night.
        ("Fri 22:50", 1, "sla_warning_assignee", ANNA),
        ("Fri 22:50", 1, "sla_warning_deputy", BORIS),
        ("Fri 22:50", 1, "sla_warning_oncall", DMITRY),
        ("Fri 23:50", 1, "sla_breach_assignee", ANNA),
        ("Fri 23:50", 1, "sla_breach_deputy", BORIS),
        ("Fri 23:50", 1, "sla_breach_escalation", CLARA),
        ("Fri 23:50", 1, "sla_breach_oncall", DMITRY),
        # Ticket 2 is major, on business hours: nobody hears of it over the weekend. Its
        # first response: 5 min on Friday + 115 on Monday → due 09:55, warning 09:25;
        # no on-call pages for a non-critical ticket.
        ("Mon 09:25", 2, "sla_warning_assignee", ANNA),
        ("Mon 09:25", 2, "sla_warning_deputy", BORIS),
        ("Mon 09:55", 2, "sla_breach_assignee", ANNA),
        ("Mon 09:55", 2, "sla_breach_deputy", BORIS),
        ("Mon 09:55", 2, "sla_breach_escalation", CLARA),
        # Ticket 3, Monday 10:05, after the handover: this week's pair is Anna and Clara.
        ("Mon 10:28", 3, "sla_warning_assignee", ANNA),
        ("Mon 10:28", 3, "sla_warning_deputy", BORIS),
        ("Mon 10:28", 3, "sla_warning_oncall", CLARA),
    ])

    # Resolution on Saturday 11:30: one incident report to the customer's side (the
    # ticket's contact, then the contract's other contact) and one to ours (the admin
    # and reports.incident_recipients).
    assert sorted(tuple(r.rcpt_tos) for r in reports) == [
        (ADMIN, SERVICE_MANAGER), (CUSTOMER, PARTNER)]
    customer = next(r for r in reports if r.rcpt_tos[0] == CUSTOMER)
    msg = as_message(customer)
    assert (str(msg["To"]), str(msg["Cc"])) == (CUSTOMER, PARTNER)
    assert str(msg["Subject"]) == "[#MT-1] Сообщение о нарушении SLA: [АВАРИЯ] Не работает сайт"
    text = body_text(customer).replace("\r\n", "\n")
    for line in (
        "Договор:      ACME Ltd",
        "  Обнаружено:              пт, 20.11.2026 19:50 MSK (письмо заявителя)",
        "  Обращение решено:        сб, 21.11.2026 11:30 MSK",
        "  Первый ответ, приоритет критический\n    норматив:    30 мин\n"
        "    срок:        пт, 20.11.2026 20:20 MSK\n    фактически:  пт, 20.11.2026 20:35 MSK\n"
        "    итог:        нарушен, просрочка 15 мин\n",
        "  Решение, приоритет критический\n    норматив:    4 ч\n"
        "    срок:        пт, 20.11.2026 23:50 MSK\n    фактически:  сб, 21.11.2026 11:30 MSK\n"
        "    итог:        нарушен, просрочка 11 ч 40 мин\n",
        "  пт, 20.11.2026 20:20 MSK  нарушение SLA: истёк срок первого ответа\n",
        "  пт, 20.11.2026 23:50 MSK  нарушение SLA: истёк срок решения\n",
        "Причина:\nОтказ диска на веб-сервере\n",
        "Принятые меры:\nДиск заменён, данные восстановлены из резервной копии\n",
        "  пт, 20.11.2026 20:35 MSK  ответ Dmitry Sokolov: Занимаемся, меняем диск.",
        "  сб, 21.11.2026 09:00 MSK  сообщение от it@acme.example: Сайт всё ещё недоступен.",
        "  сб, 21.11.2026 11:30 MSK  статус: в работе → решено (Anna Petrova)",
    ):
        assert line in text, line
    for engineer in (ANNA, BORIS, CLARA, DMITRY):
        assert engineer not in text
    html = msg.get_body(("html",))
    assert html is not None and "Отказ диска на веб-сервере" in html.get_content()

    # Each event once (PostgreSQL: two instances scanned every minute); the report once;
    # how ticket 1's timers ended is in the record too.
    with transaction(h.factory) as s:
        events = s.execute(select(SlaEvent.ticket_id, SlaEvent.timer, SlaEvent.kind)).all()
        assert sorted(events) == sorted([
            (1, "first_response", "warning"), (1, "first_response", "breach"),
            (1, "first_response", "met"),
            (1, "resolution", "warning"), (1, "resolution", "breach"), (1, "resolution", "met"),
            (1, "incident_report", "sent"),
            (2, "first_response", "warning"), (2, "first_response", "breach"),
            (3, "first_response", "warning"),
        ])
        assert s.scalar(select(func.count()).select_from(Ticket)) == 3
    # What is left to watch: ticket 2's resolution warning at Monday 16:55, ticket 3's
    # first-response breach at 10:35; ticket 1 is done.
    assert [t.next_sla_check_at for t in h.tickets()] == [None, msk(23, 16, 55),
                                                         msk(23, 10, 35)]
