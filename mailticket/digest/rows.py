"""One line per ticket in every list we mail (queue answer, morning digest, handover).

A row says what a reader must decide on: reference, contract, priority,
status, the next SLA due time and the time left (or how late it is), and how
long the customer has waited since their last message. The due time is the
one ``tickets.sla_stamp`` stamped on the ticket; nothing is recomputed here,
so a list and ``sla show`` never disagree. Each row carries a ``mailto:``
reply address with the reader's own reply token, so answering from the list
acts on that ticket exactly as answering a notice does (a reader who is not an
engineer, such as a duty lead's address in ``[digest] handover.to``, gets
rows without one: a token would act for nobody). A ticket waiting on the
customer says since when: the moment it entered ``waiting``
(``tickets.sla_paused_since``, set by every change to that status whether or
not the plan pauses its clock), not its last change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.mail import addresses
from mailticket.model import ArticleKind, Status
from mailticket.outbound import promise
from mailticket.store.schema import Article, Ticket
from mailticket.tickets.service import ref_of

# A ticket whose next due time is this close (minutes) counts as at risk.
AT_RISK_MINUTES = 120
OPEN_STATUSES = (Status.NEW.value, Status.OPEN.value, Status.WAITING.value)


def list_id(domain: str, word: str) -> str:
    """A stable List-Id per kind of list (RFC 2919 form), so mail clients can file them."""
    return f"<{word}.{domain}>"


def last_customer_messages(session: Session, ticket_ids: Sequence[int]) -> dict[int, datetime]:
    """The latest customer article per ticket, in one query."""
    if not ticket_ids:
        return {}
    rows = session.execute(
        select(Article.ticket_id, func.max(Article.created_at))
        .where(Article.ticket_id.in_(ticket_ids), Article.kind == ArticleKind.CUSTOMER.value)
        .group_by(Article.ticket_id)
    ).all()
    return {ticket_id: at for ticket_id, at in rows if at is not None}


def reply_link(config: Config, ticket: Ticket, reader: str, now: datetime) -> str:
    """``mailto:`` the reader's own reply address for the ticket, with the tagged subject."""
    token = addresses.make_reply_token(config.mail.reply_token_secret, ticket.id, reader,
                                       now.date())
    address = addresses.reply_address(config.mail.sender_address, token)
    tag = ref_of(ticket, config.mail.ticket_prefix).tag
    return f"mailto:{address}?subject={quote(f'Re: {tag} {ticket.subject}')}"


def waiting_since(ticket: Ticket) -> datetime:
    """When ``ticket`` started waiting on the customer (its last change, for rows from before)."""
    return ticket.sla_paused_since or ticket.updated_at


def _minutes(since: datetime | None, now: datetime) -> int | None:
    return round((now - since).total_seconds() / 60) if since is not None else None


def row(config: Config, ticket: Ticket, reader: str | None, now: datetime,
        last_customer: datetime | None, timezone: str | None = None) -> dict[str, Any]:
    """The template mapping of one ticket as ``reader`` sees it at ``now``.

    :param reader: an engineer's address (their reply token goes in), or None.
    :param timezone: the zone times are shown in; None = the ticket's calendar's.
    """
    due = promise.next_due(config, ticket)
    due_at: datetime | None = due["due_at"]
    minutes_left = _minutes(now, due_at) if due_at is not None else None
    contract = config.contracts.get(ticket.contract_id or "")
    link = reply_link(config, ticket, reader, now) if reader in config.engineers else ""
    waiting = waiting_since(ticket) if ticket.status == Status.WAITING.value else None
    return {
        "ref": str(ref_of(ticket, config.mail.ticket_prefix)),
        "subject": ticket.subject,
        "contract": contract.id if contract else "-",
        "contract_name": contract.name if contract else "",
        "priority": ticket.priority,
        "status": ticket.status,
        "line": ticket.line,
        "assignee": ticket.assignee or "",
        "due_at": due_at,
        "timezone": timezone or due["timezone"],
        "minutes_left": minutes_left,
        "overdue": minutes_left is not None and minutes_left < 0,
        "at_risk": minutes_left is not None and 0 <= minutes_left <= AT_RISK_MINUTES,
        "waiting_minutes": _minutes(last_customer, now),
        "waiting_since": waiting,
        "waiting_since_minutes": _minutes(waiting, now),
        "reply": link,
        "reply_address": link.removeprefix("mailto:").split("?", 1)[0],
    }


def rows(session: Session, config: Config, tickets: Sequence[Ticket], reader: str | None,
         now: datetime, timezone: str | None = None) -> list[dict[str, Any]]:
    """Rows for ``tickets`` in the order given."""
    last = last_customer_messages(session, [t.id for t in tickets])
    return [row(config, t, reader, now, last.get(t.id), timezone) for t in tickets]


def by_urgency(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Overdue first, then at risk, then by the next due time; tickets owing nothing last."""
    def key(item: dict[str, Any]) -> tuple[int, float]:
        left = item["minutes_left"]
        if left is None:
            return (3, 0.0)
        return (0 if item["overdue"] else 1 if item["at_risk"] else 2, float(left))
    return sorted(items, key=key)
