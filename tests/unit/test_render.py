"""Every message template renders in both locales, exactly, and fails loudly on a gap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import pytest

from mailticket.outbound.render import (
    Renderer,
    detag,
    format_datetime,
    format_decimal,
    format_duration,
    normalise_locale,
)
from mailticket.reports.export import CHARTS, template_context
from mailticket.reports.monthly import MonthlyReport, TrendRow
from mailticket.reports.sla_table import BreachLine, RunningLine, SlaMonth, TimerRow
from mailticket.reports.usage import LowRating, Satisfaction, Services
from mailticket.reports.volume import Volume

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
CREATED = datetime(2026, 11, 20, 16, 50, tzinfo=UTC)  # Friday 19:50 in Moscow
DUE = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # Monday 10:00 in Moscow
RESOLVED = datetime(2026, 11, 20, 20, 10, tzinfo=UTC)  # Friday 23:10 in Moscow


def ticket(**extra: Any) -> dict[str, Any]:
    """The ticket mapping of ack.j2, plus any engineer fields."""
    return {
        "ref": "MT-12",
        "tag": "[#MT-12]",
        "subject": "Не печатает принтер",
        "status": "open",
        "priority": "major",
        "created_at": CREATED,
        "timezone": "Europe/Moscow",
        **extra,
    }


def engineer_ticket() -> dict[str, Any]:
    """The ticket mapping of engineer_notice.j2."""
    return ticket(
        contract_name="ООО «Ромашка»",
        requester="ivan@romashka.ru",
        assignee="",
        line="L1",
        first_response_due=DUE,
        resolution_due=None,
    )


def queue_row(**extra: Any) -> dict[str, Any]:
    """One row of a ticket list (mailticket.digest.rows.row)."""
    return {
        "ref": "MT-12", "subject": "Не печатает принтер", "contract": "romashka",
        "contract_name": "ООО «Ромашка»", "priority": "major", "status": "open", "line": "L1",
        "assignee": "anna@example.ru", "due_at": DUE, "timezone": "Europe/Moscow",
        "minutes_left": 75, "overdue": False, "at_risk": True, "waiting_minutes": 150,
        "waiting_since": None, "waiting_since_minutes": None,
        "reply": "mailto:support+r1-12-20777-abc@example.ru?subject=Re%3A%20%5B%23MT-12%5D",
        "reply_address": "support+r1-12-20777-abc@example.ru",
        **extra,
    }


def incident_context() -> dict[str, Any]:
    """A critical ticket answered 5 minutes late; service restored at 23:00, resolved at 23:10."""
    breach = CREATED + timedelta(minutes=30)
    reply = CREATED + timedelta(minutes=35)
    restored = RESOLVED - timedelta(minutes=10)
    return {
        "ticket": ticket(priority="critical", status="resolved", contract_name="ООО «Ромашка»"),
        "incident": {
            "breached": True,
            "was_critical": True,
            "summary": "Принтер не печатает.",
            "impact": "Бухгалтерия не может печатать счета.",
            "cause": "Закончился тонер.",
            "actions": "Картридж заменён.\nПринтер проверен.",
            "prevention": "Запасной картридж хранится в офисе.",
            "started_at": CREATED - timedelta(minutes=20),
            "detected_at": CREATED,
            "detected_by": "mail",
            "first_response_at": reply,
            "restored_at": restored,
            "restored_by": "engineer",
            "resolved_at": RESOLVED,
            "outage_minutes": 210,
            "timers": [
                {"timer": "first_response", "priority": "critical", "period": 0,
                 "target_minutes": 30, "due_at": breach, "ended_at": reply, "met": True,
                 "breached": True, "overdue_minutes": 5},
                {"timer": "resolution", "priority": "critical", "period": 0,
                 "target_minutes": 240, "due_at": CREATED + timedelta(minutes=240),
                 "ended_at": RESOLVED, "met": True, "breached": False, "overdue_minutes": None},
            ],
        },
        "timeline": [
            {"at": CREATED, "kind": "opened", "actor": "ivan@romashka.ru", "detail": {}},
            {"at": CREATED, "kind": "customer", "actor": "ivan@romashka.ru",
             "detail": {"text": "Принтер не печатает."}},
            {"at": breach, "kind": "sla_breach", "actor": "mailticket",
             "detail": {"timer": "first_response"}},
            {"at": reply, "kind": "reply", "actor": "Анна Смирнова",
             "detail": {"text": "Меняем картридж."}},
            {"at": reply, "kind": "cause", "actor": "Анна Смирнова", "detail": {"text": "тонер"}},
            {"at": restored, "kind": "restored", "actor": "Анна Смирнова",
             "detail": {"source": "engineer"}},
            {"at": RESOLVED, "kind": "status", "actor": "Анна Смирнова",
             "detail": {"from": "open", "to": "resolved"}},
        ],
    }


def monthly_context() -> dict[str, Any]:
    """October 2026 of one contract: seven tickets, busiest on Mondays at 10.

    Five resolved requests, four rated (5, 4, 2 with a two-line comment, 1 without
    one); two of the seven tickets came from monitoring; one was opened while the
    contract was still technical support. One critical first response was late;
    a major resolution still ran at the month's end.
    """
    end = datetime(2026, 10, 31, 21, 0, tzinfo=UTC)
    report = MonthlyReport(
        contract_id="romashka", contract_name="ООО «Ромашка»", month="2026-10",
        start=datetime(2026, 9, 30, 21, 0, tzinfo=UTC), end=end,
        timezone="Europe/Moscow", as_of=end, plan_name="Стандарт", previous_month="2026-09",
        closed_at=end + timedelta(hours=9), last_event_id=41, backlog_start=2, backlog_end=3,
        volume=Volume(
            total=7, by_priority={"critical": 1, "major": 2, "minor": 4, "technical": 0},
            by_line={"L1": 6, "L2": 1, "L3": 0, "L4": 0},
            by_hour=tuple(3 if h == 10 else int(h in (9, 14, 15, 16)) for h in range(24)),
            by_weekday=(3, 1, 1, 1, 1, 0, 0),
            subjects=(("Не печатает принтер", 3), ("VPN", 2)),
        ),
        previous_total=5,
        sla=SlaMonth(
            rows=(
                TimerRow("critical", "first_response", "24x7", True, (30,), tickets=1, met=0,
                         breached=1, answered=1, median=45.0, p90=45,
                         distribution=(0, 0, 0, 0, 1)),
                TimerRow("major", "resolution", "business", False, (960,), tickets=2, met=2,
                         running=1, answered=2, median=600.0, p90=900,
                         distribution=(0, 1, 0, 1, 0)),
            ),
            breaches=(BreachLine("MT-9", "first_response", "critical", CREATED, RESOLVED,
                                 False, 15, True, "24x7", True, "", None),),
            running=(RunningLine("MT-12", "resolution", "major", DUE, False, 960, False),),
        ),
        trend=(TrendRow("critical", 100.0, 0.0, 0, 1), TrendRow("major", None, 100.0, 0, 0),
               TrendRow("total", 100.0, 66.7, 0, 1)),
        satisfaction=Satisfaction(
            resolved=5, requested=5, rated=4, average=3.0, distribution=(1, 1, 0, 1, 1),
            low_threshold=2,
            low=(LowRating("MT-9", "Не работает 1С", 1, "", RESOLVED),
                 LowRating("MT-4", "VPN", 2, "Долго ждали ответа.\nИ <b>грубо</b>.", RESOLVED)),
        ),
        services=Services(
            contract_type="complex", human=5, alerts=2, alert_mails=7, alert_flaps=1,
            by_contract_type={"complex": 6, "technical_support": 1},
            by_rule=(("1C goes to L2", 2),), engineer_minutes=330,
        ),
    )
    return template_context(report, {c: f"cid:{c}-romashka-2026-10@example.ru" for c in CHARTS},
                            "report-romashka-2026-10.csv")


def contexts() -> dict[str, dict[str, Any]]:
    """A full context for every message template."""
    return {
        "ack": {
            "ticket": ticket(),
            "customer_name": "Иван Петрович",
            "contract_name": "ООО «Ромашка»",
            "support_address": "support@example.ru",
            "promise": {"kind": "until", "due_at": DUE, "minutes": 120,
                        "timezone": "Europe/Moscow"},
        },
        "engineer_notice": {
            "ticket": engineer_ticket(),
            "event": "new",
            "from_addr": "ivan@romashka.ru",
            "from_name": "Иван Петров",
            "text": "Принтер HP в бухгалтерии не печатает.",
            "attachments": ["ошибка.png", "log.txt"],
            "suggestions": [{"slug": "printer-queue", "title": "Очистка очереди печати"}],
        },
        "reply": {
            "ticket": ticket(),
            "text": "Добрый день!\n\nПерезапустите службу печати.",
            "engineer_name": "Анна Смирнова",
        },
        "command_result": {
            "ticket": ticket(),
            "results": [
                {"line": "#status resolved", "ok": True, "message": "status is now resolved"},
                {"line": "#time 30", "ok": True, "message": "30 min recorded"},
            ],
            "delivered_to_customer": True,
        },
        "forged_reply": {
            "ticket_ref": "MT-12",
            "from_addr": "anna@support.example.ru",
            "subject": "Re: [#MT-12] Не печатает принтер",
            "reason": "no DKIM signature",
        },
        "evidence_refused": {
            "ticket_ref": "MT-12",
            "subject": "Re: [#MT-12] Не печатает принтер",
            "reason": "weak_evidence",
            "detail": "only a reply token and a matching From",
        },
        "queue_answer": {
            "engineer_name": "Анна Смирнова",
            "line": "L1",
            "filters": ["acme"],
            "unknown": ["soon"],
            "now": CREATED,
            "timezone": "Europe/Moscow",
            "sections": [{"name": "mine", "rows": [queue_row()]},
                         {"name": "line", "rows": []},
                         {"name": "contracts", "rows": [queue_row(ref="MT-14", overdue=True,
                                                                  minutes_left=-90,
                                                                  waiting_minutes=None)]}],
        },
        "queue_refused": {"subject": "queue", "support_address": "support@example.ru"},
        "digest_morning": {
            "engineer_name": "Анна Смирнова",
            "now": CREATED,
            "timezone": "Europe/Moscow",
            "tickets": [queue_row(ref="MT-14", overdue=True, at_risk=False, minutes_left=-30),
                        queue_row()],
            "at_risk": 2,
            "waiting": [queue_row(ref="MT-9", status="waiting", minutes_left=None, due_at=None,
                                  at_risk=False)],
            "waiting_days": 3,
            "support_address": "support@example.ru",
        },
        "digest_handover": {
            "pair": ["Анна Смирнова", "Вера Петрова"],
            "incoming": True,
            "starts_at": CREATED,
            "ends_at": CREATED + timedelta(days=7),
            "timezone": "Europe/Moscow",
            "urgent": [queue_row(priority="critical")],
            "breaches": [{"ref": "MT-9", "subject": "Сервер", "timer": "first_response",
                          "deadline": DUE, "priority": "critical"}],
            "unassigned": [{"line": "L2", "rows": [queue_row(ref="MT-15", assignee="")]}],
        },
        "admin_digest": {
            "events": [
                {"kind": "quarantined", "key": "spool:7", "at": CREATED, "subject": "spool #7",
                 "detail": "ambiguous_headers",
                 "facts": {"id": 7, "mail_from": "x@evil.example", "source": "smtp"}},
                {"kind": "delivery_failed", "key": "failure:3", "at": CREATED,
                 "subject": "ivan@romashka.ru", "detail": "5.1.1 smtp; 550 user unknown",
                 "facts": {"address": "ivan@romashka.ru", "source": "bounce", "outbox_id": 12}},
                {"kind": "delivery_failed", "key": "outbox:13", "at": CREATED,
                 "subject": "outbox #13", "detail": "550 5.7.1 relaying denied",
                 "facts": {"address": "olga@romashka.ru", "source": "relay", "outbox_id": 13}},
                {"kind": "suppressed", "key": "suppressed:ivan@romashka.ru", "at": CREATED,
                 "subject": "ivan@romashka.ru", "detail": "3 permanent failures in 30 days",
                 "facts": {"address": "ivan@romashka.ru", "failures": 3}},
            ],
            "conditions": [
                {"kind": "relay_refusing", "key": "relay", "at": CREATED, "subject": "relay",
                 "detail": "421 4.3.2 try later", "facts": {"count": 4, "minutes": 45}},
                {"kind": "calendar_missing", "key": "calendar:ru:2028", "at": CREATED,
                 "subject": "calendar ru", "detail": "upgrade",
                 "facts": {"calendar": "ru", "country": "RU", "years": "2028",
                           "package": "0.60"}},
            ],
            "counts": {"quarantined": 1, "delivery_failed": 2, "suppressed": 1},
            "since": CREATED - timedelta(hours=1), "now": CREATED, "timezone": "Europe/Moscow",
            "instance": "mt-1",
        },
        "digest_weekly": {
            "contract_name": "ООО «Ромашка»", "contract": "romashka",
            "since": CREATED - timedelta(days=7), "now": CREATED, "timezone": "Europe/Moscow",
            "opened": 5, "resolved": 4, "breached": 1, "waiting": 2, "open": 3,
            "oldest": queue_row(age_minutes=4320),
        },
        "digest_setting": {"enabled": True, "at": "09:30", "error": "",
                           "support_address": "support@example.ru"},
        "status_answer": {
            "contract_name": "ООО «Ромашка»",
            "all_tickets": False,
            "support_address": "support@example.ru",
            "tickets": [
                {"ref": "MT-12", "subject": "Не печатает принтер", "status": "open",
                 "priority": "major", "next": {"kind": "until", "due_at": DUE, "minutes": 0,
                                                "timezone": "Europe/Moscow"}},
                {"ref": "MT-14", "subject": "VPN", "status": "waiting", "priority": "minor",
                 "next": {"kind": "none", "due_at": None, "minutes": 0,
                          "timezone": "Europe/Moscow"}},
            ],
        },
        "unknown_sender": {
            "from_addr": "someone@unknown.org",
            "subject": "Помогите с сервером",
            "support_address": "support@example.ru",
        },
        "unparseable": {"subject": "Счёт", "reason": "broken MIME structure"},
        "too_large": {"subject": "Логи", "size_mb": 37.5, "limit_mb": 25},
        "sla_warning": {
            "ticket": ticket(),
            "timer": "first_response",
            "deadline": DUE,
            "recipient_role": "assignee",
        },
        "sla_breach": {
            "ticket": ticket(),
            "timer": "resolution",
            "deadline": DUE,
            "recipient_role": "escalation",
            "changed_at": None,
        },
        "rating_request": {
            "ticket": ticket(status="resolved"),
            "links": [{"score": s, "address": f"support+rate-12-{s}-abcdefghijklmnop@example.ru"}
                      for s in (1, 2, 3, 4, 5)],
        },
        "low_rating": {
            "ticket": engineer_ticket(),
            "rating": 2,
            "comment": "Долго ждали ответа.",
            "from_addr": "ivan@romashka.ru",
        },
        "incident_report": incident_context(),
        "monthly_report": monthly_context(),
    }


SUBJECTS = {
    ("ack", "ru"): "[#MT-12] Обращение зарегистрировано: Не печатает принтер",
    ("ack", "en"): "[#MT-12] Request received: Не печатает принтер",
    ("engineer_notice", "ru"):
        "[#MT-12] Новое обращение (высокий, ООО «Ромашка»): Не печатает принтер",
    ("engineer_notice", "en"): "[#MT-12] New ticket (major, ООО «Ромашка»): Не печатает принтер",
    ("reply", "ru"): "Re: [#MT-12] Не печатает принтер",
    ("reply", "en"): "Re: [#MT-12] Не печатает принтер",
    ("command_result", "ru"): "[#MT-12] Команды выполнены: Не печатает принтер",
    ("command_result", "en"): "[#MT-12] Commands applied: Не печатает принтер",
    ("evidence_refused", "ru"): "Ваш ответ не выполнен по обращению MT-12",
    ("evidence_refused", "en"): "Your reply did not act on ticket MT-12",
    ("forged_reply", "ru"): "Непроверенное письмо от вашего имени по обращению MT-12",
    ("forged_reply", "en"): "Unverified message in your name about ticket MT-12",
    ("unknown_sender", "ru"): "Не удалось зарегистрировать обращение: Помогите с сервером",
    ("unknown_sender", "en"): "We could not register your request: Помогите с сервером",
    ("digest_morning", "ru"): "Сводка на пт, 20.11.2026 19:50 MSK: обращений 2, срочных 2",
    ("digest_morning", "en"): "Digest for Fri 20 Nov 2026 19:50 MSK: 2 tickets, 2 urgent",
    ("digest_handover", "ru"): "Передача смены пт, 20.11.2026 19:50 MSK: срочных 1, нарушений 1, "
                               "не назначено 1",
    ("digest_handover", "en"): "Handover Fri 20 Nov 2026 19:50 MSK: 1 urgent, 1 breaches, "
                               "1 unassigned",
    ("digest_weekly", "ru"): "Неделя по договору ООО «Ромашка»: новых 5, решено 4, нарушений 1",
    ("admin_digest", "ru"): "mailticket mt-1: требует внимания — событий 4, состояний 2",
    ("admin_digest", "en"): "mailticket mt-1 needs attention: 4 event(s), 2 condition(s)",
    ("digest_weekly", "en"): "Week of ООО «Ромашка»: 5 opened, 4 resolved, 1 breaches",
    ("digest_setting", "ru"): "Утренняя сводка включена",
    ("digest_setting", "en"): "Morning digest on",
    ("queue_answer", "ru"): "Очередь (acme): 2",
    ("queue_answer", "en"): "Queue (acme): 2",
    ("queue_refused", "ru"): "Запрос очереди не выполнен: queue",
    ("queue_refused", "en"): "Queue request not answered: queue",
    ("status_answer", "ru"): "Открытые обращения (2): ООО «Ромашка»",
    ("status_answer", "en"): "Open requests (2): ООО «Ромашка»",
    ("unparseable", "ru"): "Не удалось прочитать ваше письмо: Счёт",
    ("unparseable", "en"): "We could not read your message: Счёт",
    ("too_large", "ru"): "Письмо слишком большое: Логи",
    ("too_large", "en"): "Message too large: Логи",
    ("sla_warning", "ru"): "[#MT-12] Скоро истекает срок первого ответа: Не печатает принтер",
    ("sla_warning", "en"): "[#MT-12] First response deadline approaching: Не печатает принтер",
    ("sla_breach", "ru"): "[#MT-12] Нарушен срок решения: Не печатает принтер",
    ("sla_breach", "en"): "[#MT-12] Resolution deadline missed: Не печатает принтер",
    ("rating_request", "ru"): "[#MT-12] Оцените, пожалуйста, нашу работу: Не печатает принтер",
    ("rating_request", "en"): "[#MT-12] How did we do? Не печатает принтер",
    ("low_rating", "ru"): "[#MT-12] Низкая оценка 2 из 5 (ООО «Ромашка»): Не печатает принтер",
    ("low_rating", "en"): "[#MT-12] Low rating 2/5 (ООО «Ромашка»): Не печатает принтер",
    ("incident_report", "ru"): "[#MT-12] Сообщение о нарушении SLA: Не печатает принтер",
    ("incident_report", "en"): "[#MT-12] SLA breach notice: Не печатает принтер",
    ("monthly_report", "ru"): "Отчёт о техподдержке за 2026-10: ООО «Ромашка»",
    ("monthly_report", "en"): "Support report 2026-10: ООО «Ромашка»",
}

# Phrases each text body must contain: the point of the message, in its words.
PHRASES = {
    ("ack", "ru"): ["Здравствуйте, Иван Петрович!", "зарегистрировано под номером MT-12",
                    "Договор:      ООО «Ромашка»", "пт, 20.11.2026 19:50 MSK",
                    "просто ответьте на это письмо", "метку [#MT-12]", "support@example.ru",
                    "С уважением,", "Ответим до 10:00 пн, 23 ноября (приоритет: высокий)."],
    ("ack", "en"): ["Dear Иван Петрович,", "registered it as MT-12", "Fri 20 Nov 2026 19:50 MSK",
                    "simply reply to this", "keep [#MT-12] in the subject", "support@example.ru",
                    "We will answer by 10:00 Mon, 23 November (priority: major)."],
    ("engineer_notice", "ru"): ["Зарегистрировано новое обращение MT-12.",
                                "От:            Иван Петров <ivan@romashka.ru>",
                                "Приоритет:     высокий (major)", "Статус:        в работе (open)",
                                "Ответственный: не назначен",
                                "Срок первого ответа: пн, 23.11.2026 10:00 MSK",
                                "Принтер HP в бухгалтерии не печатает.", "  - ошибка.png",
                                "  - Очистка очереди печати [printer-queue]"],
    ("engineer_notice", "en"): ["A new ticket MT-12 was opened.",
                                "From:       Иван Петров <ivan@romashka.ru>",
                                "Priority:   major\n", "Status:     in progress (open)",
                                "Assignee:   nobody", "First response due: Mon 23 Nov 2026 10:00 MSK",
                                "  - log.txt", "Knowledge base articles that may help:"],
    ("reply", "ru"): ["Добрый день!\n\nПерезапустите службу печати.\n\nС уважением,\n"
                      "Анна Смирнова,\nслужба технической поддержки\n\n-- \n",
                      "Обращение MT-12, статус: в работе."],
    ("reply", "en"): ["Перезапустите службу печати.\n\nKind regards,\nАнна Смирнова\n"
                      "Technical Support\n\n-- \n", "Request MT-12, status: in progress."],
    ("command_result", "ru"): ["Все команды из вашего ответа по обращению MT-12 выполнены.",
                               "  [выполнено] #status resolved\n              status is now resolved",
                               "Текст вашего ответа отправлен клиенту."],
    ("command_result", "en"): ["All commands in your reply to ticket MT-12 were applied.",
                               "  [done]   #time 30\n           30 min recorded",
                               "The text of your reply was sent to the customer."],
    ("evidence_refused", "ru"): ["внутренняя заметка", "через порт отправки",
                                 "подписывает письма DKIM"],
    ("evidence_refused", "en"): ["internal note marked unverified", "through the submission port",
                                 "signs with DKIM"],
    ("forged_reply", "ru"): ["от вашего имени (anna@support.example.ru),\nпо обращению MT-12.",
                             "не удалось: no DKIM signature.", "команды из письма не выполнены"],
    ("forged_reply", "en"): ["in your name (anna@support.example.ru) about\nticket MT-12.",
                             "We could not confirm that you sent it: no DKIM signature.",
                             "its commands were not applied"],
    ("unknown_sender", "ru"): ["адрес someone@unknown.org\nне связан ни с одним договором",
                               "контактное лицо вашей компании",
                               "ещё раз на адрес support@example.ru."],
    ("unknown_sender", "en"): ["the address\nsomeone@unknown.org is not linked to any support contract",
                               "company's contact person", "again to support@example.ru."],
    ("digest_morning", "ru"): ["Анна Смирнова, доброе утро!",
                               "из них просрочено или под угрозой: 2.\n\nMT-14  romashka",
                               "  просрочено на 30 мин (срок",
                               "== Ждут ответа клиента дольше 3 дн.: 1 ==\n\nMT-9  romashka  "
                               "высокий  ожидает ответа заявителя\n  Не печатает принтер\n"
                               "  срок не идёт\n", "(#digest off)"],
    ("digest_morning", "en"): ["Good morning, Анна Смирнова.", "  overdue by 30 min (due",
                               "== Waiting on the customer for more than 3 days: 1 =="],
    ("digest_handover", "ru"): ["Анна Смирнова и Вера Петрова, вы заступаете на дежурство\n"
                                "с пт, 20.11.2026 19:50 MSK до пт, 27.11.2026 19:50 MSK.",
                                "  MT-9  критический, срок первого ответа истёк "
                                "пн, 23.11.2026 10:00 MSK\n    Сервер\n",
                                "== Не назначены, линия L2: 1 ==\n\nMT-15  romashka"],
    ("digest_handover", "en"): ["you are on call\nfrom Fri 20 Nov 2026 19:50 MSK",
                                "  MT-9  critical, first response deadline passed "
                                "Mon 23 Nov 2026 10:00 MSK"],
    ("digest_weekly", "ru"): ["  зарегистрировано:         5\n  решено:                   4\n",
                              "(открыто 72 ч назад):\n\nMT-12  romashka"],
    ("admin_digest", "ru"): [
        "С пт, 20.11.2026 18:50 MSK по пт, 20.11.2026 19:50 MSK:",
        "  пт, 20.11.2026 19:50 MSK  письмо #7 от x@evil.example (smtp)\n    ambiguous_headers\n",
        "== Постоянные ошибки доставки: 2 ==\n  пт, 20.11.2026 19:50 MSK  ivan@romashka.ru "
        "(отчёт о недоставке, outbox #12)\n    5.1.1 smtp; 550 user unknown\n",
        "olga@romashka.ru (отказ релея, outbox #13)",
        "ivan@romashka.ru, после 3 постоянных ошибок",
        "== Релей отказывает ==\n  Исходящих писем задержано ошибками релея: 4, старейшее ждёт "
        "45 мин\n    421 4.3.2 try later\n",
        "== Нет производственного календаря ==\n  календарь ru: в holidays 0.60 нет "
        "производственного календаря RU на 2028; обновите пакет или перечислите дни в календаре\n",
        "То же показывает `mailticket status`."],
    ("admin_digest", "en"): [
        "Since Fri 20 Nov 2026 18:50 MSK, up to Fri 20 Nov 2026 19:50 MSK:",
        "== Quarantined mail (see `mailticket spool list --state quarantined`): 1 ==",
        "ivan@romashka.ru (bounce, outbox #12)", "olga@romashka.ru (refused by the relay, outbox #13)",
        "ivan@romashka.ru, after 3 permanent failures",
        "4 outgoing mail(s) held back by relay errors, the oldest for 45 min",
        "calendar ru: holidays 0.60 has no RU production calendar for 2028",
        "`mailticket status` lists the same items."],
    ("digest_weekly", "en"): ["  SLA breaches:           1\n", "(opened 72 h ago)"],
    ("digest_setting", "ru"): ["Утренняя сводка будет приходить в рабочие дни в 09:30."],
    ("digest_setting", "en"): ["Your morning digest will arrive on working days at 09:30."],
    ("queue_answer", "ru"): ["== Назначены вам: 1 ==\n\nMT-12  romashka  высокий  в работе  "
                             "[под угрозой]\n  Не печатает принтер\n  осталось 1 ч 15 мин "
                             "(срок пн, 23.11.2026 10:00 MSK)\n  последнее письмо клиента "
                             "2 ч 30 мин назад\n  ответить: support+r1-12-20777-abc@example.ru\n",
                             "== Не назначены, линия L1: 0 ==\n  нет\n",
                             "  просрочено на 1 ч 30 мин (срок", "пропущены): soon."],
    ("queue_answer", "en"): ["== Assigned to you: 1 ==", "  1 h 15 min left (due Mon 23 Nov",
                             "  overdue by 1 h 30 min", "customer's last message 2 h 30 min ago"],
    ("queue_refused", "ru"): ["список не отправлен", "SMTP AUTH", "«#статус»"],
    ("queue_refused", "en"): ["no list was sent", "SMTP AUTH", "\"#status\""],
    ("status_answer", "ru"): ["Ваши открытые обращения по договору «ООО «Ромашка»»: 2.",
                              "MT-12  Не печатает принтер\n"
                              "  статус: в работе; приоритет: высокий\n"
                              "  ответим до 10:00 пн, 23 ноября\n\n"
                              "MT-14  VPN\n  статус: ожидает ответа заявителя; "
                              "приоритет: обычный\n\n"],
    ("status_answer", "en"): ["MT-12  Не печатает принтер\n  status: in progress; "
                              "priority: major\n  we will answer by 10:00 Mon, 23 November\n"],
    ("unparseable", "ru"): ["не смогли прочитать ваше письмо «Счёт»",
                            "Причина: broken MIME structure.", "обычным текстом"],
    ("unparseable", "en"): ["could not read your message \"Счёт\"",
                            "Reason: broken MIME structure.", "as plain text"],
    ("too_large", "ru"): ["его размер 37,5 МБ, а допустимый размер письма — 25 МБ."],
    ("too_large", "en"): ["it is 37.5 MB, and the limit is 25 MB."],
    ("sla_warning", "ru"): ["Вы назначены ответственным по обращению MT-12.",
                            "Срок первого ответа по обращению MT-12 истекает\n"
                            "пн, 23.11.2026 10:00 MSK."],
    ("sla_warning", "en"): ["You are the assignee of ticket MT-12.",
                            "The first response deadline of ticket MT-12 is\n"
                            "Mon 23 Nov 2026 10:00 MSK."],
    ("sla_breach", "ru"): ["Срок решения по обращению MT-12 истёк\nпн, 23.11.2026 10:00 MSK.",
                           "Обращение эскалировано вам."],
    ("sla_breach", "en"): ["The resolution deadline of ticket MT-12 passed at\n"
                           "Mon 23 Nov 2026 10:00 MSK.", "escalated to you"],
    ("rating_request", "ru"): ["Обращение MT-12 «Не печатает принтер» решено.",
                               "  5 — отлично: support+rate-12-5-abcdefghijklmnop@example.ru",
                               "одной цифрой от 1 до 5"],
    ("rating_request", "en"): ["Your request MT-12 \"Не печатает принтер\" has been resolved.",
                               "  1 - very poor: support+rate-12-1-abcdefghijklmnop@example.ru",
                               "a single digit from 1 to 5"],
    ("low_rating", "ru"): ["Клиент оценил работу по обращению MT-12 на 2 из 5.",
                           "Оценил:      ivan@romashka.ru", "Долго ждали ответа.", "#status open"],
    ("low_rating", "en"): ["The customer rated ticket MT-12 2 out of 5.",
                           "Rated by:  ivan@romashka.ru", "Долго ждали ответа.", "#status open"],
    ("incident_report", "ru"): [
        "Сообщение о нарушении SLA\nОбращение MT-12: Не печатает принтер\n",
        "Договор:      ООО «Ромашка»\nПриоритет:    критический\n",
        "Что произошло (со слов заявителя):\nПринтер не печатает.\n",
        "Влияние на работу:\nБухгалтерия не может печатать счета.\n",
        "  Начало:                  пт, 20.11.2026 19:30 MSK\n"
        "  Обнаружено:              пт, 20.11.2026 19:50 MSK (письмо заявителя)\n"
        "  Первый ответ:            пт, 20.11.2026 20:25 MSK\n"
        "  Работа восстановлена:    пт, 20.11.2026 23:00 MSK (по отметке инженера)\n"
        "  Обращение решено:        пт, 20.11.2026 23:10 MSK\n"
        "  Длительность инцидента:  3 ч 30 мин (от начала до восстановления)\n",
        "Причина:\nЗакончился тонер.\n", "Принятые меры:\nКартридж заменён.\nПринтер проверен.\n",
        "Меры по предотвращению:\nЗапасной картридж хранится в офисе.\n",
        "  Первый ответ, приоритет критический\n    норматив:    30 мин\n"
        "    срок:        пт, 20.11.2026 20:20 MSK\n    фактически:  пт, 20.11.2026 20:25 MSK\n"
        "    итог:        нарушен, просрочка 5 мин\n"
        "  Решение, приоритет критический\n    норматив:    4 ч\n",
        "  пт, 20.11.2026 20:20 MSK  нарушение SLA: истёк срок первого ответа\n"
        "  пт, 20.11.2026 20:25 MSK  ответ Анна Смирнова: Меняем картридж.\n"
        "  пт, 20.11.2026 20:25 MSK  причина записана (Анна Смирнова)\n"
        "  пт, 20.11.2026 23:00 MSK  работа восстановлена (Анна Смирнова)\n"
        "  пт, 20.11.2026 23:10 MSK  статус: в работе → решено (Анна Смирнова)\n"],
    ("incident_report", "en"): [
        "SLA breach notice\nTicket MT-12: Не печатает принтер\n",
        "What happened (in the requester's words):\nПринтер не печатает.\n",
        "  Service restored:  Fri 20 Nov 2026 23:00 MSK (recorded by an engineer)\n"
        "  Ticket resolved:   Fri 20 Nov 2026 23:10 MSK\n",
        "  First response, priority critical\n    target:  30 min\n"
        "    due:     Fri 20 Nov 2026 20:20 MSK\n    actual:  Fri 20 Nov 2026 20:25 MSK\n"
        "    result:  breached, 5 min late\n  Resolution, priority critical\n",
        "Cause:\nЗакончился тонер.\n", "Actions taken:\nКартридж заменён.\nПринтер проверен.\n",
        "Prevention:\nЗапасной картридж хранится в офисе.\n",
        "  Fri 20 Nov 2026 19:50 MSK  message from ivan@romashka.ru: Принтер не печатает.\n",
        "  Fri 20 Nov 2026 20:25 MSK  cause recorded by Анна Смирнова\n"],
    ("monthly_report", "ru"): [
        "Отчёт о техподдержке по договору с ООО «Ромашка»\n"
        "Период: чт, 01.10.2026 00:00 MSK — сб, 31.10.2026 23:59 MSK\n"
        "Цифры зафиксированы вс, 01.11.2026 09:00 MSK и при повторном формировании не меняются.\n",
        "Зарегистрировано обращений: 7 (в прошлом месяце: 5)\n"
        "В работе на начало месяца: 2; на конец месяца: 3\n"
        "Соблюдение сроков SLA в целом: 66,7 % (нарушений: 1); в прошлом месяце: 100 % "
        "(нарушений: 0).\n",
        "  Критический: 1\n  Высокий: 2\n  Обычный: 4\n", "  L1: 6\n  L2: 1\n",
        "Критический — первый ответ (срок 30 мин, круглосуточно)\n"
        "  Сроков: 1 (обращений: 1); в срок: 0; с нарушением: 1; соблюдение: 0 %\n"
        "  Медиана: 45 мин; 90-й процентиль: 45 мин (измерено: 1)\n",
        "Высокий — решение (срок 16 ч, рабочее время)\n"
        "  Сроков: 2 (обращений: 2); в срок: 2; с нарушением: 0; соблюдение: 100 %\n"
        "  Медиана: 10 ч; 90-й процентиль: 15 ч (измерено: 2)\n"
        "  Сколько срока заняло: до 25 % — 0, 25–50 % — 1, 50–75 % — 0, 75–100 % — 1, "
        "позже срока — 0\n  Ещё шли на конец месяца: 1\n",
        "Нарушения сроков (1):\n  MT-9, критический, первый ответ: срок пт, 20.11.2026 19:50 "
        "MSK; выполнено пт, 20.11.2026 23:10 MSK; просрочка 15 мин (круглосуточно)\n",
        "  MT-12, высокий, решение: срок пн, 23.11.2026 10:00 MSK\n",
        "  Критический: соблюдение 100 % → 0 % (−100 п. п.); нарушений 0 → 1\n",
        "с 10:00 до 11:00; день недели — понедельник.", "report-romashka-2026-10.csv",
        "  3 × Не печатает принтер\n  2 × VPN\n",
        "Оценка работы (обращения, решённые в этом месяце):\n"
        "  Решено: 5; запрошена оценка: 5; оценено: 4 (80 %)\n"
        "  Средняя оценка: 3 из 5\n"
        "  Оценка 5: 1\n  Оценка 4: 1\n  Оценка 3: 0\n  Оценка 2: 1\n  Оценка 1: 1\n",
        "Оценки 2 и ниже:\n"
        "  MT-9 «Не работает 1С»: 1 из 5\n    (без комментария)\n"
        "  MT-4 «VPN»: 2 из 5\n    Долго ждали ответа.\n    И <b>грубо</b>.\n",
        "Использованные услуги\n"
        "Вид договора: Комплексное обслуживание (техническая поддержка и сопровождение "
        "прикладного ПО)\n"
        "  Обращения сотрудников: 5\n"
        "  Оповещения мониторинга: 2 (писем мониторинга: 7, повторов после восстановления: 1)\n"
        "  Учтённое время инженеров: 5 ч 30 мин\n"
        "  Обращения по виду договора на момент регистрации:\n"
        "    Комплексное обслуживание (техническая поддержка и сопровождение прикладного ПО): 6\n"
        "    Техническая поддержка: 1\n\nС уважением,"],
    ("monthly_report", "en"): [
        "Support report for ООО «Ромашка»\n"
        "Period: Thu 1 Oct 2026 00:00 MSK - Sat 31 Oct 2026 23:59 MSK\n",
        "Tickets opened: 7 (previous month: 5)",
        "Critical - first response (target 30 min, 24/7)\n"
        "  Timers: 1 (tickets: 1); met: 0; breached: 1; compliance: 0 %\n",
        "  Median: 10 h; 90th percentile: 15 h (2 measured)\n",
        "Busiest hour: 10:00-11:00; busiest weekday: Monday.",
        "  3 x Не печатает принтер\n  2 x VPN\n",
        "Customer satisfaction (requests resolved this month):\n"
        "  Resolved: 5; asked for a rating: 5; rated: 4 (80 %)\n"
        "  Average rating: 3 of 5\n"
        "  Rated 5: 1\n  Rated 4: 1\n  Rated 3: 0\n  Rated 2: 1\n  Rated 1: 1\n",
        "Rated 2 or lower:\n"
        "  MT-9 \"Не работает 1С\": 1 of 5\n    (no comment)\n"
        "  MT-4 \"VPN\": 2 of 5\n    Долго ждали ответа.\n    И <b>грубо</b>.\n",
        "Services used\n"
        "Contract type: Complex support (technical and application software)\n"
        "  Requests from people: 5\n"
        "  Monitoring alerts:    2 (alert mails: 7, flapping: 1)\n"
        "  Engineer time recorded: 5 h 30 min\n"
        "  Tickets by contract type at opening:\n"
        "    Complex support (technical and application software): 6\n"
        "    Technical support: 1\n\nKind regards,"],
}

CASES = sorted(SUBJECTS)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def test_every_template_has_a_context_and_expectations(renderer: Renderer) -> None:
    names = set(contexts())
    assert set(renderer.names("ru")) == names
    assert set(renderer.names("en")) == names
    assert {name for name, _ in SUBJECTS} == names
    assert set(PHRASES) == set(SUBJECTS)


def test_every_ru_file_has_an_en_twin_and_back() -> None:
    ru = sorted(p.name for p in (TEMPLATES / "ru").glob("*.j2"))
    en = sorted(p.name for p in (TEMPLATES / "en").glob("*.j2"))
    assert ru == en
    assert "_base.j2" in ru


@pytest.mark.parametrize(("name", "locale"), CASES)
def test_renders_exact_subject_and_key_phrases(renderer: Renderer, name: str, locale: str) -> None:
    out = renderer.render(name, locale, contexts()[name])
    assert out.subject == SUBJECTS[name, locale]
    for phrase in PHRASES[name, locale]:
        assert phrase in out.text
    assert out.text.endswith("\n") and not out.text.endswith("\n\n")
    assert not out.text.startswith("\n")
    for part in (out.subject, out.text, out.html or ""):
        assert "None" not in part
        assert "Undefined" not in part
        assert "{{" not in part and "{%" not in part


@pytest.mark.parametrize(("name", "locale"), CASES)
def test_only_customer_mail_has_html(renderer: Renderer, name: str, locale: str) -> None:
    out = renderer.render(name, locale, contexts()[name])
    if name in ("ack", "reply", "rating_request", "incident_report", "monthly_report",
                "status_answer", "queue_answer", "digest_morning",
                    "digest_handover", "digest_weekly"):
        assert out.html is not None
        assert out.html.startswith("<!DOCTYPE html>\n")
        assert f'<html lang="{locale}">' in out.html
        assert out.html.endswith("</html>\n")
    else:
        assert out.html is None


@pytest.mark.parametrize("locale", ["ru", "en"])
def test_engineer_notice_explains_every_command(renderer: Renderer, locale: str) -> None:
    text = renderer.render("engineer_notice", locale, contexts()["engineer_notice"]).text
    footer = text.split("\n-- \n", 1)[1]
    for command in ("#status", "#priority", "#assign", "#line", "#internal", "#time"):
        assert f"\n  {command} " in footer


def _variables(context: dict[str, Any]) -> list[str]:
    return sorted(context)


@pytest.mark.parametrize("locale", ["ru", "en"])
@pytest.mark.parametrize(
    ("name", "variable"),
    [(name, var) for name, ctx in sorted(contexts().items()) for var in _variables(ctx)],
)
def test_a_missing_variable_raises(renderer: Renderer, locale: str, name: str, variable: str) -> None:
    context = dict(contexts()[name])
    del context[variable]
    with pytest.raises(jinja2.UndefinedError):
        renderer.render(name, locale, context)


@pytest.mark.parametrize("locale", ["ru", "en"])
def test_a_missing_ticket_field_raises(renderer: Renderer, locale: str) -> None:
    context = contexts()["ack"]
    del context["ticket"]["created_at"]
    with pytest.raises(jinja2.UndefinedError, match="created_at"):
        renderer.render("ack", locale, context)


def test_html_is_escaped_and_text_is_not(renderer: Renderer) -> None:
    context = contexts()["reply"] | {"text": "<script>alert(1)</script>\nA & B"}
    out = renderer.render("reply", "ru", context)
    assert "<script>alert(1)</script>\nA & B\n" in out.text
    assert out.html is not None
    assert "<div>&lt;script&gt;alert(1)&lt;/script&gt;<br>\nA &amp; B</div>" in out.html
    assert "<script>" not in out.html


@pytest.mark.parametrize("locale", ["ru", "en"])
def test_report_html_shows_the_chart_and_escapes_engineer_text(
    renderer: Renderer, locale: str
) -> None:
    monthly = renderer.render("monthly_report", locale, monthly_context()).html or ""
    for chart in CHARTS:
        assert f'<img src="cid:{chart}-romashka-2026-10@example.ru"' in monthly
    # Routing rules are the provider's configuration: only the internal variant shows them.
    assert "1C goes to L2" not in monthly
    internal = renderer.render("monthly_report", locale,
                               monthly_context() | {"internal": True}).html or ""
    assert "<td>1C goes to L2</td><td>2</td>" in internal
    assert "report-romashka-2026-10.csv" in monthly
    # The customer's comment is the customer's text: escaped, line breaks kept.
    assert ("<td>MT-4</td><td>VPN</td><td>2</td><td>Долго ждали ответа.<br>\n"
            "И &lt;b&gt;грубо&lt;/b&gt;.</td></tr>") in monthly
    assert "<b>грубо</b>" not in monthly
    assert "<tr><td>5</td><td>1</td></tr>\n<tr><td>4</td><td>1</td></tr>\n" in monthly
    context = incident_context()
    context["incident"]["cause"] = "<b>disk</b> & RAID"
    incident = renderer.render("incident_report", locale, context).html or ""
    assert "&lt;b&gt;disk&lt;/b&gt; &amp; RAID" in incident
    assert "<b>disk</b>" not in incident


def test_subject_is_one_clean_line(renderer: Renderer) -> None:
    context = contexts()["ack"]
    context["ticket"]["subject"] = "  Printer\r\nBcc: evil@x.y\u2028\x00 broken\t "
    out = renderer.render("ack", "en", context)
    assert out.subject == "[#MT-12] Request received: Printer Bcc: evil@x.y broken"


def test_tag_already_in_ticket_subject_appears_once(renderer: Renderer) -> None:
    context = contexts()["reply"]
    context["ticket"]["subject"] = "[#mt-12] Не печатает принтер"
    assert renderer.render("reply", "ru", context).subject == "Re: [#MT-12] Не печатает принтер"


def test_empty_name_and_subject_read_naturally(renderer: Renderer) -> None:
    context = contexts()["ack"] | {"customer_name": ""}
    context["ticket"]["subject"] = ""
    out = renderer.render("ack", "ru", context)
    assert out.subject == "[#MT-12] Обращение зарегистрировано"
    assert out.text.startswith("Здравствуйте!\n\n")
    assert "Тема:         (без темы)\n" in out.text


def test_engineer_notice_optional_parts_disappear(renderer: Renderer) -> None:
    context = contexts()["engineer_notice"] | {
        "event": "reopened", "from_name": "", "attachments": [], "suggestions": [],
    }
    context["ticket"] |= {"first_response_due": None, "assignee": "anna@support.example.ru"}
    out = renderer.render("engineer_notice", "ru", context)
    assert out.subject == (
        "[#MT-12] Обращение снова открыто (высокий, ООО «Ромашка»): Не печатает принтер"
    )
    assert "Клиент снова открыл обращение MT-12 своим письмом." in out.text
    assert "От:            ivan@romashka.ru\n" in out.text
    assert "Ответственный: anna@support.example.ru\n" in out.text
    assert "Срок" not in out.text
    assert "Вложения" not in out.text and "базы знаний" not in out.text


def test_failed_commands_are_listed(renderer: Renderer) -> None:
    context = contexts()["command_result"] | {
        "results": [{"line": "#priority urgent", "ok": False, "message": "unknown priority"}],
        "delivered_to_customer": False,
    }
    out = renderer.render("command_result", "ru", context)
    assert out.subject == "[#MT-12] Ошибки в командах: Не печатает принтер"
    assert "  [ОШИБКА]    #priority urgent\n              unknown priority\n" in out.text
    assert "Клиенту ничего не отправлено." in out.text


def test_unknown_locale_falls_back_to_english(renderer: Renderer) -> None:
    out = renderer.render("too_large", "de_DE", contexts()["too_large"])
    assert out.subject == "Message too large: Логи"
    assert renderer.render("too_large", "ru-RU", contexts()["too_large"]).subject == (
        "Письмо слишком большое: Логи"
    )


def test_missing_locale_template_falls_back_to_english(tmp_path: Path) -> None:
    for locale in ("ru", "en"):
        (tmp_path / locale).mkdir()
        (tmp_path / locale / "_base.j2").write_text(
            '{% if _part == "subject" %}{% block subject %}{% endblock %}'
            "{% else %}{% block text %}{% endblock %}{% endif %}",
            encoding="utf-8",
        )
    (tmp_path / "en" / "hello.j2").write_text(
        '{% extends "_base.j2" %}{% block subject %}Hi {{ who }}{% endblock %}'
        "{% block text %}Hello, {{ who }}.{% endblock %}",
        encoding="utf-8",
    )
    out = Renderer(tmp_path).render("hello", "ru", {"who": "Anna"})
    assert (out.subject, out.text, out.html) == ("Hi Anna", "Hello, Anna.\n", None)
    with pytest.raises(jinja2.TemplateNotFound):
        Renderer(tmp_path).render("absent", "ru", {})


@pytest.mark.parametrize("name", ["../ack", "_base", "Ack", "ack.j2", ""])
def test_bad_template_names_are_refused(renderer: Renderer, name: str) -> None:
    with pytest.raises(ValueError, match="bad template name"):
        renderer.render(name, "ru", {})


def test_part_variable_is_reserved(renderer: Renderer) -> None:
    with pytest.raises(ValueError, match="reserved"):
        renderer.render("ack", "ru", contexts()["ack"] | {"_part": "html"})
    with pytest.raises(ValueError, match="reserved"):
        renderer.render("ack", "ru", contexts()["ack"] | {"_split": "x"})


class _CountingTicket(dict[str, Any]):
    """A ticket mapping that counts how often a template reads its tag (its top level reads it once)."""

    reads = 0

    def __getitem__(self, key: str) -> Any:
        if key == "tag":
            type(self).reads += 1
        return super().__getitem__(key)


@pytest.mark.parametrize(("name", "passes"), [("engineer_notice", ("text",)),
                                            ("ack", ("text", "html"))])
@pytest.mark.parametrize("locale", ["ru", "en"])
def test_subject_and_text_come_from_one_render_pass(
    renderer: Renderer, name: str, passes: tuple[str, ...], locale: str,
) -> None:
    # The shipped layout gives the subject and the text in one pass; only a
    # message with an HTML part is rendered a second time (issue 17: the
    # layout ran once per part, three times for an acknowledgement). The top
    # level of both templates reads the tag once per pass, so a pass more
    # than these reads it more often.
    context = contexts()[name]
    ticket = _CountingTicket(context["ticket"])
    expected = sum(_reads_in_pass(renderer, name, locale, context | {"ticket": ticket}, part)
                   for part in passes)
    _CountingTicket.reads = 0
    out = renderer.render(name, locale, context | {"ticket": ticket})
    assert _CountingTicket.reads == expected
    assert out == renderer.render(name, locale, context)
    assert out.subject.startswith(context["ticket"]["tag"]) and out.text.strip()


def _reads_in_pass(renderer: Renderer, name: str, locale: str, context: dict[str, Any],
                   part: str) -> int:
    """How often one pass of the layout for ``part`` reads the ticket's tag."""
    env = renderer._envs[locale][part == "html"]
    _CountingTicket.reads = 0
    env.get_template(f"{name}.j2").render(context | {"_part": part, "_split": "|"})
    reads = _CountingTicket.reads
    assert reads > 0
    return reads


