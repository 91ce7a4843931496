"""The morning digest (issue 16, point 1): each engineer's open tickets at the start of their day.

It goes out once per working day of the engineer's own calendar (``[engineers]``
``calendar``, else ``[digest] calendar``: its week, national holidays and moved
days), read in the engineer's own time zone (``[engineers] timezone``, else
the calendar's), at the engineer's hour: their own ``#digest HH:MM`` if they
set one by mail, else the admin's ``[digest.engineers."X"]``, else
``[digest.lines.LX]``, else ``[digest] at``, else when their working day
starts. None goes out on a day off or a holiday, nor after the working day
ended (a daemon that was down all day does not send yesterday's list at
night). ``digest_sent``'s unique key ``(recipient, kind, day)`` makes every
scheduler run and every instance agree that it went out.

Contents: open tickets assigned to them, overdue first, then at risk, then by
the next SLA due time; then tickets waiting on the customer for longer than
``waiting_days``, counted from when the ticket started waiting (not from its
last change: an internal note does not restart the count). Times are shown
in the engineer's zone. :func:`render_for` is what ``mailticket digest
preview`` prints.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mailticket.config import Config
from mailticket.config.digest import parse_clock
from mailticket.digest import rows as row_mod
from mailticket.log import get as get_logger
from mailticket.model import Calendar, Engineer, Status
from mailticket.outbound import notify
from mailticket.outbound.render import Rendered
from mailticket.sla.business_hours import day_hours
from mailticket.store.db import transaction
from mailticket.store.schema import DigestSent, DigestSetting, Ticket

log = get_logger("digest")

KIND = "digest_morning"


@dataclass(frozen=True)
class Plan:
    """Whether and when one engineer gets a digest, and on which calendar."""

    enabled: bool
    at: time | None
    calendar: Calendar | None


def calendar_of(config: Config) -> Calendar | None:
    """The digest calendar: ``[digest] calendar``, else the first one with working hours."""
    if config.digest.calendar:
        return config.calendars.get(config.digest.calendar)
    return next((c for c in config.calendars.values() if not c.always_open), None)


@functools.lru_cache(maxsize=64)
def _in_zone(calendar: Calendar, zone: str) -> Calendar:
    """``calendar``'s days and hours read in ``zone`` (cached: each copy keeps its year memo)."""
    return dataclasses.replace(calendar, timezone=zone)


def calendar_for(config: Config, engineer: Engineer | None) -> Calendar | None:
    """The calendar an engineer's day follows, in their own time zone; the section's for others."""
    base = (config.calendars.get(engineer.calendar) if engineer is not None and engineer.calendar
            else calendar_of(config))
    if base is None or engineer is None or not engineer.timezone:
        return base
    return base if engineer.timezone == base.timezone else _in_zone(base, engineer.timezone)


def plan_for(session: Session, config: Config, address: str) -> Plan:
    """The engineer's own setting by mail, else the admin's for them, for their line, for all."""
    engineer = config.engineers.get(address)
    enabled = config.digest.enabled
    at = config.digest.at
    narrower = (config.digest.lines.get(engineer.line.value) if engineer is not None else None,
                config.digest.engineers.get(address))
    for admin in narrower:
        if admin is not None:
            enabled = admin.enabled if admin.enabled is not None else enabled
            at = admin.at or at
    mine = session.get(DigestSetting, address)
    if mine is not None:
        # "#digest on" turns it on at the admin's hour; "#digest 09:00" also moves it.
        enabled = mine.enabled
        at = (parse_clock(mine.at) if mine.at else None) or at
    return Plan(enabled, at, calendar_for(config, engineer))


