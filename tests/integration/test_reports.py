"""Monthly reports from a month of generated tickets: files, the mail, the scheduled run.

Two generated months: ``generate_october`` writes ticket rows (no SLA record:
its SLA section is empty, since the report reads only the record — see
``test_monthly_record`` for the SLA figures); ``live_october`` runs a month of
mail through the real pipeline (customers, engineers' replies with ``#time``,
ratings by reply digit and by ``mailto`` token, Zabbix alerts with a repeat, a
recovery and a flap) for the satisfaction and services sections.
"""

from __future__ import annotations

import asyncio
import csv
import email
import email.policy
import io
import re
import struct
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from harness import Harness, as_message, body_text
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support.configs import REPO, make_config
from support.mails import build

from mailticket import cli
from mailticket import config as config_mod
from mailticket.app import assemble
from mailticket.mail.addresses import make_reply_token, reply_address
from mailticket.outbound.notify import Notifier
from mailticket.outbound.render import Renderer
from mailticket.reports import delivery as report_delivery
from mailticket.reports import export
from mailticket.reports import monthly as reports
from mailticket.runners.scheduler import Scheduler
from mailticket.store.db import make_engine, make_sessionmaker, transaction
from mailticket.store.schema import OutboxItem, Ticket

MSK = ZoneInfo("Europe/Moscow")


def local(day: int, hour: int, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, 0, tzinfo=MSK)


def add(session: Session, created: datetime, priority: str, subject: str, *, line: str = "L1",
        first: timedelta | None = None, resolved: timedelta | None = None,
        contract: str = "acme", contract_type: str | None = None) -> None:
    session.add(Ticket(
        subject=subject, status="resolved" if resolved else "open", priority=priority, line=line,
        contract_id=contract, requester="ivan@acme.example", locale="ru", created_at=created,
        updated_at=created, first_response_at=created + first if first else None,
        resolved_at=created + resolved if resolved else None, contract_type=contract_type))


def generate_october(factory: sessionmaker[Session]) -> None:
    """20 tickets of acme in October 2026 (MSK), and some that must not count.

    * 10 critical (24/7: 30 min / 4 h) on weekdays at 10:00: 8 answered in 20 min,
      2 in 40 min; all resolved in 3 h. Three were on line L2.
    * 6 major (business hours: 2 h / 12 h) at 09:00 on Tuesdays and Wednesdays,
      answered in 1 h, never resolved.
    * 4 minor (8 h / 36 h) at 15:00 on Thursdays and Fridays, never answered; the
      first two were opened while acme was still a technical-support contract.
    No ticket records a contract type but those two (as before issue 8): they count
    under the contract's type. Nobody was asked for a rating.
    """
    with transaction(factory) as s:
        days = (5, 6, 7, 8, 9, 12, 13, 14, 15, 16)
        subjects = ("Не работает сайт", "RE: не работает  сайт", "Re: Fwd: Не работает сайт")
        for i, day in enumerate(days):
            add(s, local(day, 10), "critical", subjects[i % 3], line="L2" if i < 3 else "L1",
                first=timedelta(minutes=40 if i >= 8 else 20), resolved=timedelta(hours=3))
        for day in (6, 13, 20, 27, 7, 14):
            add(s, local(day, 9), "major", "VPN", first=timedelta(hours=1))
        for day in (1, 2, 8, 9):
            add(s, local(day, 15), "minor", "Вопрос по счёту",
                contract_type="technical_support" if day < 8 else None)
        # Not in the report: September, November, another contract.
        add(s, local(30, 23, month=9), "minor", "Сентябрь")
        add(s, local(1, 0, month=11), "minor", "Ноябрь")
        add(s, local(15, 12), "minor", "Чужой", contract="globex")


