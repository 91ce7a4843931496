"""Reading the SLA record for reports: its rows as plain values, and a month's rows.

Only the rows that decide a timer instance are read (``breach``, ``met``,
``stopped`` of the three SLA timers); warnings, pauses and the incident-report
marker do not change a month's figures.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from mailticket.reports import sla_month
from mailticket.sla.record_row import RecordedRow
from mailticket.store.schema import SlaEvent, Ticket
from mailticket.tickets.sla_record import recorded_row


def outcome_rows() -> Select[SlaEvent]:
    """The query of every outcome row of the SLA timers."""
    return select(SlaEvent).where(SlaEvent.timer.in_(sla_month.TIMERS),
                                  SlaEvent.kind.in_(sla_month.OUTCOME_KINDS))


def record_rows(
    session: Session, contract_id: str, start: datetime, end: datetime, cutoff: int | None
) -> list[RecordedRow]:
    """Every outcome row of the contract's tickets that have one dated or recorded in the month.

    All of such a ticket's rows are read (up to ``cutoff``), because an instance
    is decided by its first breach, which may lie before the month.
    """
    in_month = or_((SlaEvent.deadline >= start) & (SlaEvent.deadline < end),
                   (SlaEvent.created_at >= start) & (SlaEvent.created_at < end))
    candidates = (select(SlaEvent.ticket_id).join(Ticket, Ticket.id == SlaEvent.ticket_id)
                  .where(Ticket.contract_id == contract_id, in_month))
    query = outcome_rows().where(SlaEvent.ticket_id.in_(candidates))
    if cutoff is not None:
        query = query.where(SlaEvent.id <= cutoff)
    return [recorded_row(e) for e in session.scalars(query.order_by(SlaEvent.id))]
