"""Issue 16, points 1 and 6: the morning digest on a simulated clock, its settings, its preview.

The scheduler job is a plain method; the tests move the harness clock through
a week with a Russian holiday (Wednesday 4 November 2026) and call it, as
APScheduler would every minute. ``docs/examples/digest-ru.txt`` is checked
against the renderer here (``REGENERATE_EXAMPLES=1`` rewrites it).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from harness import Harness, as_message, body_text
from support.configs import BUSINESS, REPO, make_config
from support.mails import build

from mailticket.cli.entry import main
from mailticket.config import DigestConfig, EngineerDigest
from mailticket.mail import addresses
from mailticket.model import Calendar, Status
from mailticket.runners.scheduler import Scheduler
from mailticket.store.db import transaction
from mailticket.store.schema import Ticket
from mailticket.tickets import service

MSK = ZoneInfo("Europe/Moscow")
ANNA = "anna@provider.example"
BORIS = "boris@provider.example"
VERA = "vera@provider.example"
RU = Calendar(id="ru", timezone="Europe/Moscow", week=(BUSINESS,) * 5 + ((), ()), country="RU")
# A Tuesday-to-Saturday office without national holidays: Sunday and Monday are days off.
TUE_SAT = Calendar(id="tue-sat", timezone="Europe/Moscow", week=((),) + (BUSINESS,) * 5 + ((),))
SIGNED = {"Authentication-Results": "mx.provider.example; dkim=pass header.d=provider.example"}
EXAMPLE = REPO / "docs" / "examples" / "digest-ru.txt"


def msk(*args: int) -> datetime:
    return datetime(*args, tzinfo=MSK).astimezone(UTC)


def _harness(tmp_path: Path, url: str, people: dict[str, dict[str, str]] | None = None,
             **digest: object) -> Harness:
    """The test config with the RU calendar for digests; ``people`` sets engineers' fields."""
    config = make_config(tmp_path, url)
    staff = {a: dataclasses.replace(e, **(people or {}).get(a, {}))  # type: ignore[arg-type]
             for a, e in config.engineers.items()}
    config = dataclasses.replace(config, calendars={**config.calendars, "ru": RU,
                                                    "tue-sat": TUE_SAT},
                                 engineers=staff,
                                 digest=DigestConfig(calendar="ru", **digest))  # type: ignore[arg-type]
    return Harness(config)