def send_time(plan: Plan, day: date) -> tuple[datetime, datetime] | None:
    """When the digest of local ``day`` goes out and when that day's work ends; None on a day off."""
    if plan.calendar is None:
        return None
    zone = ZoneInfo(plan.calendar.timezone)
    if plan.calendar.always_open:
        # Every day is a working day; it starts at midnight unless an hour is set.
        return (datetime.combine(day, plan.at or time(0, 0), zone),
                datetime.combine(day + timedelta(days=1), time(0, 0), zone))
    hours = day_hours(plan.calendar, day)
    if not hours:
        return None
    start = datetime.combine(day, plan.at or hours[0].start, zone)
    end = datetime.combine(day, hours[-1].end, zone)
    return start, end


def context(session: Session, config: Config, engineer: Engineer, now: datetime,
            timezone: str) -> dict[str, Any]:
    """The template context of one engineer's digest at ``now``."""
    mine = session.scalars(
        select(Ticket).where(Ticket.assignee == engineer.address,
                             Ticket.status.in_(row_mod.OPEN_STATUSES)).order_by(Ticket.id)
    ).all()
    active = [t for t in mine if t.status != Status.WAITING.value]
    cutoff = now - timedelta(days=config.digest.waiting_days)
    waiting = sorted((t for t in mine if t.status == Status.WAITING.value
                      and row_mod.waiting_since(t) <= cutoff), key=row_mod.waiting_since)
    items = row_mod.by_urgency(
        row_mod.rows(session, config, active, engineer.address, now, timezone))
    return {
        "engineer_name": engineer.name,
        "now": now,
        "timezone": timezone,
        "tickets": items,
        "at_risk": sum(1 for i in items if i["overdue"] or i["at_risk"]),
        "waiting": row_mod.rows(session, config, waiting, engineer.address, now, timezone),
        "waiting_days": config.digest.waiting_days,
        "support_address": config.mail.sender_address,
    }


def render_for(session: Session, notifier: notify.Notifier, engineer: Engineer,
               now: datetime) -> Rendered:
    """The digest ``engineer`` would get at ``now`` (also ``mailticket digest preview``)."""
    calendar = calendar_for(notifier.config, engineer)
    zone = calendar.timezone if calendar is not None else "UTC"
    ctx = context(session, notifier.config, engineer, now, zone)
    return notifier.renderer.render("digest_morning", engineer.locale, ctx)


def claim(session: Session, recipient: str, kind: str, day: date, now: datetime) -> bool:
    """Record that ``recipient`` gets ``kind`` for ``day``; False if it was already recorded."""
    taken = session.scalar(select(DigestSent.id).where(
        DigestSent.recipient == recipient, DigestSent.kind == kind, DigestSent.day == day))
    if taken is not None:
        return False
    try:
        with session.begin_nested():
            session.add(DigestSent(recipient=recipient, kind=kind, day=day, created_at=now))
    except IntegrityError:
        return False  # another instance took it between the read and the insert
    return True


def send_due(factory: sessionmaker[Session], notifier: notify.Notifier, now: datetime) -> list[str]:
    """Queue every morning digest due by ``now`` and not sent yet; returns the recipients."""
    config = notifier.config
    sent: list[str] = []
    for engineer in config.engineers.values():
        with transaction(factory) as session:
            plan = plan_for(session, config, engineer.address)
            if not plan.enabled or plan.calendar is None:
                continue
            day = now.astimezone(ZoneInfo(plan.calendar.timezone)).date()
            window = send_time(plan, day)
            if window is None or not window[0] <= now < window[1]:
                continue
            if not claim(session, engineer.address, KIND, day, now):
                continue
            rendered = render_for(session, notifier, engineer, now)
            notify.queue_mail(
                session, notifier, kind=KIND, to=[engineer.address], template="digest_morning",
                locale=engineer.locale, context={}, rendered=rendered, now=now,
                auto_submitted="auto-generated",
                extra_headers={"List-Id": row_mod.list_id(notifier.domain, "digest")},
            )
            sent.append(engineer.address)
    if sent:
        log.info("morning digests queued", extra={"count": len(sent)})
    return sent
