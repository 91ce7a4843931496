"""The incident report ("Сообщение о нарушениях") mailed when a critical ticket is resolved.

Issue 6 §6: the customer's side (the ticket's contacts, then the contacts
listed on the contract) and our side (``mail.admin_addresses`` and
``reports.incident_recipients``) get the ticket's timeline, the response and restore times against the SLA (business
minutes used against the target), the breaches that were sent, and the cause
and actions engineers recorded with ``#cause`` and ``#actions``.

The report is queued in the transaction of the mail that resolved the ticket,
after all of that mail's commands ran, so ``#cause … #status resolved`` in one
reply gives a complete report. A marker row in ``sla_events`` (timer
``incident_report``, deadline = the resolution instant) makes it go out once
per resolution; reopening and resolving again sends a new one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.model import ArticleKind, Priority, Status
from mailticket.outbound import notify
from mailticket.outbound.notify import Notifier
from mailticket.sla.clock import EventKind, deadlines
from mailticket.store.schema import Article, AuditEvent, OutboxItem, SlaEvent, Ticket
from mailticket.tickets import sla_stamp as sla_service

# Audit actions shown in the customer's timeline; notes, refusals and token
# checks are internal and stay out.
TIMELINE_ACTIONS = ("opened", "status", "priority", "assign", "line", "cause", "actions", "merge")
_SNIPPET = 300


def _due(session: Session, ticket: Ticket) -> bool:
    """A critical ticket that is resolved and has no report for this resolution yet."""
    if ticket.priority != Priority.CRITICAL or ticket.resolved_at is None:
        return False
    if ticket.status not in (Status.RESOLVED, Status.CLOSED):
        return False
    marker = select(SlaEvent.id).where(
        SlaEvent.ticket_id == ticket.id,
        SlaEvent.timer == sla_service.INCIDENT_REPORT,
        SlaEvent.deadline == ticket.resolved_at,
    )
    return session.scalar(marker) is None


def _snippet(text: str) -> str:
    """The start of a message, on one line, for the timeline."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET else flat[: _SNIPPET - 1] + "…"


def _who(config: Config, address: str) -> str:
    """How the customer sees an actor: engineers never by address (as in our replies)."""
    engineer = config.engineers.get(address)
    if engineer is None:
        return address
    return engineer.name if config.mail.show_engineer_name else config.mail.from_name


def timeline(session: Session, config: Config, ticket: Ticket) -> list[dict[str, Any]]:
    """Messages, changes and SLA events in time order, as template rows.

    Each row has ``at``, ``kind`` (an audit action, ``customer``/``reply`` for
    messages, or ``sla_warning``/``sla_breach``), ``actor`` and ``detail`` (a dict).
    At one instant the opening comes first, then messages, then changes.
    """
    rows: list[tuple[datetime, int, dict[str, Any]]] = []
    for event in session.scalars(
        select(AuditEvent)
        .where(AuditEvent.ticket_id == ticket.id, AuditEvent.action.in_(TIMELINE_ACTIONS))
        .order_by(AuditEvent.id)
    ):
        detail = {k: str(v) for k, v in event.detail.items() if k in ("from", "to", "text")}
        if event.action == "assign":
            detail["to"] = _who(config, detail.get("to", ""))
        rank = -1 if event.action == "opened" else 1
        rows.append((event.at, rank, {"at": event.at, "kind": event.action,
                                      "actor": _who(config, event.actor), "detail": detail}))
    for article in session.scalars(
        select(Article)
        .where(Article.ticket_id == ticket.id,
               Article.kind.in_([ArticleKind.CUSTOMER.value, ArticleKind.REPLY.value]))
        .order_by(Article.id)
    ):
        rows.append((article.created_at, 0, {
            "at": article.created_at, "kind": article.kind,
            "actor": _who(config, article.from_addr),
            "detail": {"text": _snippet(article.text)}}))
    for sent in sla_events(session, ticket):
        rows.append((sent.deadline, 2, {
            "at": sent.deadline, "kind": f"sla_{sent.kind}", "actor": "mailticket",
            "detail": {"timer": sent.timer}}))
    rows.sort(key=lambda row: (row[0], row[1]))
    return [row for _, _, row in rows]


