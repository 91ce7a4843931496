"""Issue 15, point 2: failures reach a person, one digest an hour at most, and ``status`` agrees.

On the simulated clock, with the real worker, a real relay (the SMTP sink over
a socket) and the scheduler's job called as APScheduler would call it every
minute: quarantined mail, a relay's policy refusal, three bounces and the
suppression they cause go out in one digest to ``mail.admin_addresses``
through the outbox; the next events wait for the hour to pass; a relay that
keeps answering 4xx becomes one line, repeated at most once a day; a
production calendar missing next year's decree is reported. ``mailticket
status`` lists the same items.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from itertools import pairwise
from pathlib import Path

import pytest
from harness import Harness
from hostile_kit import dsn, raw_mail
from support.configs import BUSINESS, make_config
from support.mails import build, new_id
from support.smtp_sink import SmtpSink

from mailticket.cli.entry import main
from mailticket.cli.status import collect_status, format_status
from mailticket.config import RelayConfig
from mailticket.model import Calendar
from mailticket.runners.outbox import OutboxDrainer
from mailticket.runners.scheduler import Scheduler
from mailticket.store.db import transaction
from mailticket.store.schema import OutboxItem, QueueState, SpoolItem

ADMIN = "admin@provider.example"
CUSTOMER = "ivan@acme.example"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@pytest.fixture
def h(db_url: str, tmp_path: Path, sink: SmtpSink) -> Iterator[Harness]:
    """On SQLite and PostgreSQL: the once-only bookkeeping is a unique key in both."""
    relay = RelayConfig(host="127.0.0.1", port=sink.port, timeout=5, retry_base_seconds=60,
                        retry_max_seconds=600)
    harness = Harness(make_config(tmp_path, db_url, relay=relay))
    yield harness
    harness.close()


def drain(h: Harness) -> int:
    return OutboxDrainer(h.factory, h.config.relay, clock=h.clock).drain_once()


def quarantine(h: Harness) -> int:
    """A mail with two From fields: ambiguous, quarantined for an admin."""
    raw = raw_mail([f"From: {CUSTOMER}", "From: mallory@evil.example",
                    "To: support@provider.example", "Subject: x",
                    f"Message-ID: <{new_id('evil.example')}>"])
    spool_id = h.deliver(raw, mail_from=CUSTOMER)
    assert h.spool_row(spool_id).state == QueueState.QUARANTINED
    return spool_id


def admin_digests(h: Harness) -> list[OutboxItem]:
    return h.outbox("admin_digest")


def text_of(item: OutboxItem) -> str:
    msg = email.message_from_bytes(item.raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def every_minute(h: Harness, scheduler: Scheduler, minutes: int) -> int:
    """Run the job once a simulated minute, as APScheduler does; returns the digests sent."""
    before = len(admin_digests(h))
    for _ in range(minutes):
        h.clock.advance(minutes=1)
        scheduler.admin_digest()
    return len(admin_digests(h)) - before


def test_failures_reach_the_admins_at_most_once_an_hour_and_status_lists_them(
    h: Harness, sink: SmtpSink, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scheduler = Scheduler(h.app, clock=h.clock)
    assert every_minute(h, scheduler, 5) == 0  # nothing happened: no mail

    quarantined = quarantine(h)
    # The relay refuses the first mail of a new ticket for policy (no mailbox verdict).
    h.deliver(build(from_=CUSTOMER, subject="Первое"), mail_from=CUSTOMER)
    sink.fail_next(550, "5.7.1 relaying denied", at="rcpt")
    assert drain(h) == 3
    [refused] = [r for r in h.outbox() if r.state == QueueState.FAILED]
    # Three more tickets; each acknowledgement bounces (5.1.1), so the address is suppressed.
    for i in range(3):
        h.deliver(build(from_=CUSTOMER, subject=f"Вопрос {i}"), mail_from=CUSTOMER)
    drain(h)
    acks = [r for r in h.outbox("ack") if r.state == QueueState.DONE]
    assert len(acks) == 3
    for ack in acks:
        h.deliver(dsn(ack.envelope_from, recipient=CUSTOMER), mail_from="",
                  rcpt=(ack.envelope_from,))

    assert every_minute(h, scheduler, 1) == 1
    [first] = admin_digests(h)
    assert first.rcpt_tos == [ADMIN] and first.kind == "admin_digest"
    text = text_of(first)
    assert "== Письма в карантине (см. `mailticket spool list --state quarantined`): 1 ==" in text
    assert f"письмо #{quarantined} от {CUSTOMER} (smtp)" in text
    assert "== Постоянные ошибки доставки: 4 ==" in text
    assert f"{CUSTOMER} (отказ релея, outbox #{refused.id})" in text
    assert "5.7.1 relaying denied" in text
    assert text.count(f"{CUSTOMER} (отчёт о недоставке, outbox #") == 3
    assert "== Адреса, на которые больше не пишем (см. `mailticket suppression list`): 1 ==" in text
    assert f"{CUSTOMER}, после 3 постоянных ошибок" in text
    # Through the outbox and the relay, like any mail.
    drain(h)
    assert [m.rcpt_tos for m in sink.messages if "admin" in m.rcpt_tos[0]] == [(ADMIN,)]

    # `status` lists the same items (and `--json` gives them to scripts).
    status = collect_status(h.factory, h.clock.now, config=h.config)
    listed = status["attention"]
    assert listed["counts"] == {"quarantined": 1, "delivery_failed": 4, "suppressed": 1}
    assert listed["conditions"] == []
    lines = format_status(status).splitlines()
    assert "needs attention: 0 condition(s) now, 6 event(s) in the last 24 h" in lines
    assert any(line.startswith(f"  quarantined: spool #{quarantined} from {CUSTOMER}")
               for line in lines)
    toml = tmp_path / "status.toml"
    toml.write_text(f'[database]\nurl = "{h.config.database.url}"\n'
                    f'[mail]\nadmin_addresses = ["{ADMIN}"]\n', encoding="utf-8")
    capsys.readouterr()
    assert main(["status", "-c", str(toml), "--json"]) == 0
    # The command runs on the real clock, long after this simulated day: the events
    # are past its 24 hours, so only the wiring is checked here.
    assert set(json.loads(capsys.readouterr().out)["attention"]) == {
        "events", "conditions", "counts"}

    # More trouble within the hour waits for the hour to pass, then only the news goes.
    h.clock.advance(minutes=10)
    second_quarantined = quarantine(h)
    assert every_minute(h, scheduler, 48) == 0
    assert every_minute(h, scheduler, 2) == 1
    second = admin_digests(h)[-1]
    assert second.created_at - first.created_at == timedelta(hours=1)
    text = text_of(second)
    assert f"письмо #{second_quarantined} от" in text and f"письмо #{quarantined} " not in text
    assert "Постоянные ошибки доставки" not in text
    assert every_minute(h, scheduler, 120) == 0  # nothing new, nothing sent


def test_a_relay_refusing_for_n_minutes_is_one_line_a_day(h: Harness, sink: SmtpSink) -> None:
    scheduler = Scheduler(h.app, clock=h.clock)
    sink.fail_next(451, "4.3.0 try later", count=1000, at="rcpt")
    h.deliver(build(from_=CUSTOMER), mail_from=CUSTOMER)
    drain(h)
    waiting = [r for r in h.outbox() if r.state == QueueState.QUEUED]
    assert waiting and all(r.last_error for r in waiting)
    # relay_alert_minutes = 30: not yet a condition at 29 minutes.
    assert every_minute(h, scheduler, 29) == 0
    assert collect_status(h.factory, h.clock.now, config=h.config)["attention"]["conditions"] == []
    assert every_minute(h, scheduler, 1) == 1
    text = text_of(admin_digests(h)[-1])
    assert "== Релей отказывает ==" in text
    assert f"Исходящих писем задержано ошибками релея: {len(waiting)}, старейшее ждёт 30 мин" in text
    assert "try later" in text
    [condition] = collect_status(h.factory, h.clock.now,
                                 config=h.config)["attention"]["conditions"]
    assert condition["kind"] == "relay_refusing"
    # Still refusing: nothing more that day (the clock is at 17:20 UTC) ...
    assert every_minute(h, scheduler, 6 * 60) == 0
    # ... and once more the next day, while it lasts.
    assert every_minute(h, scheduler, 60) == 1


def test_a_production_calendar_missing_next_year_is_reported(
    sqlite_url: str, tmp_path: Path
) -> None:
    config = make_config(tmp_path, sqlite_url)
    ru = Calendar(id="ru", timezone="Europe/Moscow", week=(BUSINESS,) * 5 + ((), ()),
                  country="RU")
    h = Harness(dataclasses.replace(config, calendars={**config.calendars, "ru": ru}))
    try:
        scheduler = Scheduler(h.app, clock=h.clock)
        # November 2026: the 2026 and 2027 decrees are known; no mail.
        assert every_minute(h, scheduler, 3) == 0
        h.clock.now = datetime(2027, 10, 1, 6, 0, tzinfo=UTC)
        assert every_minute(h, scheduler, 1) == 1
        text = text_of(admin_digests(h)[-1])
        assert "== Нет производственного календаря ==" in text
        assert "календарь ru: в holidays " in text and "производственного календаря RU на 2028" in text
        [condition] = collect_status(h.factory, h.clock.now,
                                     config=h.config)["attention"]["conditions"]
        assert (condition["kind"], condition["facts"]["years"]) == ("calendar_missing", "2028")
    finally:
        h.close()


def test_no_admin_addresses_no_digest(sqlite_url: str, tmp_path: Path) -> None:
    h = Harness(make_config(tmp_path, sqlite_url, mail={"admin_addresses": ()}))
    try:
        quarantine(h)
        assert every_minute(h, Scheduler(h.app, clock=h.clock), 5) == 0
        with transaction(h.factory) as s:
            assert s.query(SpoolItem).count() == 1
    finally:
        h.close()


def test_two_instances_send_one_digest(h: Harness) -> None:
    """Two daemons' schedulers on one database, each asked every minute: one digest each hour."""
    first, second = Scheduler(h.app, clock=h.clock), Scheduler(h.app, clock=h.clock)
    quarantine(h)
    sent = 0
    for _ in range(130):
        h.clock.advance(minutes=1)
        sent += first.admin_digest() > 0
        sent += second.admin_digest() > 0
        if h.clock.now.minute == 0:
            quarantine(h)  # news for every hour
    assert sent == len(admin_digests(h)) == 3
    times = [d.created_at for d in admin_digests(h)]
    assert all(later - earlier >= timedelta(hours=1) for earlier, later in pairwise(times))