def example_config(tmp_path: Path, db_url: str) -> Path:
    """The shipped example, pointed at the test database and the repository's files."""
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    text = text.replace('url = "sqlite:///var/mailticket.db"', f'url = "{db_url}"')
    text = text.replace('templates_dir = "templates"', f'templates_dir = "{REPO / "templates"}"')
    text = text.replace('dir = "kb"', f'dir = "{REPO / "kb"}"')
    path = tmp_path / "mailticket.toml"
    path.write_text(text, encoding="utf-8")
    return path


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR, after checking the signature and the chunk CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29])
    assert data.endswith(b"IEND\xaeB`\x82")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


EXPECTED_ROWS = {
    ("summary", "", "tickets"): "20", ("summary", "", "status"): "final",
    ("summary", "", "previous_tickets"): "1",
    # The September ticket was open when October began; the majors and minors at its end.
    ("summary", "", "backlog_start"): "1", ("summary", "", "backlog_end"): "11",
    ("priority", "critical", "tickets"): "10", ("priority", "major", "tickets"): "6",
    ("priority", "minor", "tickets"): "4", ("priority", "technical", "tickets"): "0",
    ("line", "L1", "tickets"): "17", ("line", "L2", "tickets"): "3",
    ("line", "L3", "tickets"): "0", ("line", "L4", "tickets"): "0",
    ("hour", "09", "tickets"): "6", ("hour", "10", "tickets"): "10",
    ("hour", "15", "tickets"): "4", ("hour", "11", "tickets"): "0",
    ("weekday", "Mon", "tickets"): "2", ("weekday", "Tue", "tickets"): "6",
    ("weekday", "Wed", "tickets"): "4", ("weekday", "Thu", "tickets"): "4",
    ("weekday", "Fri", "tickets"): "4", ("weekday", "Sat", "tickets"): "0",
    ("weekday", "Sun", "tickets"): "0",
    ("subject", "Не работает сайт", "tickets"): "10", ("subject", "VPN", "tickets"): "6",
    ("subject", "Вопрос по счёту", "tickets"): "4",
    ("satisfaction", "", "resolved"): "10", ("satisfaction", "", "rating_requested"): "0",
    ("satisfaction", "", "rated"): "0", ("satisfaction", "", "percent_rated"): "0.0",
    ("satisfaction", "", "average"): "", ("rating", "5", "tickets"): "0",
    ("services", "", "contract_type"): "complex", ("services", "", "human_requests"): "20",
    ("services", "", "monitoring_alerts"): "0", ("services", "", "engineer_minutes"): "0",
    ("contract_type", "complex", "tickets"): "18",
    ("contract_type", "technical_support", "tickets"): "2",
}


def csv_figures(text: str) -> dict[tuple[str, str, str], str]:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["section", "item", "key", "value"]
    return {(section, item, key): value for section, item, key, value in rows[1:]}


