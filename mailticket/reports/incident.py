"""The incident notice mailed when a critical ticket is resolved.

Issue 13: the notice is a customer document. It goes out for every ticket
resolved while critical, and for every ticket whose SLA record shows trouble
while it was critical (a breach, a warning, a late end), so lowering the
priority afterwards cannot hide a breach. It says what happened (the
customer's own words, shortened), the impact, when the incident started, was
detected, first answered, when service was restored (``#restored`` or the
monitoring recovery, not the same as resolved), cause, actions, prevention and
each SLA timer's outcome from the record (:mod:`.incident_facts`). It is
titled by outcome: a breach notice when any timer was breached, an incident
report with the SLA met otherwise.

Recipients: the customer's side (the ticket's contacts, then the contract's)
in the ticket's locale, and ours (``mail.admin_addresses`` and
``reports.incident_recipients``) in the default locale; both get the same
document, which shows engineers by name only.

The notice is queued in the transaction of the mail that resolved the ticket,
after all of that mail's commands ran, so ``#cause … #status resolved`` in one
reply gives a complete notice. A marker row in ``sla_events`` (timer
``incident_report``, deadline = the resolution instant) makes it go out once
per resolution; reopening and resolving again sends a new one. An admin
re-sends it with ``mailticket report incident REF`` (:func:`resend`): queued
again with an audit row, never a second marker.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.model import ArticleKind, Status
from mailticket.outbound import notify
from mailticket.outbound.notify import Notifier
from mailticket.reports import incident_facts
from mailticket.sla.clock import EventKind
from mailticket.store.schema import Article, AuditEvent, OutboxItem, SlaEvent, Ticket
from mailticket.tickets import service as tickets
from mailticket.tickets import sla_facts
from mailticket.tickets import sla_stamp as sla_service

# Audit actions shown in the customer's timeline; notes, refusals, token checks
# and alert bookkeeping are internal and stay out.
TIMELINE_ACTIONS = ("opened", "status", "priority", "assign", "line", "cause", "actions",
                    "impact", "prevention", "restored", "merge")
# The audit action of every notice queued (automatically or re-sent).
SENT_ACTION = "incident_report"
# A message in the timeline: its gist (the notice quotes the first one in full above).
_SNIPPET = 150


def _due(session: Session, ticket: Ticket) -> bool:
    """Resolved, worth a notice, and no notice yet for this resolution."""
    if ticket.resolved_at is None or ticket.status not in (Status.RESOLVED, Status.CLOSED):
        return False
    marker = select(SlaEvent.id).where(
        SlaEvent.ticket_id == ticket.id,
        SlaEvent.timer == sla_service.INCIDENT_REPORT,
        SlaEvent.deadline == ticket.resolved_at,
    )
    if session.scalar(marker) is not None:
        return False
    return incident_facts.needs_notice(session, ticket)


def _who(config: Config, address: str, robots: frozenset[str] = frozenset()) -> str:
    """How the customer sees an actor: engineers never by address (as in our replies),
    the contract's monitoring as "" (the template names it in the reader's language)."""
    engineer = config.engineers.get(address)
    if engineer is None:
        return "" if address in robots else address
    return engineer.name if config.mail.show_engineer_name else config.mail.from_name


def _robots(config: Config, ticket: Ticket) -> frozenset[str]:
    """The monitoring senders of the ticket's contract."""
    contract = config.contracts.get(ticket.contract_id or "")
    sources = contract.monitoring if contract is not None else ()
    return frozenset(sender for source in sources for sender in source.senders)


