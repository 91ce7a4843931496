"""The monthly report read from the SLA record and frozen at the month's close (issue 13).

The month is :mod:`support.report_month`'s November 2026, written straight into
the database (tickets, their history and the record rows), so every figure is
exact and no mail goes through the pipeline.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import threading
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker
from support import report_month as month
from support.report_month import ROUTING_RULE, at, nov

from mailticket.config import Config
from mailticket.outbound.notify import Notifier
from mailticket.outbound.render import Renderer
from mailticket.reports import delivery, export, month_close, monthly
from mailticket.reports.monthly import MonthlyReport
from mailticket.reports.volume import clean_subject, frequent_subjects
from mailticket.store.db import make_engine, make_sessionmaker, transaction
from mailticket.store.schema import OutboxItem, SlaEvent, SlaMonthClose

Figures = dict[tuple[str, str, str], str]

# Per priority × timer (× minutes): target, tickets, timers measured, met, breached,
# compliance %, running at the month's end, stopped, answered (times measured), median,
# 90th percentile, then answers within 25/50/75/100 % of the target and later.
SLA_ROWS = {
    "critical/first_response/all_hours":
        ("30", "3", "3", "1", "2", "33.3", "0", "0", "2", "30.0", "40", "0", "0", "1", "0", "1"),
    "critical/resolution/all_hours":
        ("240", "2", "2", "2", "0", "100.0", "1", "0", "2", "150.0", "180", "0", "1", "1", "0", "0"),
    # MT-3 breached as major: it stays here although the ticket is minor now.
    "major/first_response/business_hours":
        ("120", "2", "2", "1", "1", "50.0", "1", "0", "2", "135.0", "210", "0", "1", "0", "0", "1"),
    # Two late next responses of MT-4 and one in time.
    "major/next_response/business_hours":
        ("240", "1", "3", "1", "2", "33.3", "0", "0", "3", "300.0", "660", "1", "0", "0", "0", "2"),
    "major/resolution/business_hours":
        ("960", "1", "1", "0", "1", "0.0", "1", "0", "1", "3240.0", "3240", "0", "0", "0", "0", "1"),
    "minor/first_response/business_hours":
        ("240", "1", "1", "1", "0", "100.0", "0", "1", "1", "60.0", "60", "1", "0", "0", "0", "0"),
    # MT-5's two resolution periods, MT-3 (minor by then), MT-8, and MT-9 from October.
    "minor/resolution/business_hours":
        ("2400", "4", "5", "5", "0", "100.0", "0", "0", "5", "600.0", "2280", "3", "1", "0", "1",
         "0"),
    # Recorded before 0008: priority and target from the ticket and the plan.
    "technical/first_response/business_hours":
        ("480", "1", "1", "0", "1", "0.0", "0", "0", "0", "", "", "0", "0", "0", "0", "0"),
}
SLA_KEYS = ("target_minutes", "tickets", "measured", "met", "breached", "compliance_percent",
            "running", "stopped", "answered", "median_minutes", "p90_minutes",
            "within_25_percent", "within_50_percent", "within_75_percent", "within_100_percent",
            "over_100_percent")

# Ticket/timer/due: priority at the breach, answered, unanswered, minutes overdue.
BREACHES = {
    "MT-2/first_response/2026-11-03T10:30+03:00":
        ("critical", "2026-11-03T10:40+03:00", "no", "10"),
    "MT-3/first_response/2026-11-04T11:00+03:00": ("major", "2026-11-04T12:30+03:00", "no", "90"),
    "MT-4/next_response/2026-11-10T14:00+03:00": ("major", "2026-11-10T15:00+03:00", "no", "60"),
    "MT-4/resolution/2026-11-10T14:00+03:00": ("major", "2026-11-13T16:00+03:00", "no", "2280"),
    "MT-4/next_response/2026-11-11T14:00+03:00": ("major", "2026-11-12T09:00+03:00", "no", "420"),
    "MT-11/first_response/2026-11-24T18:00+03:00": ("technical", "", "", ""),
    "MT-7/first_response/2026-11-30T23:30+03:00": ("critical", "", "yes", "30"),
}
RUNNING = {
    "MT-7/resolution": ("critical", "2026-12-01T03:00+03:00"),
    "MT-6/first_response": ("major", "2026-12-01T09:00+03:00"),
    "MT-6/resolution": ("major", "2026-12-02T11:00+03:00"),
}
TREND = {
    "critical": ("100.0", "60.0", "-40.0", "0", "2"),
    "major": ("", "33.3", "", "0", "4"),
    "minor": ("100.0", "100.0", "0.0", "0", "0"),
    "technical": ("", "0.0", "", "0", "1"),
    "total": ("100.0", "61.1", "-38.9", "0", "7"),
}


def figures(text: str) -> Figures:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["section", "item", "key", "value"]
    found = {(section, item, key): value for section, item, key, value in rows[1:]}
    assert len(found) == len(rows) - 1, "a figure is written twice"
    return found


def items(found: Figures, section: str) -> list[str]:
    return list(dict.fromkeys(item for s, item, _ in found if s == section))


@pytest.fixture
def november(db_url: str, tmp_path: Path) -> tuple[Config, sessionmaker[Session]]:
    cfg = month.config(tmp_path, db_url)
    factory = make_sessionmaker(make_engine(db_url))
    month.generate_november(factory)
    return cfg, factory


def build(factory: sessionmaker[Session], cfg: Config, when: datetime,
          which: str = "2026-11") -> MonthlyReport:
    with transaction(factory) as s:
        return monthly.build(s, cfg, "acme", which, when)


def test_november_figures_per_priority_and_timer(
    november: tuple[Config, sessionmaker[Session]],
) -> None:
    cfg, factory = november
    report = build(factory, cfg, month.first_build_time())
    found = figures(export.to_csv(report))
    assert items(found, "sla") == list(SLA_ROWS)
    for item, values in SLA_ROWS.items():
        assert tuple(found["sla", item, key] for key in SLA_KEYS) == values, item
    assert items(found, "breach") == list(BREACHES)
    for item, (priority, answered, unanswered, overdue) in BREACHES.items():
        assert (found["breach", item, "priority"], found["breach", item, "answered"],
                found["breach", item, "unanswered"], found["breach", item, "overdue_minutes"]
                ) == (priority, answered, unanswered, overdue), item
        assert found["breach", item, "due"] == item.rsplit("/", 1)[1]
    assert found["breach", "MT-2/first_response/2026-11-03T10:30+03:00", "minutes"] == "all_hours"
    assert items(found, "running") == list(RUNNING)
    for item, (priority, due) in RUNNING.items():
        assert (found["running", item, "priority"], found["running", item, "due"]) == (priority, due)
    assert items(found, "trend") == list(TREND)
    for key, values in TREND.items():
        assert tuple(found["trend", key, k] for k in (
            "previous_percent", "percent", "change_points", "previous_breached", "breached",
        )) == values, key
    summary = {k: v for (s, _, k), v in found.items() if s == "summary"}
    assert summary == {
        "contract": "acme", "month": "2026-11", "status": "final",
        "as_of": "2026-12-01T00:00+03:00", "closed_at": "2026-12-01T09:00+03:00",
        "tickets": "9", "previous_month": "2026-10", "previous_tickets": "2",
        # MT-9 was open when November began; MT-6 and MT-7 when it ended.
        "backlog_start": "1", "backlog_end": "2",
    }
    # Tagged, forwarded and answered subjects count as one.
    assert [(item, found["subject", item, "tickets"]) for item in items(found, "subject")] == [
        ("Не работает телефония", "3"), ("Ошибка 1С при проведении", "2"),
        ("VPN не подключается", "1"), ("Вопрос по лицензиям", "1"), ("Пароль", "1"),
        ("Сервер 1С недоступен", "1")]
    # The stopped first response of MT-8 is only in the internal variant's list.
    assert "stopped" not in {s for s, _, _ in found}
    internal = figures(export.to_csv(report, internal=True))
    assert internal["stopped", "MT-8/first_response", "at"] == "2026-11-20T10:30+03:00"


def test_closed_month_prints_the_same_after_later_records(
    november: tuple[Config, sessionmaker[Session]],
) -> None:
    cfg, factory = november
    # Before the month ends: live, provisional, nothing frozen for it.
    live = build(factory, cfg, nov(20, 12))
    assert live.provisional and figures(export.to_csv(live))["summary", "", "status"] == \
        "provisional"
    with factory() as s:
        assert s.scalars(select(SlaMonthClose.month)).all() == ["2026-10"]
    notifier = Notifier(cfg, Renderer(cfg.templates_dir))
    assert delivery.monthly_run(factory, notifier, month.first_build_time()) == len(cfg.contracts)
    with factory() as s:
        mailed = next(i for i in s.scalars(select(OutboxItem))
                      if i.rcpt_tos == ["ivan@gmail.example"])
        close = s.scalar(select(SlaMonthClose).where(SlaMonthClose.contract_id == "acme",
                                                     SlaMonthClose.month == "2026-11"))
        assert close is not None
        last_before = s.scalar(select(func.max(SlaEvent.id)))
    assert close.last_event_id == last_before
    attached = next(p for p in email.message_from_bytes(mailed.raw, policy=email.policy.default)
                    .walk() if p.get_content_type() == "text/csv")
    scheduled_csv = attached.get_payload(decode=True)

    # December: answers, a rating, a priority change and two breaches recorded late.
    month.after_close(factory)
    rebuilt = build(factory, cfg, month.later(4))
    assert export.to_csv(rebuilt).encode() == scheduled_csv
    assert export.to_csv(build(factory, cfg, month.later(30))).encode() == scheduled_csv
    ru = notifier.renderer.render("monthly_report", "ru", export.template_context(
        rebuilt, {c: c for c in export.CHARTS}, "r.csv"))
    assert "Цифры зафиксированы вт, 01.12.2026 09:00 MSK" in ru.text
    assert "MT-7, критический, первый ответ: срок пн, 30.11.2026 23:30 MSK; к концу месяца не " \
           "выполнено; просрочка 30 мин на конец месяца (круглосуточно)" in ru.text

    # The breach of MT-6 dated 30 Nov but recorded after November closed counts in
    # December; MT-5's first response was counted in November and is not counted again.
    december = figures(export.to_csv(build(factory, cfg, month.later(4), "2026-12")))
    assert items(december, "breach") == ["MT-6/resolution/2026-11-30T23:00+03:00",
                                         "MT-6/first_response/2026-12-01T09:00+03:00"]
    assert december["breach", "MT-6/resolution/2026-11-30T23:00+03:00", "recorded_late"] == \
        "2026-11"
    assert december["sla", "critical/resolution/all_hours", "breached"] == "1"
    # MT-7's late answer belongs to its November breach; MT-6's answer an hour after
    # its due time is December's breach, though the scan has not recorded it.
    assert ("sla", "critical/first_response/all_hours", "breached") not in december
    assert (december["sla", "major/first_response/business_hours", "met"],
            december["sla", "major/first_response/business_hours", "breached"]) == ("0", "1")
    assert december["summary", "", "status"] == "provisional"
    with factory() as s:
        assert sorted(s.scalars(select(SlaMonthClose.month)
                                .where(SlaMonthClose.contract_id == "acme"))) == [
            "2026-10", "2026-11"]


def test_a_second_instance_closing_the_same_month_reads_the_first_close(
    november: tuple[Config, sessionmaker[Session]],
) -> None:
    cfg, factory = november
    contract = cfg.contracts["acme"]
    start, end = monthly.month_bounds("2026-11", cfg.reports.timezone)
    first_open, second_reading = threading.Event(), threading.Event()
    results: dict[str, tuple[int, int]] = {}

    def seen(state: ORMExecuteState) -> None:
        if threading.current_thread().name == "second":
            second_reading.set()

    def close(name: str) -> None:
        with transaction(factory) as s:
            row = month_close.close(s, cfg, contract, "2026-11", start, end,
                                    month.first_build_time(), None)
            s.flush()
            results[name] = (row.id, row.last_event_id)
            if name == "first":
                first_open.set()
                # Hold the transaction open until the second instance is closing too.
                assert second_reading.wait(10)

    event.listen(factory, "do_orm_execute", seen)
    try:
        first = threading.Thread(target=close, args=("first",), name="first")
        first.start()
        assert first_open.wait(10)
        second = threading.Thread(target=close, args=("second",), name="second")
        second.start()
        first.join(10)
        second.join(10)
    finally:
        event.remove(factory, "do_orm_execute", seen)
    assert results["first"] == results["second"]
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(SlaMonthClose)) == 1


def test_customer_variant_shows_nothing_internal(
    november: tuple[Config, sessionmaker[Session]], tmp_path: Path,
) -> None:
    cfg, factory = november
    build(factory, cfg, month.first_build_time())
    month.after_close(factory)
    december = build(factory, cfg, month.later(4), "2026-12")
    november_report = build(factory, cfg, month.later(4))
    notifier = Notifier(cfg, Renderer(cfg.templates_dir))
    charts = {c: f"{c}.png" for c in export.CHARTS}
    for variant in (december, november_report):
        for locale in ("ru", "en"):
            out = notifier.renderer.render("monthly_report", locale, export.template_context(
                variant, charts, "r.csv"))
            for part in (out.subject, out.text, out.html or "", export.to_csv(variant)):
                for secret in (ROUTING_RULE, "priority changed", "24x7", "msk", "routing_rule",
                               "calendar", "календарь", "Внутренн", "Internal", "last_event_id"):
                    assert secret not in part, (locale, secret)
    internal = notifier.renderer.render("monthly_report", "ru", export.template_context(
        december, charts, "r.csv", internal=True))
    assert internal.subject.startswith("[внутренний] ")
    assert "причина: priority changed to critical" in internal.text
    assert "календарь 24x7" in internal.text
    internal_nov = notifier.renderer.render("monthly_report", "en", export.template_context(
        november_report, charts, "r.csv", internal=True))
    assert f"    {ROUTING_RULE}: 1\n" in internal_nov.text
    assert f"<td>{ROUTING_RULE}</td>" in (internal_nov.html or "")
    assert figures(export.to_csv(november_report, internal=True))[
        "routing_rule", ROUTING_RULE, "tickets"] == "1"


def test_mail_carries_every_chart_inline_and_the_csv_has_the_html_figures(
    november: tuple[Config, sessionmaker[Session]],
) -> None:
    cfg, factory = november
    notifier = Notifier(cfg, Renderer(cfg.templates_dir))
    with transaction(factory) as s:
        report = monthly.build(s, cfg, "acme", "2026-11", month.first_build_time())
        item = delivery.queue(s, notifier, report, month.first_build_time())
        assert item is not None
    msg = email.message_from_bytes(item.raw, policy=email.policy.default)
    assert str(msg["Subject"]) == "Отчёт о техподдержке за 2026-11: ООО «Акме»"
    html = next(p for p in msg.walk() if p.get_content_type() == "text/html").get_content()
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    cids = [str(p["Content-ID"]).strip("<>") for p in images]
    assert cids == [f"{name}-report-acme-2026-11@mt.provider.example" for name in export.CHARTS]
    for cid, image in zip(cids, images, strict=True):
        assert f'<img src="cid:{cid}"' in html
        assert image.get_content_disposition() == "inline"
        assert image.get_content()[:8] == b"\x89PNG\r\n\x1a\n"
    text = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_content()
    found = figures(next(p for p in msg.walk() if p.get_content_type() == "text/csv")
                    .get_content())
    # One figure, three places: compliance and times of major first responses.
    assert found["sla", "major/first_response/business_hours", "compliance_percent"] == "50.0"
    assert ("<tr><td>Высокий</td><td>Первый ответ</td><td>2 ч</td><td>рабочее время</td>"
            "<td>2</td><td>2</td><td>1</td><td>1</td><td><strong>50 %</strong></td>"
            "<td>2 ч 15 мин</td><td>3 ч 30 мин</td><td>1</td></tr>") in html
    assert ("Высокий — первый ответ (срок 2 ч, рабочее время)\r\n"
            "  Сроков: 2 (обращений: 2); в срок: 1; с нарушением: 1; соблюдение: 50 %\r\n"
            "  Медиана: 2 ч 15 мин; 90-й процентиль: 3 ч 30 мин (измерено: 2)\r\n"
            "  Сколько срока заняло: до 25 % — 0, 25–50 % — 1, 50–75 % — 0, 75–100 % — 0, "
            "позже срока — 1\r\n  Ещё шли на конец месяца: 1\r\n") in text
    assert "Соблюдение сроков SLA в целом: 61,1 % (нарушений: 7); в прошлом месяце: 100 % " \
           "(нарушений: 0)." in text
    assert "<td>MT-3</td><td>высокий</td><td>Первый ответ</td><td>ср, 04.11.2026 11:00 MSK</td>" \
           "<td>ср, 04.11.2026 12:30 MSK</td><td>1 ч 30 мин (рабочее время)</td>" in html
    assert "Критический: соблюдение 100 % → 60 % (−40 п. п.); нарушений 0 → 2" in text


def test_report_monthly_out_writes_the_charts_beside_the_html(
    november: tuple[Config, sessionmaker[Session]], tmp_path: Path,
) -> None:
    cfg, factory = november
    notifier = Notifier(cfg, Renderer(cfg.templates_dir))
    report = build(factory, cfg, month.first_build_time())
    paths = delivery.write_files(notifier, report, tmp_path / "out")
    assert [p.name for p in paths] == [
        "report-acme-2026-11.html", "report-acme-2026-11-compliance.png",
        "report-acme-2026-11-response.png", "report-acme-2026-11-trend.png",
        "report-acme-2026-11-hours.png", "report-acme-2026-11.csv"]
    html = paths[0].read_text(encoding="utf-8")
    for png in paths[1:5]:
        assert f'<img src="{png.name}"' in html
    # The same figures draw the same bytes.
    again = delivery.charts(build(factory, cfg, month.later(1)), "ru")
    assert again["compliance"] == paths[1].read_bytes()


@pytest.mark.parametrize(("subject", "clean"), [
    ("[СРОЧНО] Не работает телефония", "Не работает телефония"),
    ("RE: Fwd: [EXT] [URGENT] не работает телефония!!", "не работает телефония"),
    ("Ответ: [#MT-12] Не работает телефония", "Не работает телефония"),
    ("Пересл: ОТВ: Не работает [код 5] телефония", "Не работает [код 5] телефония"),
    ("[#MT-12]", ""),
])
def test_subjects_lose_prefixes_and_tags(subject: str, clean: str) -> None:
    assert clean_subject(subject) == clean


def test_frequent_subjects_group_case_and_yo() -> None:
    assert frequent_subjects([
        "[СРОЧНО] Не работает телефония", "не работает телефония.", "Re: Не работает телефония",
        "Счёт за октябрь", "счет за октябрь", "FW: Счёт за октябрь",
    ]) == (("Не работает телефония", 3), ("Счёт за октябрь", 3))


def test_month_before_and_closing_order() -> None:
    assert monthly.month_before("2026-01") == "2025-12"
    assert monthly.month_before("2026-11") == "2026-10"
    assert at(12, 1, 9) == month.first_build_time()
