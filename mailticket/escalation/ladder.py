"""Who hears about an SLA event, and the mail each of them gets (issue 6 §4).

* A **warning** goes to whoever works the ticket: its assignee, else the
  contract's dedicated engineer, else the engineers of its line
  (:func:`mailticket.outbound.notify.engineers_for`). When that is the contract's
  dedicated engineer, the contract's deputy is copied, as on every other
  notice about the dedicated engineer's tickets.
* A **breach** goes to them too, and escalates: the engineers of the *next*
  support line (L1 → L2 → L3 → L4) and the contract's dedicated engineer.
* Every event of a **critical** ticket also pages the current on-call pair from
  the ``[oncall]`` rota, at any hour, so a warning at night reaches someone awake.

Each engineer gets one mail (in their locale, with their own signed Reply-To
token so that answering it acts on the ticket), under the first role that
names them. Rows go to the outbox in the scan's transaction, beside the
``sla_events`` row that makes the event happen once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mailticket.mail import addresses
from mailticket.model import Line, Priority
from mailticket.outbound import notify, suppression
from mailticket.outbound.notify import Notifier
from mailticket.policy import oncall
from mailticket.sla.clock import EventKind, SlaEventDue
from mailticket.store.schema import OutboxItem, Ticket

ASSIGNEE, DEPUTY, ESCALATION, ONCALL = "assignee", "deputy", "escalation", "oncall"


@dataclass(frozen=True)
class Recipient:
    """One engineer to tell about one event, and why (the template's ``recipient_role``)."""

    address: str
    role: str


def recipients(
    notifier: Notifier, ticket: Ticket, kind: EventKind, now: datetime
) -> list[Recipient]:
    """Everyone who hears about a ``kind`` event on ``ticket`` at ``now``, without repeats."""
    config = notifier.config
    found = [Recipient(address, ASSIGNEE) for address in notify.engineers_for(notifier, ticket)]
    contract = config.contracts.get(ticket.contract_id or "")
    if (contract is not None and contract.deputy_engineer and contract.dedicated_engineer
            and [r.address for r in found] == [contract.dedicated_engineer]):
        found.append(Recipient(contract.deputy_engineer, DEPUTY))
    if kind is EventKind.BREACH:
        upper = Line(ticket.line).next()
        if upper is not None:
            found += [Recipient(e.address, ESCALATION) for e in config.engineers.values()
                      if e.line == upper]
        if contract is not None and contract.dedicated_engineer:
            found.append(Recipient(contract.dedicated_engineer, ESCALATION))
    if ticket.priority == Priority.CRITICAL:
        found += [Recipient(a, ONCALL) for a in oncall.current_pair(config.oncall, now)]
    unique: dict[str, Recipient] = {}
    for recipient in found:
        unique.setdefault(recipient.address.lower(), recipient)
    return list(unique.values())


def outbox_kind(kind: EventKind, role: str) -> str:
    """The outbox ``kind`` of one SLA mail: ``sla_breach_escalation`` and so on."""
    return f"sla_{kind}_{role}"


def send(
    session: Session, notifier: Notifier, ticket: Ticket, event: SlaEventDue, now: datetime,
    *, changed_at: datetime | None = None, people: list[Recipient] | None = None,
) -> list[OutboxItem]:
    """Queue the mails of one new SLA event; returns the outbox rows written.

    :param changed_at: for a retroactive breach, the priority change that put its
        deadline in the past; the notice says so instead of pretending it was late.
    :param people: the recipients, when the caller already asked :func:`recipients`
        (the scan records them with the event).
    """
    config = notifier.config
    template = "sla_warning" if event.kind is EventKind.WARNING else "sla_breach"
    deadline = event.due_at or event.deadline
    items: list[OutboxItem] = []
    people = recipients(notifier, ticket, event.kind, now) if people is None else people
    # One suppression query per event, not one (and an autoflush) per mail.
    blocked = suppression.suppressed_among(session, [r.address for r in people])
    for recipient in people:
        person = config.engineers.get(recipient.address)
        token = addresses.make_reply_token(
            config.mail.reply_token_secret, ticket.id, recipient.address, now.date()
        )
        item = notify.queue_mail(
            session,
            notifier,
            kind=outbox_kind(event.kind, recipient.role),
            to=[recipient.address],
            template=template,
            locale=person.locale if person else config.mail.default_locale,
            context={
                "ticket": notify.ticket_context(notifier, ticket),
                "timer": str(event.timer),
                "deadline": deadline,
                "recipient_role": recipient.role,
                "changed_at": changed_at if event.retroactive else None,
            },
            now=now,
            ticket=ticket,
            reply_to=addresses.reply_address(notifier.support_address, token),
            suppressed=blocked,
        )
        if item is not None:
            items.append(item)
    return items
