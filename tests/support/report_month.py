"""A constructed November 2026 of the acme contract, written straight into the database.

Tickets, their status and priority history and the SLA record rows, as the
daemon would have left them, so the monthly report's figures can be asserted
exactly without running mail through the pipeline. Calendars and targets are
those of :func:`support.configs.make_config` with one change, :func:`plans`:
major tickets also have a 4 h next-response target.

Ticket ids follow the order below (MT-1 … MT-13). Times are Moscow (UTC+3).

* MT-1 critical (24/7: 30 min / 4 h): answered in 20 min, resolved in 3 h.
* MT-2 critical: first response breached at 10:30, answered at 10:40; resolved in 2 h.
* MT-3 major (business hours 08-20: 2 h / 16 h): first response breached at 11:00
  as major; lowered to minor at 12:00 and answered at 12:30, in time under minor
  targets (the met row says minor). Resolved next day (minor row).
* MT-4 major: answered in 1 h; three customer messages after that — the first
  two answered late (next-response breaches), the third in 1 h; resolution
  breached on 10 Nov 14:00, resolved 13 Nov 16:00.
* MT-5 minor (8 h / 40 h): answered in 1 h, resolved, reopened, resolved again
  (two resolution periods, both in time).
* MT-6 major opened 30 Nov 19:00: nothing yet — first response and resolution
  still running at the month's end.
* MT-7 critical opened 30 Nov 23:00: first response breached at 23:30, not
  answered by the month's end; resolution still running.
* MT-8 minor: resolved after 30 min without a first response (stopped).
* MT-9 minor opened 29 Oct: first response in October, resolution met 3 Nov.
* MT-10 critical in October, everything in time (the previous month's trend).
* MT-11 technical: a first-response breach recorded before migration 0008 (no
  priority, target, due or calendar on the row).
* MT-12 globex (another contract) with a November breach.
* MT-13 acme, merged into MT-2 the same day: its mail counts in MT-2.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from mailticket.config import Config
from mailticket.model import Priority, SlaPlan
from mailticket.store.db import transaction
from mailticket.store.schema import AuditEvent, SlaEvent, Ticket
from support.configs import make_config
from support.configs import plans as base_plans

MSK = ZoneInfo("Europe/Moscow")
ROUTING_RULE = "acme 1C goes to L2"


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A Moscow time in 2026."""
    return datetime(2026, month, day, hour, minute, tzinfo=MSK)


def nov(day: int, hour: int, minute: int = 0) -> datetime:
    return at(11, day, hour, minute)


def plans() -> dict[str, SlaPlan]:
    """The test plan with a 4 h next-response target for major tickets."""
    standard = base_plans()["standard"]
    targets = dict(standard.targets)
    targets[Priority.MAJOR] = dataclasses.replace(targets[Priority.MAJOR],
                                                  next_response_minutes=240)
    return {"standard": dataclasses.replace(standard, targets=targets)}


def config(tmp: Path, db_url: str, **overrides: Any) -> Config:
    """The test config with :func:`plans`."""
    return make_config(tmp, db_url, sla_plans=plans(), **overrides)


def ticket(
    s: Session, created: datetime, priority: str, subject: str, *,
    resolved: datetime | None = None, first: datetime | None = None, contract: str = "acme",
    line: str = "L1",
) -> Ticket:
    row = Ticket(subject=subject, status="resolved" if resolved else "open", priority=priority,
                 line=line, contract_id=contract, requester="ivan@acme.example", locale="ru",
                 created_at=created, updated_at=created, first_response_at=first,
                 resolved_at=resolved)
    s.add(row)
    s.flush()
    return row


def status(s: Session, t: Ticket, when: datetime, old: str, new: str) -> None:
    s.add(AuditEvent(ticket_id=t.id, at=when, actor="anna@provider.example", action="status",
                     detail={"from": old, "to": new, "visible": True}))


