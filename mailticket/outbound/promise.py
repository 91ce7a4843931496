"""What we promise a customer, in words a template can print (issue 16, point 4).

The due instants come from the SLA engine (``tickets.sla_stamp`` stamps them
on the ticket); this module only decides how to say them. A plan that counts
business hours promises an instant in the customer's zone ("до 10:30 пн,
7 декабря"); a 24/7 plan promises a period ("в течение 30 минут"), which is
what a customer of round-the-clock support wants to hear. Templates get a
plain mapping: ``kind`` is ``until``, ``within`` or ``none``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mailticket.config import Config
from mailticket.model import Priority, Status
from mailticket.store.schema import Ticket
from mailticket.tickets import sla_stamp

# The zone shown when a ticket has no plan (no contract): the provider's home zone.
DEFAULT_TIMEZONE = "Europe/Moscow"


def _promise(kind: str, due_at: datetime | None, minutes: int, timezone: str) -> dict[str, Any]:
    return {"kind": kind, "due_at": due_at, "minutes": minutes, "timezone": timezone}


def first_response(config: Config, ticket: Ticket) -> dict[str, Any]:
    """The first-response promise of a new ticket (its ``first_response_due`` must be stamped)."""
    plan = sla_stamp.plan_of(config, ticket)
    targets = plan.targets.get(Priority(ticket.priority)) if plan is not None else None
    calendar = config.calendars.get(targets.calendar) if targets is not None else None
    if targets is None or calendar is None:
        return _promise("none", None, 0, DEFAULT_TIMEZONE)
    if calendar.always_open:
        return _promise("within", ticket.first_response_due, targets.first_response_minutes,
                        calendar.timezone)
    if ticket.first_response_due is None:
        return _promise("none", None, 0, calendar.timezone)
    return _promise("until", ticket.first_response_due, targets.first_response_minutes,
                    calendar.timezone)


def next_due(config: Config, ticket: Ticket) -> dict[str, Any]:
    """The next instant we owe the customer something on an open ticket, or ``none``.

    Before the first answer that is the first-response due time, then the
    resolution due time; a ticket waiting on the customer owes nothing.
    """
    plan = sla_stamp.plan_of(config, ticket)
    targets = plan.targets.get(Priority(ticket.priority)) if plan is not None else None
    calendar = config.calendars.get(targets.calendar) if targets is not None else None
    timezone = calendar.timezone if calendar is not None else DEFAULT_TIMEZONE
    if Status(ticket.status) in (Status.WAITING, Status.RESOLVED, Status.CLOSED):
        return _promise("none", None, 0, timezone)
    due = ticket.first_response_due if ticket.first_response_at is None else None
    due = due or ticket.resolution_due
    if due is None:
        return _promise("none", None, 0, timezone)
    return _promise("until", due, 0, timezone)