def test_report_monthly_out_writes_html_png_and_csv(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(sqlite_url)
    generate_october(make_sessionmaker(engine))
    engine.dispose()
    config = example_config(tmp_path, sqlite_url)
    out = tmp_path / "out"
    assert cli.main(["-c", str(config), "report", "monthly", "--contract", "acme",
                     "--month", "2026-10", "--out", str(out)]) == 0
    names = [Path(line).name for line in capsys.readouterr().out.splitlines()]
    assert names == ["report-acme-2026-10.html", "report-acme-2026-10-compliance.png",
                     "report-acme-2026-10-response.png", "report-acme-2026-10-trend.png",
                     "report-acme-2026-10-hours.png", "report-acme-2026-10.csv"]
    assert png_size((out / names[4]).read_bytes()) == (900, 600)
    for name in names[1:4]:
        assert png_size((out / name).read_bytes())[0] == 900
    figures = csv_figures((out / names[5]).read_text(encoding="utf-8"))
    for key, value in EXPECTED_ROWS.items():
        assert figures[key] == value, key
    assert sum(int(v) for (section, _, _), v in figures.items() if section == "hour") == 20
    assert [k for (section, k, _) in figures if section == "subject"] == [
        "Не работает сайт", "VPN", "Вопрос по счёту"]
    # No record rows: nothing was met or breached, whatever the tickets' columns say;
    # the timers of the tickets still open at the month's end are listed as running.
    assert not [k for k in figures if k[0] == "breach"]
    assert {item: (figures["sla", item, "measured"], figures["sla", item, "running"])
            for (section, item, _) in figures if section == "sla"} == {
        "major/resolution/business_hours": ("0", "6"),
        # October's four and September's one.
        "minor/first_response/business_hours": ("0", "5"),
        "minor/resolution/business_hours": ("0", "5")}
    html = (out / names[0]).read_text(encoding="utf-8")
    for name in names[1:5]:
        assert f'<img src="{name}"' in html
    assert "Отчёт о техподдержке по договору с ACME Ltd" in html
    assert "<p>Нарушений сроков не было.</p>" in html
    assert "<h3>Сроки, которые на конец месяца ещё шли</h3>" in html
    assert "оценено: <strong>0</strong> (0 %).</p>\n<p>В этом месяце оценок не было.</p>" in html
    assert ("<tr><th>Вид договора на момент регистрации</th><th>Обращений</th></tr>\n"
            "<tr><td>Комплексное обслуживание (техническая поддержка и сопровождение прикладного"
            " ПО)</td><td>18</td></tr>\n<tr><td>Техническая поддержка</td><td>2</td></tr>") in html
    assert "Правило маршрутизации" not in html


def test_bad_month_and_unknown_contract_are_user_errors(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = example_config(tmp_path, sqlite_url)
    base = ["-c", str(config), "report", "monthly", "--out", str(tmp_path / "o")]
    assert cli.main([*base, "--contract", "acme", "--month", "2026-13"]) == 1
    assert cli.main([*base, "--contract", "nobody", "--month", "2026-10"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "mailticket: bad month '2026-13': expected YYYY-MM such as 2026-10",
        "mailticket: unknown contract 'nobody'",
    ]


def test_mailed_report_has_inline_chart_and_csv_and_scheduled_run_sends_once(
    db_url: str, tmp_path: Path
) -> None:
    cfg = make_config(tmp_path, db_url)
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    generate_october(factory)
    notifier = Notifier(cfg, Renderer(cfg.templates_dir))
    now = datetime(2026, 11, 1, 9, 0, tzinfo=MSK)
    assert report_delivery.monthly_run(factory, notifier, now) == len(cfg.contracts)
    assert report_delivery.monthly_run(factory, notifier, now + timedelta(minutes=1)) == 0
    with transaction(factory) as s:
        items = {tuple(i.rcpt_tos): i for i in s.query(OutboxItem).all()}
    engine.dispose()
    assert len(items) == len(cfg.contracts)
    msg = email.message_from_bytes(items[("ivan@gmail.example",)].raw, policy=email.policy.default)
    assert str(msg["Subject"]) == "Отчёт о техподдержке за 2026-10: ООО «Акме»"
    parts = {part.get_content_type(): part for part in msg.walk()}
    assert msg.get_content_type() == "multipart/mixed"
    assert "multipart/related" in parts
    images = [part for part in msg.walk() if part.get_content_type() == "image/png"]
    cids = [str(image["Content-ID"]).strip("<>") for image in images]
    assert cids == [f"{name}-report-acme-2026-10@mt.provider.example"
                    for name in ("compliance", "response", "trend", "hours")]
    for cid in cids:
        assert f'<img src="cid:{cid}"' in parts["text/html"].get_content()
    assert png_size(images[3].get_content()) == (900, 600)
    attachment = parts["text/csv"]
    assert attachment.get_filename() == "report-acme-2026-10.csv"
    figures = csv_figures(attachment.get_content())
    assert (figures[("summary", "", "tickets")], figures[("priority", "critical", "tickets")]) == (
        "20", "10")
    assert "Зарегистрировано обращений: 20" in parts["text/plain"].get_content()
    assert (figures[("services", "", "contract_type")],
            figures[("satisfaction", "", "resolved")]) == ("technical_support", "10")
    assert "Вид договора: Техническая поддержка\r\n" in parts["text/plain"].get_content()


def test_scheduler_runs_the_monthly_reports_at_the_configured_day_and_time(
    sqlite_url: str, tmp_path: Path
) -> None:
    # The shipped config: monthly = true, day 1, 09:00 Europe/Moscow.
    cfg = config_mod.load(example_config(tmp_path, sqlite_url))
    engine = make_engine(sqlite_url)

    async def run() -> tuple[list[str], datetime | None]:
        scheduler = Scheduler(assemble(cfg, engine))
        scheduler.start()
        try:
            return scheduler.job_ids(), scheduler.next_run_time("monthly_reports")
        finally:
            scheduler.shutdown()

    before = datetime.now(MSK)
    try:
        jobs, when = asyncio.run(run())
    finally:
        engine.dispose()
    assert sorted(jobs) == ["admin_digest", "handover_mail", "housekeeping", "monthly_reports",
                            "morning_digests", "sla_scan", "weekly_summaries"]
    first = before.replace(day=1, hour=9, minute=0, second=0, microsecond=0)
    if first <= before:
        first = (first + timedelta(days=32)).replace(day=1)
    assert when == first
    assert when is not None and when.tzinfo is not None and when.utcoffset() == timedelta(hours=3)


def test_percentile_and_month_bounds() -> None:
    assert reports.percentile([], 0.9) is None
    assert reports.percentile([5], 0.9) == 5
    assert reports.percentile(list(range(1, 11)), 0.9) == 9
    assert reports.percentile(list(range(1, 12)), 0.9) == 10
    start, end = reports.month_bounds("2026-12", "Europe/Moscow")
    assert (start.isoformat(), end.isoformat()) == ("2026-12-01T00:00:00+03:00",
                                                    "2027-01-01T00:00:00+03:00")
    assert reports.previous_month(datetime(2026, 11, 1, 0, 30, tzinfo=MSK), "Europe/Moscow") \
        == "2026-10"


# --- A month of mail through the pipeline: ratings, alerts, routing, #time ---------------

SUPPORT, CUSTOMER, ZABBIX = "support@example.com", "it@acme.example", "zabbix@acme.example"
ANNA, CLARA = "anna@example.com", "clara@example.com"


def at(h: Harness, when: datetime) -> Harness:
    h.clock.now = when.astimezone(ZoneInfo("UTC"))
    return h


def customer(h: Harness, when: datetime, subject: str, body: str = "Помогите, пожалуйста.",
             in_reply_to: str | None = None) -> None:
    at(h, when).deliver(build(from_=CUSTOMER, to=SUPPORT, subject=subject, body=body,
                              in_reply_to=in_reply_to), mail_from=CUSTOMER, rcpt=(SUPPORT,))


def engineer(h: Harness, when: datetime, who: str, ticket_id: int, body: str) -> None:
    token = make_reply_token(h.config.mail.reply_token_secret, ticket_id, who,
                             when.astimezone(ZoneInfo("UTC")).date())
    to = reply_address(SUPPORT, token)
    at(h, when).deliver(build(from_=who, to=to, subject=f"Re: [#MT-{ticket_id}]", body=body),
                        mail_from=who, rcpt=(to,))


def rating_request(h: Harness, ticket_id: int) -> tuple[str, str]:
    """The Message-ID and the text of the rating request of a ticket."""
    [item] = [i for i in h.outbox("rating_request") if i.ticket_id == ticket_id]
    return str(as_message(item)["Message-ID"]).strip("<>"), body_text(item)


def rate_by_reply(h: Harness, when: datetime, ticket_id: int, body: str) -> None:
    message_id, _ = rating_request(h, ticket_id)
    customer(h, when, f"Re: [#MT-{ticket_id}] Оцените, пожалуйста, нашу работу", body,
             in_reply_to=message_id)


def rate_by_link(h: Harness, when: datetime, ticket_id: int, score: int) -> None:
    """Click the ``mailto:`` link of ``score`` in the request (a mail to its token address)."""
    _, text = rating_request(h, ticket_id)
    [address] = set(re.findall(rf"support\+rate-{ticket_id}-{score}-[a-z2-7]{{16}}@example\.com",
                               text))
    at(h, when).deliver(build(from_=CUSTOMER, to=address, subject=f"Оценка {score}", body=""),
                        mail_from=CUSTOMER, rcpt=(address,))


def zabbix(h: Harness, when: datetime, state: str, host: str, trigger: str, severity: str,
           event: str) -> None:
    subject = f"Problem: {trigger}" if state == "problem" else f"Resolved in 5m 0s: {trigger}"
    body = (f"Problem name: {trigger}\nHost: {host}\nSeverity: {severity}\n"
            f"Original problem ID: {event}\n")
    at(h, when).deliver(build(from_=f"Zabbix <{ZABBIX}>", subject=subject, body=body,
                              headers={"Auto-Submitted": "auto-generated"}), mail_from=ZABBIX)


def live_october(h: Harness) -> None:
    """The acme contract's October 2026, as 24 mails. Tickets get ids 1-10 in this order.

    * MT-1 opened 30 Sep, resolved 1 Oct with ``#time 15``, rated 4 by reply on 1 Oct.
    * MT-2..MT-6 opened and resolved in October: MT-2 (``#time 30``) rated
      "5, спасибо!"; MT-3 "1С" (the "acme 1C goes to L2" rule: Clara, ``#time 90``)
      rated 2 with a comment on the next line; MT-4 rated 4 by the mailto link;
      MT-5 rated "1 - comment" on one line; MT-6 never rated.
    * MT-7: Zabbix fs01 problem, recovery (resolves), the problem again within the
      flap window (reopens): one ticket, 3 alert mails, 1 flap.
    * MT-8 waits for an engineer; MT-9: a PostgreSQL alert (the "database alerts to
      the DBA" rule), open; MT-10 opened 30 Oct, resolved on 2 Nov with ``#time 45``:
      it counts as October's ticket, but its resolution and time are November's.
    """
    customer(h, local(30, 20, month=9), "Сентябрьская заявка")
    engineer(h, local(1, 10), ANNA, 1, "#time 15\n#status resolved\nГотово.")
    rate_by_reply(h, local(1, 12), 1, "4")
    for number, (day, subject) in enumerate(
        ((5, "Не печатает принтер"), (6, "Ошибка 1С при проведении документов"),
         (7, "VPN не подключается"), (8, "Не открывается сайт"), (9, "Сбросить пароль")),
        start=2,
    ):
        customer(h, local(day, 10), subject)
        who, work = {2: (ANNA, "#time 30\n"), 3: (CLARA, "#time 90\n")}.get(number, (ANNA, ""))
        engineer(h, local(day, 11), who, number, f"{work}#status resolved\nИсправили.")
    rate_by_reply(h, local(5, 15), 2, "5, спасибо!")
    rate_by_reply(h, local(6, 15), 3, "2\nДолго ждали ответа, два дня.\n\n> Оцените нашу работу")
    rate_by_link(h, local(7, 15), 4, 4)
    rate_by_reply(h, local(8, 15), 5, "1 - сайт так и не работает")
    disk = ("fs01", "Disk space is low on /var", "High", "4711")
    zabbix(h, local(10, 3), "problem", *disk)
    zabbix(h, local(10, 4), "ok", *disk)
    zabbix(h, local(10, 4).replace(minute=30), "problem", *disk)
    customer(h, local(12, 10), "Настроить почту на телефоне")
    zabbix(h, local(15, 2), "problem", "db01", "PostgreSQL is down", "Disaster", "4712")
    customer(h, local(30, 23), "Не работает сканер")
    engineer(h, local(2, 10, month=11), ANNA, 10, "#time 45\n#status resolved\nГотово.")


LIVE_ROWS = {
    ("summary", "", "tickets"): "9",
    ("satisfaction", "", "resolved"): "6", ("satisfaction", "", "rating_requested"): "6",
    ("satisfaction", "", "rated"): "5", ("satisfaction", "", "percent_rated"): "83.3",
    ("satisfaction", "", "average"): "3.2", ("satisfaction", "", "low_threshold"): "2",
    ("rating", "1", "tickets"): "1", ("rating", "2", "tickets"): "1",
    ("rating", "3", "tickets"): "0", ("rating", "4", "tickets"): "2",
    ("rating", "5", "tickets"): "1",
    ("low_rating", "MT-5", "rating"): "1", ("low_rating", "MT-5", "comment"): "сайт так и не работает",
    ("low_rating", "MT-3", "rating"): "2",
    ("low_rating", "MT-3", "comment"): "Долго ждали ответа, два дня.",
    ("services", "", "contract_type"): "complex", ("services", "", "human_requests"): "7",
    ("services", "", "monitoring_alerts"): "2", ("services", "", "alert_mails"): "4",
    ("services", "", "alert_flaps"): "1", ("services", "", "engineer_minutes"): "135",
    ("contract_type", "complex", "tickets"): "9",
}
# Only in the provider's internal variant: our routing rules.
LIVE_RULES = {
    ("routing_rule", "acme 1C goes to L2", "tickets"): "1",
    ("routing_rule", "database alerts to the DBA", "tickets"): "1",
}

LIVE_TEXT = {
    "ru": (
        "Оценка работы (обращения, решённые в этом месяце):\n"
        "  Решено: 6; запрошена оценка: 6; оценено: 5 (83,3 %)\n"
        "  Средняя оценка: 3,2 из 5\n"
        "  Оценка 5: 1\n  Оценка 4: 2\n  Оценка 3: 0\n  Оценка 2: 1\n  Оценка 1: 1\n"
        "\n"
        "Оценки 2 и ниже:\n"
        "  MT-5 «Не открывается сайт»: 1 из 5\n    сайт так и не работает\n"
        "  MT-3 «Ошибка 1С при проведении документов»: 2 из 5\n"
        "    Долго ждали ответа, два дня.\n"
        "\n"
        "Использованные услуги\n"
        "Вид договора: Комплексное обслуживание (техническая поддержка и сопровождение "
        "прикладного ПО)\n"
        "  Обращения сотрудников: 7\n"
        "  Оповещения мониторинга: 2 (писем мониторинга: 4, повторов после восстановления: 1)\n"
        "  Учтённое время инженеров: 2 ч 15 мин\n"
        "\n"
        "С уважением,"
    ),
    "en": (
        "Customer satisfaction (requests resolved this month):\n"
        "  Resolved: 6; asked for a rating: 6; rated: 5 (83.3 %)\n"
        "  Average rating: 3.2 of 5\n"
        "  Rated 5: 1\n  Rated 4: 2\n  Rated 3: 0\n  Rated 2: 1\n  Rated 1: 1\n"
        "\n"
        "Rated 2 or lower:\n"
        "  MT-5 \"Не открывается сайт\": 1 of 5\n    сайт так и не работает\n"
        "  MT-3 \"Ошибка 1С при проведении документов\": 2 of 5\n"
        "    Долго ждали ответа, два дня.\n"
        "\n"
        "Services used\n"
        "Contract type: Complex support (technical and application software)\n"
        "  Requests from people: 7\n"
        "  Monitoring alerts:    2 (alert mails: 4, flapping: 1)\n"
        "  Engineer time recorded: 2 h 15 min\n"
        "\n"
        "Kind regards,"
    ),
}

LIVE_HTML = (
    "<p>Решено обращений за месяц: <strong>6</strong>; запрошена оценка: 6; "
    "оценено: <strong>5</strong> (83,3 %).</p>",
    "<p>Средняя оценка: <strong>3,2</strong> из 5</p>",
    "<tr><td>5</td><td>1</td></tr>\n<tr><td>4</td><td>2</td></tr>\n"
    "<tr><td>3</td><td>0</td></tr>\n<tr><td>2</td><td>1</td></tr>\n"
    "<tr><td>1</td><td>1</td></tr>",
    "<tr><td>MT-5</td><td>Не открывается сайт</td><td>1</td>"
    "<td>сайт так и не работает</td></tr>\n"
    "<tr><td>MT-3</td><td>Ошибка 1С при проведении документов</td><td>2</td>"
    "<td>Долго ждали ответа, два дня.</td></tr>",
    "<tr><td>Обращения сотрудников</td><td>7</td></tr>\n"
    "<tr><td>Оповещения мониторинга</td><td>2</td></tr>",
    "<p>Писем мониторинга: 4; повторов проблемы после восстановления: 1. "
    "Учтённое время инженеров: 2 ч 15 мин.</p>",
)
LIVE_RULES_HTML = ("<tr><td>acme 1C goes to L2</td><td>1</td></tr>\n"
                   "<tr><td>database alerts to the DBA</td><td>1</td></tr>")


def test_month_with_ratings_and_alerts_reports_satisfaction_and_services(
    db_url: str, tmp_path: Path
) -> None:
    h = Harness(config_mod.load(example_config(tmp_path, db_url)))
    try:
        live_october(h)
        with transaction(h.factory) as s:
            rows = {t.id: t for t in s.scalars(select(Ticket))}
            report = reports.build(s, h.config, "acme", "2026-10", h.clock.now)
        # The month went the way the docstring says, through the real pipeline.
        assert {i: (t.rating, t.status) for i, t in rows.items()} == {
            1: (4, "resolved"), 2: (5, "resolved"), 3: (2, "resolved"), 4: (4, "resolved"),
            5: (1, "resolved"), 6: (None, "resolved"), 7: (None, "open"), 8: (None, "new"),
            9: (None, "new"), 10: (None, "resolved")}
        assert (rows[7].alert_count, rows[7].alert_flaps, rows[9].line) == (3, 1, "L3")
        assert (rows[2].rating_comment, rows[4].rating_comment) == ("спасибо!", None)
        # What the report shows: its text in both locales, and the files of --out.
        charts = {name: f"{name}.png" for name in export.CHARTS}
        context = export.template_context(report, charts, "report.csv")
        for locale, expected in LIVE_TEXT.items():
            text = h.notifier.renderer.render("monthly_report", locale, context).text
            assert expected in text, locale
        figures = csv_figures(export.to_csv(report))
        internal_figures = csv_figures(export.to_csv(report, internal=True))
        html = h.notifier.renderer.render("monthly_report", "ru", context).html or ""
        internal = h.notifier.renderer.render(
            "monthly_report", "ru", export.template_context(report, charts, "report.csv",
                                                            internal=True))
    finally:
        h.close()
    for key, value in LIVE_ROWS.items():
        assert figures[key] == value, key
        assert internal_figures[key] == value, key
    # Only the low ratings are listed, lowest first; alert tickets are never rated.
    assert [k for (section, k, key) in figures if section == "low_rating" and key == "rating"] \
        == ["MT-5", "MT-3"]
    # Routing rule names are our configuration: only the internal variant has them.
    assert not [k for k in figures if k[0] == "routing_rule"]
    assert {k: v for k, v in internal_figures.items() if k[0] == "routing_rule"} == LIVE_RULES
    for fragment in LIVE_HTML:
        assert fragment in html, fragment
    assert "acme 1C goes to L2" not in html
    assert LIVE_RULES_HTML in (internal.html or "")
    assert ("  Сработавшие правила маршрутизации:\n    acme 1C goes to L2: 1\n"
            "    database alerts to the DBA: 1\n") in internal.text
    # One contract type all month: no per-type table.
    assert "Вид договора на момент регистрации" not in html
