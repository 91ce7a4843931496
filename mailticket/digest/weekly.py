"""The weekly contract summary (issue 16, point 3): each contract to its dedicated engineer.

Once a week, on the first working day of the ISO week of the recipient's
calendar at their digest hour, the people ``[digest.weekly] to`` names for a
contract (by default its dedicated engineer; also ``deputy``, ``line:L3`` or
plain addresses such as an account manager's, who follow the section's
calendar and hour) get that contract's last seven days: tickets opened,
resolved, SLA breaches (from the SLA record), tickets waiting on the customer
now, and the oldest open ticket. ``digest_sent`` (recipient
``address#contract``, day = that working day) sends each once.
``[digest] weekly = false`` turns it off.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mailticket.digest import morning, recipients
from mailticket.digest import rows as row_mod
from mailticket.log import get as get_logger
from mailticket.model import Contract, Status
from mailticket.outbound import notify
from mailticket.sla.business_hours import day_hours
from mailticket.sla.clock import EventKind
from mailticket.store.db import transaction
from mailticket.store.schema import SlaEvent, Ticket
from mailticket.tickets.service import ref_of

log = get_logger("digest")

KIND = "digest_weekly"
WEEK = timedelta(days=7)


def _count(session: Session, query: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def figures(session: Session, notifier: notify.Notifier, contract: Contract, now: datetime,
            reader: str, timezone: str) -> dict[str, Any]:
    """One contract's last seven days before ``now``, as the template reads them."""
    config = notifier.config
    since = now - WEEK
    mine = Ticket.contract_id == contract.id
    oldest = session.scalars(select(Ticket).where(
        mine, Ticket.status.in_(row_mod.OPEN_STATUSES)).order_by(Ticket.created_at, Ticket.id)
        .limit(1)).first()
    return {
        "contract_name": contract.name,
        "contract": contract.id,
        "since": since,
        "now": now,
        "timezone": timezone,
        "opened": _count(session, select(Ticket.id).where(mine, Ticket.created_at >= since,
                                                           Ticket.created_at < now)),
        "resolved": _count(session, select(Ticket.id).where(
            mine, Ticket.resolved_at >= since, Ticket.resolved_at < now)),
        "breached": _count(session, select(SlaEvent.id).join(
            Ticket, Ticket.id == SlaEvent.ticket_id).where(
            mine, SlaEvent.kind == EventKind.BREACH.value, SlaEvent.deadline >= since,
            SlaEvent.deadline < now)),
        "waiting": _count(session, select(Ticket.id).where(
            mine, Ticket.status == Status.WAITING.value)),
        "open": _count(session, select(Ticket.id).where(
            mine, Ticket.status.in_(row_mod.OPEN_STATUSES))),
        "oldest": (row_mod.rows(session, config, [oldest], reader, now, timezone)[0] | {
            "ref": str(ref_of(oldest, config.mail.ticket_prefix)),
            "age_minutes": round((now - oldest.created_at).total_seconds() / 60)}
            if oldest is not None else None),
    }


def first_working_day(plan: morning.Plan, day: date) -> date | None:
    """The first working day of ``day``'s ISO week, or None for a week without one."""
    if plan.calendar is None:
        return None
    monday = day - timedelta(days=day.weekday())
    return next((monday + timedelta(days=n) for n in range(7)
                 if day_hours(plan.calendar, monday + timedelta(days=n))), None)


def send_due(factory: sessionmaker[Session], notifier: notify.Notifier,
             now: datetime) -> list[str]:
    """Queue every weekly summary due by ``now`` and not sent yet; returns ``address#contract``."""
    config = notifier.config
    if not config.digest.weekly:
        return []
    sent: list[str] = []
    for contract in config.contracts.values():
        for address in recipients.expand(config, config.digest.weekly_to, contract=contract):
            with transaction(factory) as session:
                plan = morning.plan_for(session, config, address)
                if plan.calendar is None:
                    continue
                today = now.astimezone(ZoneInfo(plan.calendar.timezone)).date()
                if first_working_day(plan, today) != today:
                    continue
                window = morning.send_time(plan, today)
                if window is None or not window[0] <= now < window[1]:
                    continue
                key = f"{address}#{contract.id}"
                if not morning.claim(session, key, KIND, today, now):
                    continue
                engineer = config.engineers.get(address)
                notify.queue_mail(
                    session, notifier, kind=KIND, to=[address], template="digest_weekly",
                    locale=engineer.locale if engineer is not None else contract.locale,
                    context=figures(session, notifier, contract, now, address,
                                    plan.calendar.timezone),
                    now=now, auto_submitted="auto-generated",
                    extra_headers={"List-Id": row_mod.list_id(notifier.domain, "weekly")},
                )
                sent.append(key)
    if sent:
        log.info("weekly summaries queued", extra={"count": len(sent)})
    return sent