def timeline(session: Session, config: Config, ticket: Ticket) -> list[dict[str, Any]]:
    """Messages, changes and SLA breaches in time order, as template rows.

    Each row has ``at``, ``kind`` (an audit action, ``customer``/``reply`` for
    messages, or ``sla_breach``), ``actor`` and ``detail`` (a dict). At one
    instant the opening comes first, then messages, then changes. A
    ``restored`` row stands at the instant of the restoration, with its source.
    A change made by the contract's monitoring has the actor "".
    """
    rows: list[tuple[datetime, int, dict[str, Any]]] = []
    robots = _robots(config, ticket)
    for event in session.scalars(
        select(AuditEvent)
        .where(AuditEvent.ticket_id == ticket.id, AuditEvent.action.in_(TIMELINE_ACTIONS))
        .order_by(AuditEvent.id)
    ):
        detail = {k: str(v) for k, v in event.detail.items() if k in ("from", "to", "text")}
        at = event.at
        if event.action == "assign":
            detail["to"] = _who(config, detail.get("to", ""))
        elif event.action == incident_facts.RESTORED:
            at = datetime.fromisoformat(str(event.detail.get("at", at.isoformat())))
            detail["source"] = str(event.detail.get("source", incident_facts.BY_ENGINEER))
        rank = -1 if event.action == "opened" else 1
        rows.append((at, rank, {"at": at, "kind": event.action,
                                "actor": _who(config, event.actor, robots), "detail": detail}))
    for article in session.scalars(
        select(Article)
        .where(Article.ticket_id == ticket.id,
               Article.kind.in_([ArticleKind.CUSTOMER.value, ArticleKind.REPLY.value]))
        .order_by(Article.id)
    ):
        rows.append((article.created_at, 0, {
            "at": article.created_at, "kind": article.kind,
            "actor": _who(config, article.from_addr),
            "detail": {"text": incident_facts.shorten(article.text, _SNIPPET)}}))
    for row in incident_facts.record_rows(session, ticket):
        if row.kind == EventKind.BREACH:
            rows.append((row.deadline, 2, {
                "at": row.deadline, "kind": "sla_breach", "actor": "mailticket",
                "detail": {"timer": row.timer}}))
    rows.sort(key=lambda row: (row[0], row[1]))
    return [row for _, _, row in rows]


def context(session: Session, notifier: Notifier, ticket: Ticket) -> dict[str, Any]:
    """The full ``incident_report`` template context, times in the SLA calendar's zone."""
    shown = notify.ticket_context(notifier, ticket)
    shown["timezone"] = incident_facts.ticket_timezone(notifier, ticket)
    return {
        "ticket": shown,
        "incident": incident_facts.facts(session, notifier, ticket),
        "timeline": timeline(session, notifier.config, ticket),
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


def _queue(
    session: Session, notifier: Notifier, ticket: Ticket, now: datetime,
    groups: Sequence[tuple[list[str], str]],
) -> list[OutboxItem]:
    """One mail per ``(addresses, locale)`` group (first address To:, the rest Cc:)."""
    data = context(session, notifier, ticket)
    items: list[OutboxItem | None] = []
    for addresses, locale in groups:
        if addresses:
            items.append(notify.queue_mail(
                session, notifier, kind="incident_report", to=addresses[:1], cc=addresses[1:],
                template="incident_report", locale=locale, context=data, now=now,
                ticket=ticket,
            ))
    return [item for item in items if item is not None]


def _audit(session: Session, ticket: Ticket, actor: str, items: Sequence[OutboxItem],
           now: datetime, *, resent: bool) -> None:
    """Who sent the notice of which resolution to whom (the marker says only "once")."""
    resolved = ticket.resolved_at.isoformat() if ticket.resolved_at is not None else None
    tickets.audit(session, ticket.id, actor, SENT_ACTION, {
        "resent": resent, "resolved_at": resolved,
        "to": [a for item in items for a in item.rcpt_tos]}, now)


def report_if_due(
    session: Session, notifier: Notifier, ticket: Ticket, now: datetime
) -> list[OutboxItem]:
    """Queue the notice if ``ticket`` was just resolved and deserves one (once per resolution)."""
    if not _due(session, ticket):
        return []
    assert ticket.resolved_at is not None
    session.add(SlaEvent(ticket_id=ticket.id, timer=sla_service.INCIDENT_REPORT, kind="sent",
                         deadline=ticket.resolved_at, created_at=now))
    sla_facts.note_sent(ticket, (sla_service.INCIDENT_REPORT, "sent", ticket.resolved_at))
    session.flush()
    contacts, staff = recipients(notifier.config, ticket)
    items = _queue(session, notifier, ticket, now, [
        (contacts, ticket.locale), (staff, notifier.config.mail.default_locale)])
    _audit(session, ticket, "mailticket", items, now, resent=False)
    return items


def resend(
    session: Session, notifier: Notifier, ticket: Ticket, now: datetime, *, actor: str,
    to: Sequence[str] = (),
) -> list[OutboxItem]:
    """Queue the notice again, to ``to`` (in the ticket's locale) or to its usual recipients.

    Writes an audit row and no marker: the marker says the notice of a resolution
    went out, and the record is append-only.
    """
    if to:
        groups = [(list(dict.fromkeys(a.lower() for a in to)), ticket.locale)]
    else:
        contacts, staff = recipients(notifier.config, ticket)
        groups = [(contacts, ticket.locale), (staff, notifier.config.mail.default_locale)]
    items = _queue(session, notifier, ticket, now, groups)
    _audit(session, ticket, actor, items, now, resent=True)
    return items
