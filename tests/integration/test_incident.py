"""The incident notice (issue 13 §3) over the real pipeline, with a simulated clock.

Mail goes through the harness (spool → worker → tickets → outbox) and the SLA
scan runs at chosen instants, as in ``test_scheduler``. Each test reads the
notice the customer would get: its subject, its text part and its recipients.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_sla_scenario as shipped
from harness import Harness, as_message, body_text
from sqlalchemy import func, select
from support.mails import build
from test_reports import example_config
from test_scheduler import (
    ADMIN,
    ANNA,
    CUSTOMER,
    customer_mail,
    engineer_mail,
    harness_for,
    msk,
    scan_at,
    ticket,
)

from mailticket import cli
from mailticket import config as config_mod
from mailticket.model import ContractType
from mailticket.outbound.render import Rendered
from mailticket.reports import incident
from mailticket.store.db import transaction
from mailticket.store.schema import AuditEvent, OutboxItem, SlaEvent, Ticket

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"

# The customer's first message: longer than the notice quotes, so it is shortened.
NIGHT_MAIL = (
    "Добрый вечер! С 02:10 не открывается интернет-магазин: главная страница отдаёт "
    "ошибку 502, оформить заказ невозможно, покупатели звонят в колл-центр. "
    "Перезапуск сервера приложений со своей стороны делали, не помогло. "
    "Просим срочно посмотреть, у нас идёт ночная распродажа и каждая минута простоя "
    "стоит денег. Контактный телефон дежурного администратора: +7 495 000-00-00."
)
NIGHT_SUMMARY = (
    "Добрый вечер! С 02:10 не открывается интернет-магазин: главная страница отдаёт "
    "ошибку 502, оформить заказ невозможно, покупатели звонят в колл-центр. "
    "Перезапуск сервера приложений со своей стороны делали, не помогло. "
    "Просим срочно посмотреть, у нас идёт ночная распродажа и каждая минута простоя…"
)


@pytest.fixture
def h(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    """On SQLite and PostgreSQL."""
    harness = harness_for(tmp_path, db_url)
    yield harness
    harness.close()


@pytest.fixture
def hs(sqlite_url: str, tmp_path: Path) -> Iterator[Harness]:
    """On SQLite only."""
    harness = harness_for(tmp_path, sqlite_url)
    yield harness
    harness.close()


def notices(h: Harness) -> list[OutboxItem]:
    """New incident notices since the last look at the outbox."""
    return [r for r in h.new_outbox() if r.kind == "incident_report"]


def to_customer(items: list[OutboxItem]) -> OutboxItem:
    return next(r for r in items if r.rcpt_tos[0] == CUSTOMER)


def plain(item: OutboxItem) -> str:
    return body_text(item).replace("\r\n", "\n")


def render(h: Harness, ticket_id: int, locale: str) -> Rendered:
    """The notice of a ticket as it stands, in ``locale`` (what a re-send would mail)."""
    with transaction(h.factory) as s:
        row = s.get(Ticket, ticket_id)
        assert row is not None
        return h.notifier.renderer.render(
            "incident_report", locale, incident.context(s, h.notifier, row))


def night_incident(h: Harness) -> Ticket:
    """Saturday night, a critical ticket with every field of the notice filled.

    The shop went down at 02:10; the customer wrote at 02:25 (first response due
    02:55, 24/7); Anna answered at 03:05, ten minutes late, with the start, the
    impact and the cause; an internal note in between; service came back at 04:30
    and the ticket was resolved at 04:40 with the actions and the prevention.
    """
    t = customer_mail(h, msk(2026, 11, 21, 2, 25), "[АВАРИЯ] Не работает интернет-магазин",
                      body=NIGHT_MAIL)
    assert t.priority == "critical"
    scan_at(h, msk(2026, 11, 21, 2, 48))
    scan_at(h, msk(2026, 11, 21, 2, 55))
    engineer_mail(h, msk(2026, 11, 21, 3, 0), t.id,
                  "#internal\n\nСекретная заметка: пароль от панели у Бориса.")
    engineer_mail(h, msk(2026, 11, 21, 3, 5), t.id,
                  "#начало 02:10\n"
                  "#влияние Интернет-магазин недоступен покупателям, заказы не принимаются\n"
                  "#причина Переполнился диск сервера базы данных\n\n"
                  "Видим проблему, освобождаем место на диске.")
    engineer_mail(h, msk(2026, 11, 21, 4, 40), t.id,
                  "#восстановлено 04:30\n"
                  "#меры Удалены старые журналы, база данных перезапущена\n"
                  "#профилактика Настроено оповещение о заполнении диска на 80 %\n"
                  "#статус решен\n\n"
                  "Магазин снова работает, проверьте, пожалуйста.")
    return ticket(h, t.id)


def test_a_night_incident_gives_a_breach_notice_with_every_field(h: Harness) -> None:
    t = night_incident(h)
    items = notices(h)
    # To the customer's side in Russian, and to ours (the admin) separately.
    assert sorted(r.rcpt_tos[0] for r in items) == [ADMIN, CUSTOMER]
    notice = to_customer(items)
    assert str(as_message(notice)["Subject"]) == (
        f"[#MT-{t.id}] Сообщение о нарушении SLA: [АВАРИЯ] Не работает интернет-магазин")
    text = plain(notice)
    for part in (
        f"Сообщение о нарушении SLA\nОбращение MT-{t.id}: [АВАРИЯ] Не работает интернет-магазин\n",
        "Договор:      Umbrella\nПриоритет:    критический\n",
        f"Что произошло (со слов заявителя):\n{NIGHT_SUMMARY}\n",
        "Влияние на работу:\nИнтернет-магазин недоступен покупателям, заказы не принимаются\n",
        "Ход инцидента:\n"
        "  Начало:                  сб, 21.11.2026 02:10 MSK\n"
        "  Обнаружено:              сб, 21.11.2026 02:25 MSK (письмо заявителя)\n"
        "  Первый ответ:            сб, 21.11.2026 03:05 MSK\n"
        "  Работа восстановлена:    сб, 21.11.2026 04:30 MSK (по отметке инженера)\n"
        "  Обращение решено:        сб, 21.11.2026 04:40 MSK\n"
        "  Длительность инцидента:  2 ч 20 мин (от начала до восстановления)\n",
        "Причина:\nПереполнился диск сервера базы данных\n",
        "Принятые меры:\nУдалены старые журналы, база данных перезапущена\n",
        "Меры по предотвращению:\nНастроено оповещение о заполнении диска на 80 %\n",
        # Each timer as the SLA record froze it: target, due, actual, outcome, priority.
        "Выполнение SLA:\n"
        "  Первый ответ, приоритет критический\n"
        "    норматив:    30 мин\n"
        "    срок:        сб, 21.11.2026 02:55 MSK\n"
        "    фактически:  сб, 21.11.2026 03:05 MSK\n"
        "    итог:        нарушен, просрочка 10 мин\n"
        "  Решение, приоритет критический\n"
        "    норматив:    4 ч\n"
        "    срок:        сб, 21.11.2026 06:25 MSK\n"
        "    фактически:  сб, 21.11.2026 04:40 MSK\n"
        "    итог:        в срок\n",
        "  сб, 21.11.2026 02:55 MSK  нарушение SLA: истёк срок первого ответа\n",
        "  сб, 21.11.2026 04:30 MSK  работа восстановлена (Анна Петрова)\n",
        "  сб, 21.11.2026 04:40 MSK  статус: в работе → решено (Анна Петрова)\n",
    ):
        assert part in text, part
    # A customer document: engineers by name only, no internal note, no config keys.
    for internal in (ANNA, "Секретная заметка", "пароль", "24x7", "incident_recipients",
                     "L1", "umbrella\n", "#"):
        assert internal not in text, internal
    html = as_message(notice).get_body(("html",))
    assert html is not None
    assert "<h2>Сообщение о нарушении SLA</h2>" in html.get_content()
    # The same notice in English: the other locale says the same things.
    english = render(h, t.id, "en")
    assert english.subject == (
        f"[#MT-{t.id}] SLA breach notice: [АВАРИЯ] Не работает интернет-магазин")
    for part in (
        "SLA breach notice\n",
        "Course of the incident:\n"
        "  Started:           Sat 21 Nov 2026 02:10 MSK\n"
        "  Detected:          Sat 21 Nov 2026 02:25 MSK (requester's message)\n"
        "  First response:    Sat 21 Nov 2026 03:05 MSK\n"
        "  Service restored:  Sat 21 Nov 2026 04:30 MSK (recorded by an engineer)\n"
        "  Ticket resolved:   Sat 21 Nov 2026 04:40 MSK\n"
        "  Duration:          2 h 20 min (from the start to the restoration)\n",
        "Prevention:\nНастроено оповещение о заполнении диска на 80 %\n",
        "  First response, priority critical\n    target:  30 min\n"
        "    due:     Sat 21 Nov 2026 02:55 MSK\n    actual:  Sat 21 Nov 2026 03:05 MSK\n"
        "    result:  breached, 10 min late\n",
    ):
        assert part in english.text, part
    # Once per resolution: the marker, and one audit row naming the recipients.
    with transaction(h.factory) as s:
        markers = s.scalars(select(SlaEvent.deadline).where(
            SlaEvent.ticket_id == t.id, SlaEvent.timer == "incident_report")).all()
        sent = s.scalars(select(AuditEvent.detail).where(
            AuditEvent.ticket_id == t.id, AuditEvent.action == "incident_report")).all()
    assert markers == [msk(2026, 11, 21, 4, 40)]
    assert [(d["resent"], sorted(d["to"])) for d in sent] == [(False, [ADMIN, CUSTOMER])]
    engineer_mail(h, msk(2026, 11, 21, 5, 0), t.id, "#internal\n\nПроверили ещё раз.")
    assert notices(h) == []


def test_the_example_notice_in_docs_is_what_the_code_renders(hs: Harness) -> None:
    """``docs/examples/incident-notice-ru.{txt,html}``: the night incident as mailed.

    Set ``REGENERATE_EXAMPLES=1`` to rewrite them after a deliberate change.
    """
    night_incident(hs)
    notice = to_customer(notices(hs))
    html = as_message(notice).get_body(("html",))
    assert html is not None
    expected = {"incident-notice-ru.txt": plain(notice),
                "incident-notice-ru.html": str(html.get_content()).replace("\r\n", "\n")}
    for name, content in expected.items():
        path = EXAMPLES / name
        if os.environ.get("REGENERATE_EXAMPLES") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        assert path.read_text(encoding="utf-8") == content, f"{path} is out of date"


def test_a_critical_ticket_without_a_breach_gets_a_no_breach_report(h: Harness) -> None:
    t = customer_mail(h, msk(2026, 11, 20, 19, 50), "[АВАРИЯ] Не работает сайт",
                      body="Сайт не открывается.")
    engineer_mail(h, msk(2026, 11, 20, 20, 5), t.id, "Смотрим.")
    engineer_mail(h, msk(2026, 11, 20, 21, 0), t.id, "#status resolved\n\nСайт работает.")
    notice = to_customer(notices(h))
    assert str(as_message(notice)["Subject"]) == (
        f"[#MT-{t.id}] Отчёт об инциденте (сроки SLA соблюдены): [АВАРИЯ] Не работает сайт")
    text = plain(notice)
    for part in (
        "Отчёт об инциденте: сроки SLA соблюдены\n",
        "Что произошло (со слов заявителя):\nСайт не открывается.\n",
        # What nobody recorded is said to be unrecorded, not made up.
        "Влияние на работу:\nне записано\n",
        "  Начало:                  пт, 20.11.2026 19:50 MSK (принято по времени обнаружения)\n",
        "  Работа восстановлена:    не отмечено\n",
        "Причина:\nне записана\n", "Меры по предотвращению:\nне записаны\n",
        "    итог:        в срок\n  Решение, приоритет критический\n",
    ):
        assert part in text, part
    assert "нарушен" not in text and "Длительность" not in text
    assert "Incident report: SLA met\n" in render(h, t.id, "en").text


def test_a_breach_while_critical_is_reported_after_a_downgrade(h: Harness) -> None:
    t = customer_mail(h, msk(2026, 11, 20, 19, 50), "[АВАРИЯ] Не работает сайт")
    scan_at(h, msk(2026, 11, 20, 20, 13))
    scan_at(h, msk(2026, 11, 20, 20, 20))
    # Anna finds it is no emergency: minor from now on (the plan counts from the start,
    # so the new first-response target of 4 business hours is met by her answer).
    engineer_mail(h, msk(2026, 11, 20, 20, 30), t.id, "#priority minor\n\nЭто не авария.")
    engineer_mail(h, msk(2026, 11, 20, 21, 0), t.id, "#status resolved\n\nГотово.")
    assert ticket(h, t.id).priority == "minor"
    items = notices(h)
    assert sorted(r.rcpt_tos[0] for r in items) == [ADMIN, CUSTOMER]
    notice = to_customer(items)
    assert str(as_message(notice)["Subject"]) == (
        f"[#MT-{t.id}] Сообщение о нарушении SLA: [АВАРИЯ] Не работает сайт")
    text = plain(notice)
    for part in (
        "Приоритет:    обычный (в ходе инцидента — критический)\n",
        # The breach stands as it was recorded, under the priority of that moment...
        "  Первый ответ, приоритет критический\n"
        "    норматив:    30 мин\n"
        "    срок:        пт, 20.11.2026 20:20 MSK\n"
        "    фактически:  пт, 20.11.2026 20:30 MSK\n"
        "    итог:        нарушен, просрочка 10 мин\n"
        # ... and the answer met the new target.
        "  Первый ответ, приоритет обычный\n"
        "    норматив:    4 ч\n"
        "    срок:        пн, 23.11.2026 11:50 MSK\n"
        "    фактически:  пт, 20.11.2026 20:30 MSK\n"
        "    итог:        в срок\n"
        "  Решение, приоритет обычный\n",
        "  пт, 20.11.2026 20:30 MSK  приоритет: критический → обычный (Анна Петрова)\n",
    ):
        assert part in text, part


def test_a_minor_ticket_gets_no_notice(h: Harness) -> None:
    t = customer_mail(h, msk(2026, 11, 20, 12, 0), "Медленно работает почта")
    assert t.priority == "minor"
    engineer_mail(h, msk(2026, 11, 20, 12, 30), t.id, "#status resolved\n\nПочистили ящик.")
    assert notices(h) == []


ZABBIX = "zabbix@initech.example"
OPS = "ops@initech.example"


def zabbix(h: Harness, state: str) -> None:
    subject = {"problem": "Problem: Web shop is down",
               "ok": "Resolved in 42m 0s: Web shop is down"}[state]
    h.deliver(build(from_=f"Zabbix <{ZABBIX}>", subject=subject,
                    body="Problem name: Web shop is down\nHost: shop01\nSeverity: Disaster\n"
                         "Original problem ID: 815\n",
                    headers={"Auto-Submitted": "auto-generated"}), mail_from=ZABBIX)


def test_the_alert_recovery_is_when_service_was_restored(h: Harness) -> None:
    h.clock.now = msk(2026, 11, 21, 3, 0)
    zabbix(h, "problem")
    [t] = h.tickets()
    assert (t.priority, t.contract_type) == ("critical", ContractType.COMPLEX.value)
    engineer_mail(h, msk(2026, 11, 21, 3, 10), t.id,
                  "#cause Отказ блока питания\n\nЗанимаемся, переключаем на резервный сервер.")
    # The recovery at 03:42 resolves the ticket (on_recovery = "resolve"): restored then.
    h.clock.now = msk(2026, 11, 21, 3, 42)
    zabbix(h, "ok")
    assert ticket(h, t.id).status == "resolved"
    items = notices(h)
    assert sorted(r.rcpt_tos[0] for r in items) == [ADMIN, OPS]
    notice = next(r for r in items if r.rcpt_tos[0] == OPS)
    assert str(as_message(notice)["Subject"]) == (
        f"[#MT-{t.id}] Отчёт об инциденте (сроки SLA соблюдены): shop01: Web shop is down")
    text = plain(notice)
    for part in (
        "Что произошло (со слов заявителя):\nshop01: Web shop is down\n",
        "  Начало:                  сб, 21.11.2026 03:00 MSK (принято по времени обнаружения)\n"
        "  Обнаружено:              сб, 21.11.2026 03:00 MSK (сигнал мониторинга)\n"
        "  Первый ответ:            сб, 21.11.2026 03:10 MSK\n"
        "  Работа восстановлена:    сб, 21.11.2026 03:42 MSK (по данным мониторинга)\n"
        "  Обращение решено:        сб, 21.11.2026 03:42 MSK\n"
        "  Длительность инцидента:  42 мин (от начала до восстановления)\n",
        "  сб, 21.11.2026 03:42 MSK  работа восстановлена (по данным мониторинга)\n",
    ):
        assert part in text, part
    assert ZABBIX not in text


def test_restored_is_recorded_apart_from_resolved(hs: Harness) -> None:
    t = customer_mail(hs, msk(2026, 11, 20, 19, 50), "[АВАРИЯ] Не работает сайт")
    # A later #restored corrects an earlier one; a time before the ticket is refused.
    engineer_mail(hs, msk(2026, 11, 20, 20, 0), t.id, "#restored 19:40\n\nСмотрим.")
    refused = [r for r in hs.new_outbox() if r.kind == "command_result"]
    assert "is before the ticket was opened (2026-11-20 Fri 19:50 MSK)" in plain(refused[0])
    engineer_mail(hs, msk(2026, 11, 20, 20, 10), t.id, "#восстановлено\n\nРаботает.")
    engineer_mail(hs, msk(2026, 11, 20, 20, 20), t.id,
                  "#restored 2026-11-20 20:05\n#status resolved\n\nГотово.")
    text = plain(to_customer(notices(hs)))
    assert "  Работа восстановлена:    пт, 20.11.2026 20:05 MSK (по отметке инженера)\n" in text
    assert "  Обращение решено:        пт, 20.11.2026 20:20 MSK\n" in text


def test_an_admin_resends_the_notice_from_the_command_line(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The shipped config: contract acme (two contacts), reports.incident_recipients.
    path = example_config(tmp_path, sqlite_url)
    h = Harness(config_mod.load(path))
    try:
        h.clock.now = msk(2026, 11, 20, 19, 50)
        shipped.customer_mail(h, "[АВАРИЯ] Не работает сайт", "Сайт не открывается.")
        shipped.customer_mail(h, "Вопрос по счёту", "Пришлите, пожалуйста, счёт.")
        h.clock.now = msk(2026, 11, 20, 20, 10)
        shipped.engineer_mail(h, shipped.ANNA, 1, "#status resolved\n\nСайт работает.")
        shipped.engineer_mail(h, shipped.ANNA, 2, "#status resolved\n\nСчёт во вложении.")
        assert [t.priority for t in h.tickets()] == ["critical", "minor"]
        assert len(notices(h)) == 2

        def report(*args: str) -> tuple[int, str, str]:
            code = cli.main(["-c", str(path), "report", "incident", *args])
            out, err = capsys.readouterr()
            return code, out, err

        # Again to the usual recipients: the customer's side and ours, one mail each.
        code, out, _ = report("MT-1")
        items = notices(h)
        assert code == 0 and len(items) == 2
        assert out == "".join(f"incident notice MT-1: queued for {', '.join(r.rcpt_tos)} "
                              f"(outbox {r.id})\n" for r in items)
        assert [r.rcpt_tos for r in items] == [
            [shipped.CUSTOMER, shipped.PARTNER], [shipped.SERVICE_MANAGER]]
        assert str(as_message(items[0])["Subject"]) == (
            "[#MT-1] Отчёт об инциденте (сроки SLA соблюдены): [АВАРИЯ] Не работает сайт")
        # Only to the addresses given.
        code, out, _ = report("MT-1", "--to", "Boss@acme.example")
        [item] = notices(h)
        assert (code, item.rcpt_tos) == (0, ["boss@acme.example"])
        assert out == f"incident notice MT-1: queued for boss@acme.example (outbox {item.id})\n"
        # Each re-send is audited; the marker of the resolution stays the only one.
        with transaction(h.factory) as s:
            sent = s.execute(select(AuditEvent.actor, AuditEvent.detail).where(
                AuditEvent.action == "incident_report").order_by(AuditEvent.id)).all()
            markers = s.scalar(select(func.count()).select_from(SlaEvent).where(
                SlaEvent.timer == "incident_report"))
        assert [(actor.split(":")[0], d["resent"]) for actor, d in sent] == [
            ("mailticket", False), ("cli", True), ("cli", True)]
        assert sent[-1][1]["to"] == ["boss@acme.example"]
        assert markers == 1

        assert report("MT-99") == (4, "", "mailticket: no ticket MT-99\n")
        # A ticket that was never critical has nothing to report, unless forced.
        code, out, err = report("MT-2")
        assert (code, out) == (1, "")
        assert err == ("mailticket: MT-2 was never critical and breached nothing while "
                       "critical: it has no incident notice (--force sends one)\n")
        assert notices(h) == []
        code, out, _ = report("MT-2", "--force")
        assert code == 0 and len(notices(h)) == 2
    finally:
        h.close()


def test_a_notice_of_an_unresolved_ticket_says_what_is_not_known_yet(hs: Harness) -> None:
    # What `report incident --force` sends for a ticket still open: nothing made up.
    t = customer_mail(hs, msk(2026, 11, 20, 19, 50), "[АВАРИЯ] Не работает сайт")
    out = render(hs, t.id, "ru")
    assert out.subject == (
        f"[#MT-{t.id}] Отчёт об инциденте (обращение ещё не решено): [АВАРИЯ] Не работает сайт")
    assert out.text.startswith("Отчёт об инциденте: обращение ещё не решено\n")
    for part in ("  Первый ответ:            не было\n", "  Работа восстановлена:    не отмечено\n",
                 "  Обращение решено:        ещё не решено\n",
                 "Выполнение SLA:\n  По обращению нет данных SLA.\n"):
        assert part in out.text, part
