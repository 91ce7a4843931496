"""SLA reminders, escalations and on-call pages over the real pipeline, with a simulated clock.

Mail goes through the harness (spool → real worker → tickets → outbox); the
scan is the scheduler's own job function called at chosen instants, so minutes
pass without sleeping. Each test asserts exactly which mails the rules produce.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from harness import Harness, as_message, body_text
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session
from support import databases
from support.configs import SECRET, make_config
from support.mails import build

from mailticket import cli
from mailticket.escalation import scan as sla_scan
from mailticket.mail.addresses import make_reply_token, reply_address
from mailticket.model import Contract, Priority
from mailticket.runners.scheduler import Scheduler
from mailticket.sla.clock import EventKind, Timer
from mailticket.store.db import make_sessionmaker, transaction
from mailticket.store.schema import OutboxItem, SlaEvent, Ticket

MSK = ZoneInfo("Europe/Moscow")
CUSTOMER = "it@umbrella.example"
ANNA, BORIS, VERA, LEAD = (f"{n}@provider.example" for n in ("anna", "boris", "vera", "lead"))
ADMIN = "admin@provider.example"
SUPPORT = "support@provider.example"


def msk(*args: int) -> datetime:
    return datetime(*args, tzinfo=MSK).astimezone(UTC)


def harness_for(tmp_path: Path, db_url: str) -> Harness:
    """The standard test config plus a contract whose customers may say [АВАРИЯ]."""
    cfg = make_config(tmp_path, db_url)
    umbrella = Contract(id="umbrella", name="Umbrella", sla_plan="standard",
                        contacts=(CUSTOMER,), domains=("umbrella.example",), locale="ru",
                        dedicated_engineer=LEAD, allow_subject_priority=True)
    return Harness(dataclasses.replace(cfg, contracts={**cfg.contracts, "umbrella": umbrella}))


@pytest.fixture
def h(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    """On SQLite and PostgreSQL: for the scenario and the exactly-once rules."""
    harness = harness_for(tmp_path, db_url)
    yield harness
    harness.close()


@pytest.fixture
def hs(sqlite_url: str, tmp_path: Path) -> Iterator[Harness]:
    """On SQLite only: clock rules that do not depend on the backend."""
    harness = harness_for(tmp_path, sqlite_url)
    yield harness
    harness.close()


def scan_at(h: Harness, when: datetime) -> sla_scan.ScanResult:
    """A fresh scheduler object each time: every scan is also a restart."""
    h.clock.now = when
    return Scheduler(h.app, clock=h.clock).sla_scan()


def sla_mails(h: Harness) -> list[tuple[str, str]]:
    """New SLA outbox rows since the last call, as (kind, recipient), sorted."""
    return sorted((r.kind, r.rcpt_tos[0]) for r in h.new_outbox() if r.kind.startswith("sla_"))


def customer_mail(h: Harness, when: datetime, subject: str, body: str = "Сайт не открывается",
                  sender: str = CUSTOMER) -> Ticket:
    h.clock.now = when
    h.deliver(build(from_=sender, subject=subject, body=body), mail_from=sender)
    return h.tickets()[-1]


def engineer_mail(h: Harness, when: datetime, ticket_id: int, body: str,
                  engineer: str = ANNA) -> None:
    h.clock.now = when
    token = make_reply_token(SECRET, ticket_id, engineer, when.date())
    to = reply_address(SUPPORT, token)
    h.deliver(build(from_=engineer, to=to, subject=f"Re: [#MT-{ticket_id}]", body=body),
              mail_from=engineer, rcpt=(to,))


def ticket(h: Harness, number: int) -> Ticket:
    return next(t for t in h.tickets() if t.id == number)


def test_critical_ticket_friday_evening_warnings_escalations_pages_and_incident_report(
    h: Harness,
) -> None:
    # Friday 19:50 MSK, a critical ticket: 30 min first response, 4 h restore, 24/7,
    # warnings at 75 %. On call this week: Anna and Vera. Dedicated engineer: Lead (L3).
    t = customer_mail(h, msk(2026, 11, 20, 19, 50), "[АВАРИЯ] Не работает сайт")
    # Routing gives a contract's ticket to its dedicated engineer.
    assert (t.priority, t.line, t.assignee) == ("critical", "L1", LEAD)
    assert t.first_response_due == msk(2026, 11, 20, 20, 20)
    assert t.resolution_due == msk(2026, 11, 20, 23, 50)
    assert t.next_sla_check_at == msk(2026, 11, 20, 20, 12, 30)
    h.new_outbox()

    assert scan_at(h, msk(2026, 11, 20, 20, 12)).events == 0
    assert sla_mails(h) == []
    # First-response warning: the assignee and the on-call pair.
    assert scan_at(h, msk(2026, 11, 20, 20, 13)).events == 1
    assert sla_mails(h) == [("sla_warning_assignee", LEAD), ("sla_warning_oncall", ANNA),
                            ("sla_warning_oncall", VERA)]
    assert scan_at(h, msk(2026, 11, 20, 20, 14)).events == 0
    # Breach: escalates to the next line (L2: Vera), the dedicated engineer, and on call;
    # everyone once, under the first role that names them.
    assert scan_at(h, msk(2026, 11, 20, 20, 20)).events == 1
    assert sla_mails(h) == [("sla_breach_assignee", LEAD), ("sla_breach_escalation", VERA),
                            ("sla_breach_oncall", ANNA)]
    assert scan_at(h, msk(2026, 11, 20, 20, 21)).events == 0
    assert sla_mails(h) == []

    # Anna (on call) answers at 20:25 and records the cause.
    engineer_mail(h, msk(2026, 11, 20, 20, 25), t.id,
                  "#cause Отказ диска на веб-сервере\n\nЗанимаемся, сайт поднимем в течение часа.")
    t = ticket(h, t.id)
    assert (t.assignee, t.first_response_at) == (LEAD, msk(2026, 11, 20, 20, 25))
    assert t.next_sla_check_at == msk(2026, 11, 20, 22, 50)
    h.new_outbox()
    # Resolution warning at 22:50: the assignee and the on-call pair.
    assert scan_at(h, msk(2026, 11, 20, 22, 51)).events == 1
    assert sla_mails(h) == [("sla_warning_assignee", LEAD), ("sla_warning_oncall", ANNA),
                            ("sla_warning_oncall", VERA)]

    # Resolved at 23:10, with the actions: the incident report goes to the customer's
    # contacts and the admins, in the same transaction.
    engineer_mail(h, msk(2026, 11, 20, 23, 10), t.id,
                  "#actions Диск заменён, сайт восстановлен\n#status resolved\n\nСайт работает.")
    reports = [r for r in h.new_outbox() if r.kind == "incident_report"]
    assert sorted(r.rcpt_tos[0] for r in reports) == [ADMIN, CUSTOMER]
    to_customer = next(r for r in reports if r.rcpt_tos == [CUSTOMER])
    subject = str(as_message(to_customer)["Subject"])
    assert subject == f"[#MT-{t.id}] Сообщение о нарушении SLA: [АВАРИЯ] Не работает сайт"
    text = body_text(to_customer).replace("\r\n", "\n")
    assert ("  Первый ответ, приоритет критический\n    норматив:    30 мин\n"
            "    срок:        пт, 20.11.2026 20:20 MSK\n    фактически:  пт, 20.11.2026 20:25 MSK\n"
            "    итог:        нарушен, просрочка 5 мин\n") in text
    assert ("  Решение, приоритет критический\n    норматив:    4 ч\n"
            "    срок:        пт, 20.11.2026 23:50 MSK\n    фактически:  пт, 20.11.2026 23:10 MSK\n"
            "    итог:        в срок\n") in text
    assert "пт, 20.11.2026 20:20 MSK  нарушение SLA: истёк срок первого ответа" in text
    assert "Причина:\nОтказ диска на веб-сервере" in text
    assert "Принятые меры:\nДиск заменён, сайт восстановлен" in text
    # Engineers appear by name, never by address (as in their replies to customers).
    assert "пт, 20.11.2026 23:10 MSK  статус: в работе → решено (Анна Петрова)" in text
    assert ANNA not in text
    assert text.index("обращение зарегистрировано") < text.index("сообщение от it@umbrella")
    assert as_message(to_customer).get_body(("html",)) is not None

    # Nothing more fires: not the resolution breach at 23:50, not on Saturday.
    for when in (msk(2026, 11, 20, 23, 51), msk(2026, 11, 21, 12, 0)):
        assert scan_at(h, when).events == 0
    assert sla_mails(h) == []
    assert ticket(h, t.id).next_sla_check_at is None
    # The SLA record: what was sent, how each timer ended, and the report marker.
    with transaction(h.factory) as s:
        record = s.execute(select(SlaEvent.timer, SlaEvent.kind, SlaEvent.deadline,
                                  SlaEvent.due_at, SlaEvent.overdue_minutes, SlaEvent.priority)
                           .order_by(SlaEvent.id)).all()
    assert [tuple(r) for r in record] == [
        ("first_response", "warning", msk(2026, 11, 20, 20, 12, 30), msk(2026, 11, 20, 20, 20),
         None, "critical"),
        ("first_response", "breach", msk(2026, 11, 20, 20, 20), msk(2026, 11, 20, 20, 20),
         None, "critical"),
        ("first_response", "met", msk(2026, 11, 20, 20, 25), msk(2026, 11, 20, 20, 20),
         5, "critical"),
        ("resolution", "warning", msk(2026, 11, 20, 22, 50), msk(2026, 11, 20, 23, 50),
         None, "critical"),
        ("resolution", "met", msk(2026, 11, 20, 23, 10), msk(2026, 11, 20, 23, 50),
         None, "critical"),
        ("incident_report", "sent", msk(2026, 11, 20, 23, 10), None, None, None),
    ]


def test_business_hours_ticket_wakes_nobody_and_waits_after_downtime(hs: Harness) -> None:
    # A minor ticket on Mon–Fri 08:00–20:00: 240 business minutes to the first response.
    t = customer_mail(hs, msk(2026, 11, 20, 19, 50), "Медленно работает почта",
                      sender="ivan@acme.example")
    assert t.priority == "minor"
    assert t.first_response_due == msk(2026, 11, 23, 11, 50)  # 10 min Friday + 230 Monday
    assert t.next_sla_check_at == msk(2026, 11, 23, 10, 50)  # the 75 % warning
    hs.new_outbox()
    for when in (msk(2026, 11, 20, 23, 0), msk(2026, 11, 22, 12, 0)):
        assert scan_at(hs, when).tickets == 0
    # The daemon was down all Monday; it comes back at 21:00, outside working hours:
    # both events are due, but they wait for Tuesday 08:00.
    result = scan_at(hs, msk(2026, 11, 23, 21, 0))
    assert (result.events, result.deferred) == (0, 2)
    assert sla_mails(hs) == []
    assert ticket(hs, t.id).next_sla_check_at == msk(2026, 11, 24, 8, 0)
    assert scan_at(hs, msk(2026, 11, 24, 7, 59)).tickets == 0
    assert scan_at(hs, msk(2026, 11, 24, 8, 0)).events == 2
    # Unassigned, no dedicated engineer: the L1 engineers; escalation to L2 (Vera).
    assert sla_mails(hs) == [("sla_breach_assignee", ANNA), ("sla_breach_assignee", BORIS),
                            ("sla_breach_escalation", VERA), ("sla_warning_assignee", ANNA),
                            ("sla_warning_assignee", BORIS)]
    assert scan_at(hs, msk(2026, 11, 24, 8, 1)).events == 0


def test_on_time_event_at_closing_time_is_sent(hs: Harness) -> None:
    # Opened 16:00: the first response is due exactly at 20:00, the end of the day.
    t = customer_mail(hs, msk(2026, 11, 23, 16, 0), "Вопрос", sender="ivan@acme.example")
    assert t.first_response_due == msk(2026, 11, 23, 20, 0)
    hs.new_outbox()
    assert scan_at(hs, msk(2026, 11, 23, 19, 0, 30)).events == 1
    assert sla_mails(hs) == [("sla_warning_assignee", ANNA), ("sla_warning_assignee", BORIS)]
    assert scan_at(hs, msk(2026, 11, 23, 20, 0, 30)).events == 1
    assert sla_mails(hs) == [("sla_breach_assignee", ANNA), ("sla_breach_assignee", BORIS),
                            ("sla_breach_escalation", VERA)]


def test_waiting_pauses_every_timer_and_the_customer_resumes_it(hs: Harness) -> None:
    t = customer_mail(hs, msk(2026, 11, 23, 10, 0), "Настройка VPN", sender="ivan@acme.example")
    assert t.resolution_due == msk(2026, 11, 26, 14, 0)  # 2400 business minutes
    engineer_mail(hs, msk(2026, 11, 23, 10, 30), t.id, "#status waiting\n\nПришлите логи.")
    t = ticket(hs, t.id)
    assert (t.status, t.sla_paused_since) == ("waiting", msk(2026, 11, 23, 10, 30))
    # While paused the resolution instant is unknown and nothing is scheduled.
    assert (t.resolution_due, t.next_sla_check_at) == (None, None)
    assert scan_at(hs, msk(2026, 11, 24, 15, 0)).tickets == 0
    # The customer answers on Tuesday 10:30: 720 business minutes were paused.
    hs.clock.now = msk(2026, 11, 24, 10, 30)
    hs.deliver(build(from_="ivan@acme.example", subject=f"Re: [#MT-{t.id}] Настройка VPN",
                    body="Логи во вложении"), mail_from="ivan@acme.example")
    t = ticket(hs, t.id)
    assert t.status == "open"
    assert t.resolution_due == msk(2026, 11, 27, 14, 0)
    assert t.next_sla_check_at == msk(2026, 11, 26, 16, 0)  # the 75 % warning, moved too


def test_priority_change_recomputes_from_the_start(hs: Harness) -> None:
    t = customer_mail(hs, msk(2026, 11, 23, 10, 0), "Сбой 1С", sender="ivan@acme.example")
    assert (t.first_response_due, t.next_sla_check_at) == (msk(2026, 11, 23, 14, 0),
                                                          msk(2026, 11, 23, 13, 0))
    engineer_mail(hs, msk(2026, 11, 23, 10, 10), t.id, "#priority critical\n#internal\n\nНе ответ.")
    t = ticket(hs, t.id)
    assert t.first_response_at is None
    assert (t.first_response_due, t.resolution_due) == (msk(2026, 11, 23, 10, 30),
                                                       msk(2026, 11, 23, 14, 0))
    assert t.next_sla_check_at == msk(2026, 11, 23, 10, 22, 30)
    hs.new_outbox()
    assert scan_at(hs, msk(2026, 11, 23, 10, 31)).events == 2
    kinds = sla_mails(hs)
    # Anna is the assignee now (first replier); the critical ticket pages this week's pair
    # (Monday after the 10:00 handover: Boris and Lead).
    assert kinds == [("sla_breach_assignee", ANNA), ("sla_breach_escalation", VERA),
                     ("sla_breach_oncall", BORIS), ("sla_breach_oncall", LEAD),
                     ("sla_warning_assignee", ANNA), ("sla_warning_oncall", BORIS),
                     ("sla_warning_oncall", LEAD)]


def test_lost_stamp_or_second_run_sends_nothing_twice(h: Harness) -> None:
    t = customer_mail(h, msk(2026, 11, 20, 19, 50), "[АВАРИЯ] Не работает сайт")
    h.new_outbox()
    assert scan_at(h, msk(2026, 11, 20, 20, 30)).events == 2
    assert len(sla_mails(h)) == 6
    # As if the process died after the events committed but the stamp was lost.
    with transaction(h.factory) as s:
        row = s.get(Ticket, t.id)
        assert row is not None
        row.next_sla_check_at = msk(2026, 11, 20, 19, 55)
    assert scan_at(h, msk(2026, 11, 20, 20, 31)).tickets == 1
    assert sla_mails(h) == []
    assert ticket(h, t.id).next_sla_check_at == msk(2026, 11, 20, 22, 50)


def test_sla_show_prints_the_explanation_and_events_sent(
    hs: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = customer_mail(hs, msk(2026, 11, 20, 19, 50), "[АВАРИЯ] Не работает сайт")
    scan_at(hs, msk(2026, 11, 20, 20, 13))
    config = tmp_path / "cli.toml"
    config.write_text(f'[database]\nurl = "{hs.config.database.url}"\n'
                      '[calendars.24x7]\nalways_open = true\n'
                      '[sla_plans.standard]\ncalendar = "24x7"\n'
                      + "".join(f'[sla_plans.standard.{p}]\nfirst_response = "30m"\n'
                                f'resolution = "4h"\n' for p in
                                ("critical", "major", "minor", "technical"))
                      + '[[contracts]]\nid = "umbrella"\nsla_plan = "standard"\n'
                      'domains = ["umbrella.example"]\n')
    assert cli.main(["-c", str(config), "sla", "show", f"MT-{t.id}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"MT-{t.id}  [АВАРИЯ] Не работает сайт"
    assert out[1].startswith("Plan: standard (standard); priority critical")
    assert "Calendar: 24x7 (UTC; 24/7)" in out
    # The real clock is days past every threshold: one was sent, three wait for a scan.
    assert [line for line in out if line.startswith("Due, not recorded yet:")] == [
        "Due, not recorded yet: first_response breach at 2026-11-20 Fri 17:20 UTC",
        "Due, not recorded yet: resolution warning at 2026-11-20 Fri 19:50 UTC",
        "Due, not recorded yet: resolution breach at 2026-11-20 Fri 20:50 UTC",
    ]
    assert out[-2:] == [
        "Record:",
        "  2026-11-20 Fri 17:12:30 UTC  first_response warning (due 2026-11-20 Fri 17:20 UTC; "
        f"critical); sent 2026-11-20 Fri 17:13 UTC to {LEAD} (assignee), {ANNA} (oncall), "
        f"{VERA} (oncall)",
    ]
    assert cli.main(["-c", str(config), "sla", "show", "MT-999"]) == 4
    assert capsys.readouterr().err == "mailticket: no ticket MT-999\n"


def test_start_up_scan_catches_up(hs: Harness) -> None:
    customer_mail(hs, msk(2026, 11, 20, 19, 50), "[АВАРИЯ] Не работает сайт")
    hs.clock.now = msk(2026, 11, 21, 9, 0)  # the daemon was down all night
    hs.new_outbox()

    async def run() -> list[str]:
        scheduler = Scheduler(hs.app, clock=hs.clock)
        scheduler.start()
        try:
            for _ in range(200):
                if scheduler.last_scan is not None:
                    break
                await asyncio.sleep(0.02)
            return scheduler.job_ids()
        finally:
            scheduler.shutdown()

    # APScheduler lists jobs by next run time; the digest jobs are issue 16's.
    assert sorted(asyncio.run(run())) == ["handover_mail", "housekeeping", "morning_digests",
                                          "sla_scan", "weekly_summaries"]
    # Four events (two per timer), each once, each to Lead, Vera and Anna.
    with transaction(hs.factory) as s:
        assert s.scalar(select(func.count()).select_from(SlaEvent)
                        .where(SlaEvent.kind.in_(["warning", "breach"]))) == 4
    assert len(sla_mails(hs)) == 12


def test_two_scanners_on_postgresql_send_each_event_once(tmp_path: Path) -> None:
    with databases.postgres_database() as url:
        h = harness_for(tmp_path, url)
        try:
            now = msk(2026, 11, 20, 19, 50)
            with transaction(h.factory) as s:
                for i in range(12):
                    s.add(Ticket(subject=f"Авария {i}", status="new", priority="critical",
                                 line="L1", contract_id="umbrella", requester=CUSTOMER,
                                 locale="ru", created_at=now, updated_at=now,
                                 next_sla_check_at=now))
            later = now + timedelta(hours=5)  # all four thresholds of every ticket
            # Scanner A is held at its first batch's commit, its two tickets locked,
            # until scanner B has finished: B must skip the locked rows and take every
            # other ticket, never queue behind A. A chosen point, not a race of threads.
            holding, release = threading.Event(), threading.Event()
            factory_a = make_sessionmaker(h.engine)

            def hold(session: Session) -> None:
                if not session.in_nested_transaction() and not holding.is_set():
                    holding.set()
                    release.wait(30)

            event.listen(factory_a, "before_commit", hold)
            results: dict[str, sla_scan.ScanResult] = {}
            scanner_a = threading.Thread(target=lambda: results.update(
                a=sla_scan.scan(factory_a, h.notifier, later, batch_size=2)))
            scanner_a.start()
            assert holding.wait(30)
            scanner_b = threading.Thread(target=lambda: results.update(
                b=sla_scan.scan(h.factory, h.notifier, later, batch_size=2)))
            scanner_b.start()
            scanner_b.join(20)
            finished_while_a_held = not scanner_b.is_alive()
            release.set()
            scanner_a.join(30)
            scanner_b.join(30)
            # SKIP LOCKED shares the tickets out instead of queueing one scanner behind the other.
            assert finished_while_a_held
            assert (results["a"].tickets, results["b"].tickets) == (2, 10)
            assert sum(r.events for r in results.values()) == 48
            with transaction(h.factory) as s:
                assert s.scalar(select(func.count()).select_from(SlaEvent)) == 48
                rows = s.execute(select(OutboxItem.ticket_id, OutboxItem.kind,
                                        OutboxItem.rcpt_tos)).all()
            # A scanner that read the events before another recorded them loses the insert.
            with transaction(h.factory) as s:
                some = s.scalars(select(SlaEvent).limit(1)).one()
                again = sla_scan.SlaEventDue(Timer(some.timer), EventKind(some.kind),
                                             some.deadline, some.deadline)
                assert sla_scan.record(s, some.ticket_id, again, later) is False
            # Per ticket and event: Lead, Vera and Anna, once each; nothing twice.
            assert len(rows) == 12 * 4 * 3
            per_ticket = {i: sorted((k, r[0]) for t, k, r in rows if t == i) for i, _, _ in rows}
            assert {tuple(v) for v in per_ticket.values()} == {(
                ("sla_breach_assignee", LEAD), ("sla_breach_assignee", LEAD),
                ("sla_breach_escalation", VERA), ("sla_breach_escalation", VERA),
                ("sla_breach_oncall", ANNA), ("sla_breach_oncall", ANNA),
                ("sla_warning_assignee", LEAD), ("sla_warning_assignee", LEAD),
                ("sla_warning_oncall", ANNA), ("sla_warning_oncall", ANNA),
                ("sla_warning_oncall", VERA), ("sla_warning_oncall", VERA),
            )}
        finally:
            h.close()


def test_next_response_runs_from_each_unanswered_customer_message(tmp_path: Path,
                                                                  sqlite_url: str) -> None:
    base = harness_for(tmp_path, sqlite_url)
    plan = base.config.sla_plans["standard"]
    minor = dataclasses.replace(plan.targets[Priority.MINOR], next_response_minutes=60)
    plans = {"standard": dataclasses.replace(plan, targets={**plan.targets, Priority.MINOR: minor})}
    base.close()
    h = Harness(dataclasses.replace(base.config, sla_plans=plans))
    try:
        t = customer_mail(h, msk(2026, 11, 23, 10, 0), "Принтер", sender="ivan@acme.example")
        engineer_mail(h, msk(2026, 11, 23, 10, 30), t.id, "Перезагрузите принтер.")
        assert ticket(h, t.id).next_sla_check_at == msk(2026, 11, 25, 16, 0)  # resolution 75 %
        h.clock.now = msk(2026, 11, 23, 11, 0)
        h.deliver(build(from_="ivan@acme.example", subject=f"Re: [#MT-{t.id}] Принтер",
                        body="Не помогло"), mail_from="ivan@acme.example")
        assert ticket(h, t.id).next_sla_check_at == msk(2026, 11, 23, 11, 45)
        h.new_outbox()
        assert scan_at(h, msk(2026, 11, 23, 11, 46)).events == 1
        assert sla_mails(h) == [("sla_warning_assignee", ANNA)]
        # The engineer answers in time: the timer is gone, the resolution warning is next.
        engineer_mail(h, msk(2026, 11, 23, 11, 50), t.id, "Тогда пришлите фото ошибки.")
        assert ticket(h, t.id).next_sla_check_at == msk(2026, 11, 25, 16, 0)
        assert scan_at(h, msk(2026, 11, 23, 12, 5)).tickets == 0
    finally:
        h.close()
