"""The on-call handover mail (issue 16, point 3): what the incoming pair takes over.

At each handover of the ``[oncall]`` rota each person of the incoming pair
gets one mail: open critical and major tickets, the SLA breaches recorded
during the shift that just ended (read from the SLA record, not recomputed),
and unassigned tickets per line. By default only the incoming pair gets it;
``[digest.handover] to`` may add lines (``line:L3``) or addresses (a duty
lead). One mail per person, not one to all, because each line's reply link
carries its reader's own token (another engineer's token is refused) and each
reader has their own locale. If the daemon was down at the handover the mail
still goes out during the first :data:`LATE_WINDOW` of the shift;
``digest_sent`` (recipient, day = the shift's first day) sends each once.
``[digest] handover = false`` turns it off.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailticket.digest import morning, recipients
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


def context(session: Session, notifier: notify.Notifier, shift: oncall.Shift, reader: str,
            now: datetime) -> dict[str, Any]:
    """What the incoming pair of ``shift`` takes over at ``now``, as ``reader`` gets it."""
    config = notifier.config
    engineer = config.engineers.get(reader)
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
    # The reader's own zone if they have one, else the rota's.
    zone = engineer.timezone if engineer is not None and engineer.timezone else (
        config.oncall.timezone)
    lines: list[dict[str, Any]] = []
    for line in Line:
        on_line: Sequence[Ticket] = [t for t in unassigned if t.line == line.value]
        if on_line:
            lines.append({"line": line.value, "rows": row_mod.by_urgency(
                row_mod.rows(session, config, on_line, reader, now, zone))})
    return {
        "pair": [config.engineers[a].name if a in config.engineers else a for a in shift.pair],
        # The pair reads "you take over"; a lead or a line named in ``to`` reads who does.
        "incoming": reader in shift.pair,
        "starts_at": shift.starts_at,
        "ends_at": shift.ends_at,
        "timezone": zone,
        "urgent": row_mod.by_urgency(row_mod.rows(session, config, urgent, reader, now, zone)),
        "breaches": [{"ref": str(ref_of(t, config.mail.ticket_prefix)), "subject": t.subject,
                      "timer": e.timer, "deadline": e.deadline,
                      "priority": e.priority or t.priority} for e, t in breaches],
        "unassigned": lines,
    }


def send_due(factory: sessionmaker[Session], notifier: notify.Notifier,
             now: datetime) -> list[str]:
    """Queue the handover mail of the shift that began before ``now``, once per recipient.

    Returns the addresses queued by this call.
    """
    config = notifier.config
    if not config.digest.handover:
        return []
    shift = oncall.shift_at(config.oncall, now)
    if shift is None or not shift.starts_at <= now < shift.starts_at + LATE_WINDOW:
        return []
    day = shift.starts_at.astimezone(ZoneInfo(config.oncall.timezone)).date()
    sent: list[str] = []
    for address in recipients.expand(config, config.digest.handover_to, pair=shift.pair):
        engineer = config.engineers.get(address)
        with transaction(factory) as session:
            if not morning.claim(session, address, KIND, day, now):
                continue
            notify.queue_mail(
                session, notifier, kind=KIND, to=[address], template="digest_handover",
                locale=engineer.locale if engineer is not None else config.mail.default_locale,
                context=context(session, notifier, shift, address, now), now=now,
                auto_submitted="auto-generated",
                extra_headers={"List-Id": row_mod.list_id(notifier.domain, "handover")},
            )
        sent.append(address)
    if sent:
        log.info("handover mail queued", extra={"pair": ",".join(shift.pair),
                                                "to": ",".join(sent)})
    return sent
