"""The on-call handover mail (issue 16, point 3): what the incoming pair takes over.

At each handover of the ``[oncall]`` rota the incoming pair gets one mail,
addressed to both: open critical and major tickets, the SLA breaches recorded
during the shift that just ended (read from the SLA record, not recomputed),
and unassigned tickets per line. Only the incoming pair gets it. If the daemon
was down at the handover the mail still goes out during the first
:data:`LATE_WINDOW` of the shift; ``digest_sent`` (recipient = the pair, day =
the shift's first day) sends it once. ``[digest] handover = false`` turns it off.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailticket.digest import morning
from mailticket.digest import rows as row_mod
from mailticket.log import get as get_logger
from mailticket.model import Line, Priority
from mailticket.outbound import notify
from mailticket.policy import oncall
from mailticket.sla.clock import EventKind
from mailticket.store.db import transaction
from mailticket.store.schema import SlaEvent, Ticket
from mailticket.tickets.service import ref_of

log = get_logger("digest")

KIND = "digest_handover"
# How late after the handover instant the mail may still go out.
LATE_WINDOW = timedelta(hours=12)


def context(session: Session, notifier: notify.Notifier, shift: oncall.Shift,
            now: datetime) -> dict[str, Any]:
    """What the incoming pair of ``shift`` takes over at ``now``."""
    config = notifier.config
    reader = shift.pair[0]
    urgent = session.scalars(select(Ticket).where(
        Ticket.status.in_(row_mod.OPEN_STATUSES),
        Ticket.priority.in_([Priority.CRITICAL.value, Priority.MAJOR.value])).order_by(Ticket.id)
    ).all()
    unassigned = session.scalars(select(Ticket).where(
        Ticket.status.in_(row_mod.OPEN_STATUSES), Ticket.assignee.is_(None)).order_by(Ticket.id)
    ).all()
    previous = shift.starts_at - timedelta(days=7)
    breaches = session.execute(
        select(SlaEvent, Ticket).join(Ticket, Ticket.id == SlaEvent.ticket_id)
        .where(SlaEvent.kind == EventKind.BREACH.value, SlaEvent.deadline >= previous,
               SlaEvent.deadline < shift.starts_at)
        .order_by(SlaEvent.deadline, SlaEvent.id)
    ).all()
    lines: list[dict[str, Any]] = []
    for line in Line:
        on_line: Sequence[Ticket] = [t for t in unassigned if t.line == line.value]
        if on_line:
            lines.append({"line": line.value, "rows": row_mod.by_urgency(
                row_mod.rows(session, config, on_line, reader, now))})
    calendar = morning.calendar_of(config)
    return {
        "pair": [config.engineers[a].name if a in config.engineers else a for a in shift.pair],
        "starts_at": shift.starts_at,
        "ends_at": shift.ends_at,
        "timezone": config.oncall.timezone or (calendar.timezone if calendar else "UTC"),
        "urgent": row_mod.by_urgency(row_mod.rows(session, config, urgent, reader, now)),
        "breaches": [{"ref": str(ref_of(t, config.mail.ticket_prefix)), "subject": t.subject,
                      "timer": e.timer, "deadline": e.deadline,
                      "priority": e.priority or t.priority} for e, t in breaches],
        "unassigned": lines,
    }


def send_due(factory: sessionmaker[Session], notifier: notify.Notifier,
             now: datetime) -> list[str]:
    """Queue the handover mail of the shift that began before ``now``, once; returns the pair."""
    config = notifier.config
    if not config.digest.handover:
        return []
    shift = oncall.shift_at(config.oncall, now)
    if shift is None or not shift.starts_at <= now < shift.starts_at + LATE_WINDOW:
        return []
    day = shift.starts_at.astimezone(ZoneInfo(config.oncall.timezone)).date()
    with transaction(factory) as session:
        if not morning.claim(session, ",".join(shift.pair), KIND, day, now):
            return []
        # One mail for two people: their common locale, else the site's default.
        locales = {config.engineers[a].locale if a in config.engineers
                   else config.mail.default_locale for a in shift.pair}
        locale = locales.pop() if len(locales) == 1 else config.mail.default_locale
        notify.queue_mail(
            session, notifier, kind=KIND, to=list(shift.pair), template="digest_handover",
            locale=locale, context=context(session, notifier, shift, now), now=now,
            auto_submitted="auto-generated",
            extra_headers={"List-Id": row_mod.list_id(notifier.domain, "handover")},
        )
    log.info("handover mail queued", extra={"pair": ",".join(shift.pair)})
    return list(shift.pair)