@pytest.fixture
def h(sqlite_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = _harness(tmp_path, sqlite_url)
    yield harness
    harness.close()


def _anna_tickets(h: Harness) -> None:
    """MT-1 Anna's critical (24/7, 30 min), MT-2 Anna's minor, MT-3 Anna's waiting for days."""
    h.clock.now = msk(2026, 10, 26, 12, 0)
    for sender, subject in (("ops@initech.example", "[АВАРИЯ] Сервер лежит"),
                            ("ivan@acme.example", "Принтер"), ("petr@acme.example", "Отчёт")):
        h.deliver(build(from_=sender, subject=subject), mail_from=sender)
    with transaction(h.factory) as s:
        for ticket in s.query(Ticket).all():
            ticket.assignee = ANNA
        third = s.get(Ticket, 3)
        assert third is not None
        # Through the service, as an engineer's question to the customer would.
        assert service.change_status(s, third, Status.WAITING, actor=ANNA, now=h.clock.now)
    h.new_outbox()


def _run_week(h: Harness, start: datetime, days: int = 7, step_minutes: int = 30) -> None:
    scheduler = Scheduler(h.app, clock=h.clock)
    h.clock.now = start
    end = start + timedelta(days=days)
    while h.clock.now < end:
        scheduler.morning_digests()
        h.clock.advance(minutes=step_minutes)


def _digests(h: Harness, who: str = ANNA) -> list[datetime]:
    return [item.created_at.astimezone(MSK) for item in h.outbox("digest_morning")
            if item.rcpt_tos == [who]]


def test_one_digest_per_working_day_at_the_start_and_none_on_a_holiday(h: Harness) -> None:
    _anna_tickets(h)
    _run_week(h, msk(2026, 11, 2, 0, 0))
    days = _digests(h)
    # Mon 2, Tue 3, (Wed 4 is National Unity Day), Thu 5, Fri 6; none at the weekend.
    assert [d.day for d in days] == [2, 3, 5, 6]
    assert {d.time() for d in days} == {time(8, 0)}
    # Every engineer gets one too, and a second pass over the same days adds nothing.
    assert len(_digests(h, BORIS)) == 4
    _run_week(h, msk(2026, 11, 2, 0, 0))
    assert len(_digests(h)) == 4


def test_digest_content_thread_and_headers(h: Harness) -> None:
    _anna_tickets(h)
    _run_week(h, msk(2026, 11, 2, 7, 0), days=1)
    [item] = [i for i in h.outbox("digest_morning") if i.rcpt_tos == [ANNA]]
    msg = as_message(item)
    text = body_text(item).replace("\r\n", "\n")
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Id"] == "<digest.mt.provider.example>"
    assert msg["References"] is None and msg["In-Reply-To"] is None
    assert msg.get_body(("html",)) is not None
    # Overdue first (the critical one is a week late), then the minor one; the waiting one apart.
    assert text.index("MT-1  initech  критический") < text.index("MT-2  acme  обычный")
    assert "просрочено на" in text
    assert "== Ждут ответа клиента дольше 3 дн.: 1 ==\n\nMT-3  acme" in text
    assert "последнее письмо клиента" in text
    assert "ответить: support+r" in text
    html = str(msg.get_body(("html",)).get_content())  # type: ignore[union-attr]
    assert 'href="mailto:support+r' in html


def test_digest_off_and_moved_by_mail_and_by_toml(sqlite_url: str, tmp_path: Path) -> None:
    h = _harness(tmp_path, sqlite_url,
                 engineers={BORIS: EngineerDigest(at=time(10, 15))})
    try:
        _anna_tickets(h)
        h.clock.now = msk(2026, 10, 30, 12, 0)
        signed = {"Authentication-Results": "mx.provider.example; dkim=pass header.d=provider.example"}
        h.deliver(build(from_=ANNA, subject="d", body="#digest 09:30", headers=signed),
                  mail_from=ANNA)
        [answer] = h.outbox("digest_setting")
        assert "в 09:30" in body_text(answer)
        h.deliver(build(from_="vera@provider.example", subject="d", body="#сводка off",
                        headers=signed), mail_from="vera@provider.example")
        _run_week(h, msk(2026, 11, 2, 0, 0), days=1, step_minutes=15)
        assert [d.time() for d in _digests(h)] == [time(9, 30)]
        assert [d.time() for d in _digests(h, BORIS)] == [time(10, 15)]
        assert _digests(h, "vera@provider.example") == []
        # A forged #digest changes nothing.
        h.deliver(build(from_=ANNA, subject="d", body="#digest off"), mail_from=ANNA)
        _run_week(h, msk(2026, 11, 3, 0, 0), days=1, step_minutes=15)
        assert len(_digests(h)) == 2
    finally:
        h.close()


def test_digest_preview_prints_what_would_be_sent(h: Harness, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _anna_tickets(h)
    toml = tmp_path / "preview.toml"
    toml.write_text(
        f'[database]\nurl = "{h.config.database.url}"\n'
        '[calendars.ru]\ntimezone = "Europe/Moscow"\ncountry = "RU"\n'
        + "".join(f'{d} = ["08:00-20:00"]\n' for d in ("mon", "tue", "wed", "thu", "fri"))
        + '[[engineers]]\naddress = "anna@provider.example"\nname = "Анна Петрова"\nline = "L1"\n'
        '[digest]\ncalendar = "ru"\n'
        f'[daemon]\ntemplates_dir = "{h.config.templates_dir}"\n', encoding="utf-8")
    assert main(["digest", "preview", "-c", str(toml), "--engineer", ANNA,
                 "--at", "2026-11-04T08:00"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# digest: none that day (day off or holiday)\n")
    assert "Анна Петрова, доброе утро!" in out and "MT-2" in out
    assert main(["digest", "preview", "-c", str(toml), "--engineer", ANNA,
                 "--at", "2026-11-05T08:00"]) == 0
    assert capsys.readouterr().out.startswith("# digest: sent at 2026-11-05T08:00:00+03:00\n")
    assert h.outbox("digest_morning") == []  # a preview sends nothing
    # An engineer in Novosibirsk: --at and the send time are on his own clock.
    toml.write_text(toml.read_text(encoding="utf-8").replace(
        'line = "L1"\n', 'line = "L1"\ntimezone = "Asia/Novosibirsk"\n'), encoding="utf-8")
    assert main(["digest", "preview", "-c", str(toml), "--engineer", ANNA,
                 "--at", "2026-11-05T07:00"]) == 0
    assert capsys.readouterr().out.startswith("# digest: sent at 2026-11-05T08:00:00+07:00\n")
    assert main(["digest", "preview", "-c", str(toml), "--engineer", "nobody@x.example"]) == 4


def test_weekly_summary_per_contract_to_its_dedicated_engineer(h: Harness) -> None:
    _anna_tickets(h)  # opened Monday 26 October 12:00; MT-1 is initech's (Vera is dedicated)
    scheduler = Scheduler(h.app, clock=h.clock)
    h.clock.now = msk(2026, 10, 26, 0, 0)
    while h.clock.now < msk(2026, 11, 9, 0, 0):
        scheduler.weekly_summaries()
        h.clock.advance(minutes=60)
    weekly = h.outbox("digest_weekly")
    sent = sorted((item.rcpt_tos[0], item.created_at.astimezone(MSK).date().isoformat())
                  for item in weekly)
    # Globex (Boris) and initech (Vera) have a dedicated engineer; acme has none.
    assert sent == [("boris@provider.example", "2026-10-26"),
                    ("boris@provider.example", "2026-11-02"),
                    ("vera@provider.example", "2026-10-26"),
                    ("vera@provider.example", "2026-11-02")]
    [vera] = [i for i in weekly if i.rcpt_tos == ["vera@provider.example"]
              and i.created_at.astimezone(MSK).day == 2]
    text = body_text(vera).replace("\r\n", "\n")
    assert "  зарегистрировано:         1\n" in text
    assert "  открыто сейчас:           1\n" in text
    assert "Самое старое открытое обращение" in text and "MT-1  initech" in text


def test_an_engineer_on_another_calendar_works_the_russian_holiday(
    sqlite_url: str, tmp_path: Path
) -> None:
    # "msk" has the same hours and no national holidays: Boris's office works on 4 November.
    h = _harness(tmp_path, sqlite_url, people={BORIS: {"calendar": "msk"}})
    try:
        _run_week(h, msk(2026, 11, 4, 0, 0), days=1)
        assert _digests(h) == []
        assert [d.day for d in _digests(h, BORIS)] == [4]
    finally:
        h.close()


def test_a_reply_to_a_digest_line_acts_on_that_ticket(h: Harness) -> None:
    _anna_tickets(h)
    _run_week(h, msk(2026, 11, 2, 7, 0), days=1)
    [item] = [i for i in h.outbox("digest_morning") if i.rcpt_tos == [ANNA]]
    text = body_text(item).replace("\r\n", "\n")
    line = text[text.index("MT-2  acme"):]
    address = line[line.index("ответить: ") + len("ответить: "):].split("\n", 1)[0]
    signed = {"Authentication-Results": "mx.provider.example; dkim=pass header.d=provider.example"}
    h.deliver(build(from_=ANNA, to=address, subject="Re: [#MT-2] Принтер",
                    body="#status resolved\nЗаменили картридж.", headers=signed),
              mail_from=ANNA, rcpt=(address,))
    with transaction(h.factory) as s:
        ticket = s.get(Ticket, 2)
        assert ticket is not None and ticket.status == "resolved"


def test_an_engineer_on_a_24x7_calendar_gets_one_every_day(sqlite_url: str, tmp_path: Path) -> None:
    h = _harness(tmp_path, sqlite_url, people={BORIS: {"calendar": "24x7"}},
                 engineers={BORIS: EngineerDigest(at=time(7, 0))})
    try:
        _run_week(h, msk(2026, 11, 2, 0, 0))
        assert [(d.day, d.time()) for d in _digests(h, BORIS)] == [
            (day, time(7, 0)) for day in range(2, 9)]
    finally:
        h.close()


def test_engineers_in_two_time_zones_get_theirs_at_their_own_hour(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Anna in Moscow, Boris in Novosibirsk (+4 h), both on the RU calendar; Vera works Tue-Sat."""
    nsk = ZoneInfo("Asia/Novosibirsk")
    h = _harness(tmp_path, sqlite_url, people={BORIS: {"timezone": "Asia/Novosibirsk"},
                                               VERA: {"calendar": "tue-sat"}})
    try:
        _run_week(h, msk(2026, 11, 1, 0, 0), days=8, step_minutes=15)
        anna = _digests(h)
        boris = [d.astimezone(nsk) for d in _digests(h, BORIS)]
        # Each at 08:00 on their own clock: four hours apart in UTC.
        assert [(d.day, d.time()) for d in anna] == [(day, time(8, 0)) for day in (2, 3, 5, 6)]
        assert [(d.day, d.time()) for d in boris] == [(day, time(8, 0)) for day in (2, 3, 5, 6)]
        assert [a - b for a, b in zip(anna, boris, strict=True)] == [timedelta(hours=4)] * 4
        # Vera's own week: nothing on Monday 2 or Sunday 8; her office works on 4 November.
        assert [d.day for d in _digests(h, VERA)] == [3, 4, 5, 6, 7]
        # Boris's digest speaks his zone: "08:00" in the subject, not Moscow's 04:00.
        [first] = [i for i in h.outbox("digest_morning") if i.rcpt_tos == [BORIS]][:1]
        assert "08:00" in str(as_message(first)["Subject"])
    finally:
        h.close()


def test_a_line_setting_applies_to_its_engineers_and_one_engineer_overrides_it(
    sqlite_url: str, tmp_path: Path
) -> None:
    # L1 (Anna, Boris) at 09:00, but Boris at 10:15; L2 (Vera) off; L3 (Lead) the default.
    h = _harness(tmp_path, sqlite_url,
                 lines={"L1": EngineerDigest(at=time(9, 0)), "L2": EngineerDigest(enabled=False)},
                 engineers={BORIS: EngineerDigest(at=time(10, 15))})
    try:
        _run_week(h, msk(2026, 11, 2, 0, 0), days=1, step_minutes=15)
        assert [d.time() for d in _digests(h)] == [time(9, 0)]
        assert [d.time() for d in _digests(h, BORIS)] == [time(10, 15)]
        assert _digests(h, VERA) == []
        assert [d.time() for d in _digests(h, "lead@provider.example")] == [time(8, 0)]
    finally:
        h.close()


def test_waiting_is_counted_from_when_the_ticket_started_waiting(h: Harness) -> None:
    """A note on a waiting ticket changes ``updated_at``; the customer has still waited 4 days."""
    h.clock.now = msk(2026, 10, 29, 12, 0)
    h.deliver(build(from_="ivan@acme.example", subject="Отчёт"), mail_from="ivan@acme.example")
    h.deliver(build(from_="petr@acme.example", subject="Смета"), mail_from="petr@acme.example")
    with transaction(h.factory) as s:
        for ticket in s.query(Ticket).order_by(Ticket.id).all():
            ticket.assignee = ANNA
        old, recent = s.get(Ticket, 1), s.get(Ticket, 2)
        assert old is not None and recent is not None
        assert service.change_status(s, old, Status.WAITING, actor=ANNA, now=h.clock.now)
        # The second one waits only from Sunday: two days by Monday morning.
        assert service.change_status(s, recent, Status.WAITING, actor=ANNA,
                                     now=msk(2026, 10, 31, 12, 0))
    # Sunday evening Anna adds an internal note to the first one by reply.
    h.clock.now = msk(2026, 11, 1, 19, 0)
    token = addresses.make_reply_token(h.config.mail.reply_token_secret, 1, ANNA,
                                       h.clock.now.date())
    to = addresses.reply_address("support@provider.example", token)
    h.deliver(build(from_=ANNA, to=to, subject="Re: [#MT-1] Отчёт",
                    body="#internal\nЗвонил, клиент ищет данные.", headers=SIGNED),
              mail_from=ANNA, rcpt=(to,))
    with transaction(h.factory) as s:
        noted = s.get(Ticket, 1)
        assert noted is not None and noted.status == "waiting"
        assert noted.updated_at == msk(2026, 11, 1, 19, 0)
    _run_week(h, msk(2026, 11, 2, 7, 0), days=1)
    [item] = [i for i in h.outbox("digest_morning") if i.rcpt_tos == [ANNA]]
    text = body_text(item).replace("\r\n", "\n")
    section = text[text.index("== Ждут ответа клиента дольше 3 дн.: 1 =="):]
    assert "MT-1  acme" in section and "MT-2" not in section
    assert "  ждёт ответа клиента 92 ч (с чт, 29.10.2026 12:00 MSK)\n" in section


def test_the_example_digest_in_docs_is_what_the_renderer_prints(h: Harness) -> None:
    """``docs/examples/digest-ru.txt``: Anna's digest of Monday 2 November 2026, as mailed."""
    _anna_tickets(h)
    # Friday 18:00: two business hours left on Friday, two more on Monday, so at risk at 08:00.
    h.clock.now = msk(2026, 10, 30, 18, 0)
    h.deliver(build(from_="olga@acme.example", subject="Не работает VPN"),
              mail_from="olga@acme.example")
    with transaction(h.factory) as s:
        vpn = s.get(Ticket, 4)
        assert vpn is not None
        vpn.assignee = ANNA
    _run_week(h, msk(2026, 11, 2, 7, 0), days=1)
    [item] = [i for i in h.outbox("digest_morning") if i.rcpt_tos == [ANNA]]
    content = (f"Subject: {as_message(item)['Subject']}\n\n"
               + body_text(item).replace("\r\n", "\n"))
    if os.environ.get("REGENERATE_EXAMPLES") == "1":
        EXAMPLE.write_text(content, encoding="utf-8")
    assert EXAMPLE.read_text(encoding="utf-8") == content, f"{EXAMPLE} is out of date"


def test_weekly_summaries_follow_the_to_list(sqlite_url: str, tmp_path: Path) -> None:
    manager = "manager@provider.example"
    h = _harness(tmp_path, sqlite_url, weekly_to=("dedicated", "deputy", manager))
    try:
        scheduler = Scheduler(h.app, clock=h.clock)
        h.clock.now = msk(2026, 11, 2, 0, 0)
        while h.clock.now < msk(2026, 11, 3, 0, 0):
            scheduler.weekly_summaries()
            h.clock.advance(minutes=30)
        sent = sorted((i.rcpt_tos[0], as_message(i)["Subject"].split(":")[0])
                      for i in h.outbox("digest_weekly"))
        # initech: Vera (dedicated) and Anna (deputy); globex: Boris; all three: the manager.
        assert [who for who, _ in sent] == [ANNA, BORIS, manager, manager, manager, VERA]
        # The manager, not an engineer, gets each contract's week in the contract's language,
        # at the section's hour, and without reply addresses.
        mine = [i for i in h.outbox("digest_weekly") if i.rcpt_tos == [manager]]
        assert {i.created_at for i in mine} == {msk(2026, 11, 2, 8, 0)}
        assert all("support+r" not in body_text(i) for i in mine)
    finally:
        h.close()


def test_digest_on_by_mail_keeps_the_admins_hour(sqlite_url: str, tmp_path: Path) -> None:
    h = _harness(tmp_path, sqlite_url, engineers={BORIS: EngineerDigest(at=time(10, 15))})
    try:
        h.clock.now = msk(2026, 10, 30, 12, 0)
        for word in ("off", "on"):
            h.deliver(build(from_=BORIS, subject="d", body=f"#digest {word}", headers=SIGNED),
                      mail_from=BORIS)
        _run_week(h, msk(2026, 11, 2, 0, 0), days=1, step_minutes=15)
        assert [d.time() for d in _digests(h, BORIS)] == [time(10, 15)]
    finally:
        h.close()