def sla_events(session: Session, ticket: Ticket) -> list[SlaEvent]:
    """The SLA warnings and breaches recorded for a ticket, oldest first."""
    return list(session.scalars(
        select(SlaEvent)
        .where(SlaEvent.ticket_id == ticket.id, SlaEvent.timer != sla_service.INCIDENT_REPORT)
        .order_by(SlaEvent.deadline, SlaEvent.id)
    ))


def timers(session: Session, notifier: Notifier, ticket: Ticket) -> list[dict[str, Any]]:
    """Each SLA timer: target and business minutes used, due and end instants, in time or not."""
    found = sla_service.ticket_sla(session, notifier.config, ticket)
    if found is None:
        return []
    out = []
    for timer, d in deadlines(found.clock, found.plan, notifier.config.calendars).items():
        ended = d.ended_at
        out.append({
            "timer": str(timer),
            "target_minutes": d.target_minutes,
            "used_minutes": d.used_minutes,
            "due_at": d.due_at,
            "ended_at": ended,
            "met": d.met_at is not None,
            "in_time": d.met_at is not None and (d.due_at is None or d.met_at <= d.due_at),
        })
    return out


def recorded_text(session: Session, ticket: Ticket, action: str) -> str:
    """Everything engineers wrote with ``#cause`` or ``#actions``, one entry per line."""
    texts = session.scalars(
        select(AuditEvent.detail)
        .where(AuditEvent.ticket_id == ticket.id, AuditEvent.action == action)
        .order_by(AuditEvent.id)
    )
    return "\n".join(str(d.get("text", "")).strip() for d in texts if d.get("text"))


def context(session: Session, notifier: Notifier, ticket: Ticket) -> dict[str, Any]:
    """The full ``incident_report`` template context."""
    return {
        "ticket": notify.ticket_context(notifier, ticket),
        "resolved_at": ticket.resolved_at,
        "timeline": timeline(session, notifier.config, ticket),
        "timers": timers(session, notifier, ticket),
        "breaches": [
            {"timer": e.timer, "deadline": e.deadline}
            for e in sla_events(session, ticket) if e.kind == EventKind.BREACH
        ],
        "cause": recorded_text(session, ticket, "cause"),
        "actions": recorded_text(session, ticket, "actions"),
    }


def recipients(config: Config, ticket: Ticket) -> tuple[list[str], list[str]]:
    """The customer's addresses (in the ticket's locale) and ours, without repeats.

    Customers: the ticket's contacts, then the contract's listed contacts. Ours: the
    admins and ``reports.incident_recipients``, unless already among the customers.
    """
    contract = config.contracts.get(ticket.contract_id or "")
    listed = contract.contacts if contract is not None else ()
    contacts = list(dict.fromkeys([*(c.address for c in ticket.contacts), *listed]))
    ours = [*config.mail.admin_addresses, *config.reports.incident_recipients]
    staff = [a for a in dict.fromkeys(ours) if a not in contacts]
    return contacts, staff


def report_if_due(
    session: Session, notifier: Notifier, ticket: Ticket, now: datetime
) -> list[OutboxItem]:
    """Queue the incident report if ``ticket`` is a critical ticket just resolved."""
    if not _due(session, ticket):
        return []
    assert ticket.resolved_at is not None
    session.add(SlaEvent(ticket_id=ticket.id, timer=sla_service.INCIDENT_REPORT, kind="sent",
                         deadline=ticket.resolved_at, created_at=now))
    session.flush()
    data = context(session, notifier, ticket)
    contacts, staff = recipients(notifier.config, ticket)
    items: list[OutboxItem | None] = []
    if contacts:
        items.append(notify.queue_mail(
            session, notifier, kind="incident_report", to=contacts[:1], cc=contacts[1:],
            template="incident_report", locale=ticket.locale, context=data, now=now,
            ticket=ticket,
        ))
    if staff:
        items.append(notify.queue_mail(
            session, notifier, kind="incident_report", to=staff,
            template="incident_report", locale=notifier.config.mail.default_locale,
            context=data, now=now, ticket=ticket,
        ))
    return [item for item in items if item is not None]