def record(
    s: Session, t: Ticket, timer: str, kind: str, deadline: datetime, *,
    priority: str | None = None, due: datetime | None = None, target: int | None = None,
    used: int | None = None, overdue: int | None = None, calendar: str | None = None,
    period: int = 0, created: datetime | None = None, notified: bool = True, reason: str = "",
    legacy: bool = False,
) -> SlaEvent:
    """One record row; by default with the ticket's priority and the plan's facts frozen."""
    if not legacy:
        priority = priority or t.priority
        facts = plans()["standard"].targets[Priority(priority)]
        calendar = calendar or facts.calendar
        if target is None:
            target = {"first_response": facts.first_response_minutes,
                      "resolution": facts.resolution_minutes,
                      "next_response": facts.next_response_minutes}[timer]
    row = SlaEvent(ticket_id=t.id, timer=timer, kind=kind, deadline=deadline,
                   created_at=created or deadline, priority=priority, period=period,
                   due_at=due, target_minutes=target, used_minutes=used,
                   overdue_minutes=overdue, calendar=calendar, rule="from_start",
                   reason=reason, notified=notified)
    s.add(row)
    s.flush()
    return row


def met(s: Session, t: Ticket, timer: str, when: datetime, due: datetime, used: int,
        overdue: int | None = None, **kw: Any) -> SlaEvent:
    return record(s, t, timer, "met", when, due=due, used=used, overdue=overdue, **kw)


def breach(s: Session, t: Ticket, timer: str, due: datetime, **kw: Any) -> SlaEvent:
    return record(s, t, timer, "breach", due, due=due, **kw)


FR, RES, NR = "first_response", "resolution", "next_response"


def generate_november(factory: sessionmaker[Session]) -> None:
    """Write the month the module docstring describes."""
    with transaction(factory) as s:
        # MT-1
        t = ticket(s, nov(2, 10), "critical", "[СРОЧНО] Не работает телефония",
                   first=nov(2, 10, 20), resolved=nov(2, 13))
        met(s, t, FR, nov(2, 10, 20), nov(2, 10, 30), 20)
        met(s, t, RES, nov(2, 13), nov(2, 14), 180)
        status(s, t, nov(2, 13), "open", "resolved")
        # MT-2
        t = ticket(s, nov(3, 10), "critical", "Не работает телефония",
                   first=nov(3, 10, 40), resolved=nov(3, 12))
        breach(s, t, FR, nov(3, 10, 30))
        met(s, t, FR, nov(3, 10, 40), nov(3, 10, 30), 40, overdue=10)
        met(s, t, RES, nov(3, 12), nov(3, 14), 120)
        status(s, t, nov(3, 12), "open", "resolved")
        # MT-3: breached as major, lowered to minor, answered in time as minor.
        t = ticket(s, nov(4, 9), "minor", "Fwd: [EXT] не работает телефония!",
                   first=nov(4, 12, 30), resolved=nov(5, 9))
        breach(s, t, FR, nov(4, 11), priority="major")
        s.add(AuditEvent(ticket_id=t.id, at=nov(4, 12), actor="anna@provider.example",
                         action="priority", detail={"from": "major", "to": "minor"}))
        met(s, t, FR, nov(4, 12, 30), nov(4, 17), 210)
        met(s, t, RES, nov(5, 9), nov(9, 17), 600)
        status(s, t, nov(5, 9), "open", "resolved")
        s.add(AuditEvent(ticket_id=t.id, at=nov(4, 9), actor="mailticket", action="routed",
                         detail={"line": "L2", "rule": ROUTING_RULE, "priority": "major"}))
        # MT-4: two late next responses and a breached resolution.
        t = ticket(s, nov(9, 10), "major", "Ошибка 1С при проведении",
                   first=nov(9, 11), resolved=nov(13, 16), line="L2")
        met(s, t, FR, nov(9, 11), nov(9, 12), 60)
        breach(s, t, RES, nov(10, 14))
        breach(s, t, NR, nov(10, 14))
        met(s, t, NR, nov(10, 15), nov(10, 14), 300, overdue=60)
        breach(s, t, NR, nov(11, 14))
        met(s, t, NR, nov(12, 9), nov(11, 14), 660, overdue=420)
        met(s, t, NR, nov(13, 11), nov(13, 14), 60)
        met(s, t, RES, nov(13, 16), nov(10, 14), 3240, overdue=2280)
        status(s, t, nov(13, 16), "open", "resolved")
        # MT-5: resolved, reopened, resolved again.
        t = ticket(s, nov(16, 10), "minor", "Ответ: ошибка 1С при проведении",
                   first=nov(16, 11), resolved=nov(18, 10))
        met(s, t, FR, nov(16, 11), nov(16, 18), 60)
        met(s, t, RES, nov(16, 12), nov(20, 14), 120)
        status(s, t, nov(16, 12), "open", "resolved")
        status(s, t, nov(17, 10), "resolved", "open")
        met(s, t, RES, nov(18, 10), nov(23, 10), 720, period=1)
        status(s, t, nov(18, 10), "open", "resolved")
        # MT-6: still running at the month's end.
        ticket(s, nov(30, 19), "major", "VPN не подключается")
        # MT-7: breached first response, unanswered at the month's end.
        t = ticket(s, nov(30, 23), "critical", "[URGENT] Сервер 1С недоступен")
        breach(s, t, FR, nov(30, 23, 30))
        # MT-8: resolved without a first response.
        t = ticket(s, nov(20, 10), "minor", "Пароль", resolved=nov(20, 10, 30))
        record(s, t, FR, "stopped", nov(20, 10, 30), due=nov(20, 14))
        met(s, t, RES, nov(20, 10, 30), nov(26, 10), 30)
        status(s, t, nov(20, 10, 30), "open", "resolved")
        # MT-9: opened in October, resolved in November.
        t = ticket(s, at(10, 29, 10), "minor", "Вопрос по счёту", first=at(10, 29, 11),
                   resolved=nov(3, 12))
        met(s, t, FR, at(10, 29, 11), at(10, 29, 18), 60)
        met(s, t, RES, nov(3, 12), nov(3, 14), 2280)
        status(s, t, nov(3, 12), "open", "resolved")
        # MT-10: October, all in time.
        t = ticket(s, at(10, 12, 10), "critical", "Не работает телефония",
                   first=at(10, 12, 10, 15), resolved=at(10, 12, 12))
        met(s, t, FR, at(10, 12, 10, 15), at(10, 12, 10, 30), 15)
        met(s, t, RES, at(10, 12, 12), at(10, 12, 14), 120)
        status(s, t, at(10, 12, 12), "open", "resolved")
        # MT-11: a breach recorded before migration 0008.
        t = ticket(s, nov(24, 10), "technical", "RE: [#MT-11] Вопрос по лицензиям",
                   resolved=nov(25, 12))
        record(s, t, FR, "breach", nov(24, 18), legacy=True)
        status(s, t, nov(25, 12), "open", "resolved")
        # MT-12: another contract.
        t = ticket(s, nov(5, 10), "critical", "Globex down", contract="globex")
        breach(s, t, FR, nov(5, 10, 30))
        # MT-13: merged into MT-2.
        t = ticket(s, nov(3, 10, 5), "critical", "Не работает телефония")
        t.merged_into = 2
        t.status, t.resolved_at = "closed", nov(3, 10, 10)
        status(s, t, nov(3, 10, 10), "new", "closed")