@pytest.mark.parametrize(
    ("value", "zone", "locale", "expected"),
    [
        (CREATED, "Europe/Moscow", "ru", "пт, 20.11.2026 19:50 MSK"),
        (CREATED, "Europe/Moscow", "en", "Fri 20 Nov 2026 19:50 MSK"),
        (datetime(2026, 1, 4, 21, 5, tzinfo=UTC), "Europe/Moscow", "ru", "пн, 05.01.2026 00:05 MSK"),
        (CREATED, "Asia/Yekaterinburg", "ru", "пт, 20.11.2026 21:50 UTC+05"),
        (CREATED, "UTC", "en", "Fri 20 Nov 2026 16:50 UTC"),
        (datetime(2026, 7, 1, 12, 0, tzinfo=UTC), "Europe/Berlin", "en", "Wed 1 Jul 2026 14:00 CEST"),
    ],
)
def test_format_datetime(value: datetime, zone: str, locale: str, expected: str) -> None:
    assert format_datetime(value, zone, locale) == expected


def test_format_datetime_refuses_naive_and_non_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_datetime(datetime(2026, 11, 20, 19, 50), "Europe/Moscow", "ru")
    with pytest.raises(TypeError, match="NoneType"):
        format_datetime(None, "Europe/Moscow", "ru")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("minutes", "ru", "en"),
    [
        (150, "2 ч 30 мин", "2 h 30 min"),
        (120, "2 ч", "2 h"),
        (45, "45 мин", "45 min"),
        (0, "0 мин", "0 min"),
        (-90, "-1 ч 30 мин", "-1 h 30 min"),
        (1500, "25 ч", "25 h"),
    ],
)
def test_format_duration(minutes: int, ru: str, en: str) -> None:
    assert format_duration(minutes, "ru") == ru
    assert format_duration(minutes, "en") == en


def test_format_decimal_detag_and_locale_names() -> None:
    assert format_decimal(37.5, "ru") == "37,5"
    assert format_decimal(25.0, "en") == "25"
    assert format_decimal(0.25, "en", places=2) == "0.25"
    assert detag("Re: [#mt-12]  Printer", "[#MT-12]") == "Re: Printer"
    assert detag("Printer", "") == "Printer"
    assert [normalise_locale(x) for x in ("ru", "RU", "ru_RU", "en-GB", "de", "")] == [
        "ru", "ru", "ru", "en", "en", "en",
    ]
