"""Every ticket's stored SLA facts agree with a full read of its history.

``tickets.sla_facts`` keeps on each ticket what the SLA restamp would
otherwise read back (status changes, the last reply, unanswered mail, the SLA
record's keys). The integration harnesses call :func:`mismatches` when they
close, so every scenario of the suite holds the facts to the full recompute.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailticket.store.db import transaction
from mailticket.store.schema import Ticket
from mailticket.tickets import sla_facts
from mailticket.tickets.sla_stamp import read_facts


def _comparable(facts: sla_facts.SlaFacts) -> sla_facts.SlaFacts:
    return sla_facts.SlaFacts(
        changes=tuple(sla_facts.ordered_changes(facts)), priority_since=facts.priority_since,
        last_reply_at=facts.last_reply_at, unanswered_since=facts.unanswered_since,
        answered=facts.answered, sent=facts.sent,
    )


def mismatches(factory: sessionmaker[Session]) -> list[str]:
    """One line per ticket whose known facts differ from its history read in full."""
    found: list[str] = []
    with transaction(factory) as session:
        for ticket in session.scalars(select(Ticket).order_by(Ticket.id)).all():
            known = sla_facts.load(ticket)
            if known is None:
                continue
            full = read_facts(session, ticket.id)
            if _comparable(known) != _comparable(full):
                found.append(f"MT-{ticket.id}: stored {known} != read {full}")
        session.rollback()
    return found