def after_close(factory: sessionmaker[Session]) -> None:
    """What happens in December: answers, a rating, a priority change, late records.

    * MT-7 answered 1 Dec 00:20 (met row), MT-6 answered 1 Dec 10:00;
    * MT-1 rated 5 on 2 Dec; MT-6 raised to critical on 3 Dec;
    * on 3 Dec, under from_start, a retroactive breach of MT-6's resolution dated
      30 Nov 23:00 (recorded after November closed: it counts in December), and a
      retroactive breach of MT-5's first response dated 16 Nov (already met and
      counted in November: counted nowhere again).
    """
    with transaction(factory) as s:
        mt6, mt7, mt1, mt5 = (s.get(Ticket, n) for n in (6, 7, 1, 5))
        assert mt6 is not None and mt7 is not None and mt1 is not None and mt5 is not None
        met(s, mt7, FR, at(12, 1, 0, 20), nov(30, 23, 30), 80, overdue=50)
        mt7.first_response_at = at(12, 1, 0, 20)
        met(s, mt6, FR, at(12, 1, 10), at(12, 1, 9), 180, overdue=60)
        mt6.first_response_at = at(12, 1, 10)
        mt1.rating, mt1.rated_at = 5, at(12, 2, 10)
        mt6.priority = "critical"
        s.add(AuditEvent(ticket_id=6, at=at(12, 3, 9), actor="anna@provider.example",
                         action="priority", detail={"from": "major", "to": "critical"}))
        breach(s, mt6, RES, nov(30, 23), priority="critical", created=at(12, 3, 9),
               notified=True, reason="priority changed to critical")
        breach(s, mt5, FR, nov(16, 10, 30), priority="critical", created=at(12, 3, 9),
               notified=False, reason="priority changed to critical")


def first_build_time() -> datetime:
    """When the scheduled run reports November: 1 December 09:00."""
    return at(12, 1, 9)


def later(days: int) -> datetime:
    return first_build_time() + timedelta(days=days)
