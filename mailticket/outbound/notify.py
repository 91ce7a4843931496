"""Turn ticket events into outbox rows: who gets which mail, rendered and composed.

Rows are written in the caller's transaction (the transactional outbox), so a
mail exists exactly when the ticket change that caused it was committed. Every
automatic mail is counted per recipient (RFC 3834 / Znuny's 40 a day, see
``auto_mail``) so a loop with another robot burns out instead of flooding both
sides.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from mailticket.config import Config
from mailticket.log import get as get_logger
from mailticket.mail import addresses, compose
from mailticket.model import ArticleKind, Direction, Line
from mailticket.outbound import promise, stopped, suppression
from mailticket.outbound.caps import auto_mail_allowed, log_auto_mail
from mailticket.outbound.render import Rendered, Renderer
from mailticket.store import after_flush, row_ids
from mailticket.store.schema import OutboxItem, QueueState, Ticket
from mailticket.tickets.service import add_article, index_message_id, ref_of


@dataclass(frozen=True)
class Notifier:
    """What notify needs: the config and the template renderer."""

    config: Config
    renderer: Renderer

    @property
    def support_address(self) -> str:
        """From, the base of Reply-To token addresses and of the VERP sender (``mail.from_address``)."""
        return self.config.mail.sender_address

    @property
    def domain(self) -> str:
        return self.config.mail.message_id_domain


log = get_logger("notify")


def thread_root(notifier: Notifier, ticket: Ticket) -> str:
    """A stable Message-ID every mail about a ticket cites, so clients keep one conversation."""
    return f"ticket-{ticket.id}@{notifier.domain}"


def ticket_context(notifier: Notifier, ticket: Ticket) -> dict[str, Any]:
    """The ``ticket`` mapping every template receives."""
    ref = ref_of(ticket, notifier.config.mail.ticket_prefix)
    contract = notifier.config.contracts.get(ticket.contract_id or "")
    timezone = "Europe/Moscow"
    if contract is not None:
        plan = notifier.config.sla_plans.get(contract.sla_plan)
        if plan is not None:
            for targets in plan.targets.values():
                cal = notifier.config.calendars.get(targets.calendar)
                if cal is not None and not cal.always_open:
                    timezone = cal.timezone
                    break
    return {
        "ref": str(ref),
        "tag": ref.tag,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "created_at": ticket.created_at,
        "timezone": timezone,
        "contract_name": contract.name if contract else "",
        "requester": ticket.requester,
        "assignee": ticket.assignee or "",
        "line": ticket.line,
        "first_response_due": ticket.first_response_due,
        "resolution_due": ticket.resolution_due,
    }


# Outbox rows are written with a prebuilt Core INSERT, buffered on the unit of
# work with their Message-ID index rows (one executemany per table at the next
# flush point). The id is reserved first (store.row_ids), so the VERP
# envelope sender that names it is in the INSERT: no UPDATE, no flush per mail.
_INSERT_OUTBOX = insert(cast(Table, OutboxItem.__table__))


def queue_mail(
    session: Session,
    notifier: Notifier,
    *,
    kind: str,
    to: Sequence[str],
    template: str,
    locale: str,
    context: Mapping[str, Any],
    now: datetime,
    ticket: Ticket | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    auto_submitted: str = "auto-generated",
    reply_to: str | None = None,
    cc: Sequence[str] = (),
    from_name: str | None = None,
    subject_tag: bool = True,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    rendered: Rendered | None = None,
    suppressed: Collection[str] | None = None,
    extra_headers: Mapping[str, str] | None = None,
    finish_raw: Callable[[bytes], bytes] | None = None,
) -> OutboxItem | None:
    """Render, compose and queue one mail; it leaves when the transaction commits.

    Suppressed recipients (repeated permanent failures, see ``suppression``)
    are left out and logged; when nobody is left, nothing is queued and the
    result is None. The row's VERP ``envelope_from`` is set at the session's
    next flush, when the row has its id. A caller sending one text to several people may pass it
    ``rendered`` and the ``suppressed`` addresses among all of them, so both
    are worked out once. ``finish_raw`` gets the composed mail and returns
    what is queued (the monthly report puts its charts in).

    The row is buffered (written at the session's next flush point); the
    result is a snapshot of it, not an object of the session: changing it
    changes nothing stored.
    """
    everyone = [*to, *cc]
    blocked = (suppression.suppressed_among(session, everyone) if suppressed is None
               else {a for a in everyone if a in suppressed})
    if blocked:
        stopped.record(session, kind=kind, recipients=sorted(blocked), reason=stopped.SUPPRESSED,
                       now=now, ticket_id=ticket.id if ticket is not None else None)
        to = [a for a in to if a not in blocked]
        cc = [a for a in cc if a not in blocked]
        if not to:
            # Someone must be in To:; a Cc colleague takes the requester's place.
            to, cc = list(cc[:1]), list(cc[1:])
        if not to:
            return None
    if rendered is None:
        rendered = notifier.renderer.render(template, locale, context)
    subject = rendered.subject
    refs = list(references)
    if ticket is not None:
        root = thread_root(notifier, ticket)
        refs = [root, *[r for r in refs if r != root]]
        if subject_tag:
            subject = compose.subject_with_tag(subject, ref_of(ticket, notifier.config.mail.ticket_prefix).tag)
    message_id = compose.new_message_id(notifier.domain)
    raw = compose.compose_bytes(
        from_addr=notifier.support_address,
        from_name=from_name if from_name is not None else notifier.config.mail.from_name,
        to=list(to),
        cc=list(cc),
        subject=subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id,
        in_reply_to=in_reply_to or (refs[-1] if refs else None),
        references=refs,
        auto_submitted=auto_submitted,
        reply_to=reply_to,
        loop_id=notifier.config.daemon.instance_id,
        attachments=attachments,
        extra_headers=extra_headers,
        date=now,
    )
    if finish_raw is not None:
        raw = finish_raw(raw)
    row_id = row_ids.take(session, "outbox")
    row: dict[str, Any] = {
        "id": row_id,
        "ticket_id": ticket.id if ticket is not None else None,
        "kind": kind,
        # VERP: the envelope sender names this row, so a bounce finds it without
        # trusting anything in the bounce body.
        "envelope_from": addresses.verp_return_path(
            notifier.support_address, row_id, notifier.config.mail.reply_token_secret),
        "rcpt_tos": [*to, *cc],
        "message_id": message_id,
        "raw": raw,
        "state": QueueState.QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    after_flush.buffer(session, _INSERT_OUTBOX, row)
    item = OutboxItem(**row)
    if ticket is not None:
        index_message_id(session, message_id, ticket.id, None, Direction.OUT, fresh=True)
    if auto_submitted != "no":
        log_auto_mail(session, [*to, *cc], kind, ticket.id if ticket is not None else None, now)
    return item


def acknowledge(
    session: Session,
    notifier: Notifier,
    ticket: Ticket,
    *,
    to: str,
    customer_name: str,
    in_reply_to: str | None,
    references: Sequence[str],
    now: datetime,
    suppressed: Collection[str] | None = None,
    counts: tuple[int, int, int] | None = None,
) -> OutboxItem | None:
    """Send the customer an acknowledgement with the ticket reference (rate-limited).

    ``suppressed`` and ``counts``: the caller's :func:`~mailticket.outbound.caps.gate`
    (suppressed addresses, see :func:`queue_mail`; the caps of an ``ack`` to ``to``).
    """
    if not auto_mail_allowed(session, notifier.config.mail, to, "ack", now, per_day=1,
                             ticket_id=ticket.id, counts=counts):
        return None
    about = ticket_context(notifier, ticket)
    context = {
        "ticket": about,
        "customer_name": customer_name,
        "contract_name": about["contract_name"],
        "support_address": notifier.support_address,
        # The SLA engine's due time, stamped on the ticket before the ack is written.
        "promise": promise.first_response(notifier.config, ticket),
    }
    item = queue_mail(
        session,
        notifier,
        kind="ack",
        to=[to],
        template="ack",
        locale=ticket.locale,
        context=context,
        now=now,
        ticket=ticket,
        in_reply_to=in_reply_to,
        references=[*references, *([in_reply_to] if in_reply_to else [])],
        auto_submitted="auto-replied",
        suppressed=suppressed,
    )
    add_article(
        session,
        ticket,
        direction=Direction.OUT,
        kind=ArticleKind.ACK,
        from_addr=notifier.support_address,
        to_addrs=[to],
        subject=ticket.subject,
        text="",
        now=now,
        author="mailticket",
    )
    return item


def engineers_for(notifier: Notifier, ticket: Ticket) -> list[str]:
    """Who hears about a ticket: its assignee, else the contract's dedicated engineer, else L1."""
    if ticket.assignee:
        return [ticket.assignee]
    contract = notifier.config.contracts.get(ticket.contract_id or "")
    if contract is not None and contract.dedicated_engineer:
        return [contract.dedicated_engineer]
    line = Line(ticket.line)
    return [e.address for e in notifier.config.engineers.values() if e.line == line]


def notify_engineers(
    session: Session,
    notifier: Notifier,
    ticket: Ticket,
    *,
    event: str,
    from_addr: str,
    from_name: str,
    text: str,
    attachments: Sequence[str],
    now: datetime,
    recipients: Sequence[str] | None = None,
    suggestions: Sequence[Mapping[str, str]] = (),
    suppressed: Collection[str] | None = None,
) -> list[OutboxItem]:
    """One copy per engineer, each with its own signed Reply-To token.

    The text is the same for every engineer of one locale, so it is rendered
    once per locale; suppressed addresses are looked up once for all of them
    (or taken from ``suppressed``, the caller's lookup).
    """
    engineers = list(recipients if recipients is not None else engineers_for(notifier, ticket))
    if not engineers:
        return []
    context = {
        "ticket": ticket_context(notifier, ticket),
        "event": event,
        "from_addr": from_addr,
        "from_name": from_name,
        "text": text,
        "attachments": list(attachments),
        "suggestions": list(suggestions),
    }
    blocked = (suppression.suppressed_among(session, engineers) if suppressed is None
               else suppressed)
    texts: dict[str, Rendered] = {}
    items: list[OutboxItem] = []
    for engineer in engineers:
        token = addresses.make_reply_token(
            notifier.config.mail.reply_token_secret, ticket.id, engineer, now.date()
        )
        reply_to = addresses.reply_address(notifier.support_address, token)
        person = notifier.config.engineers.get(engineer)
        locale = person.locale if person else notifier.config.mail.default_locale
        if locale not in texts:
            texts[locale] = notifier.renderer.render("engineer_notice", locale, context)
        item = queue_mail(
            session,
            notifier,
            kind=f"engineer_{event}",
            to=[engineer],
            template="engineer_notice",
            locale=locale,
            context=context,
            now=now,
            ticket=ticket,
            reply_to=reply_to,
            auto_submitted="auto-generated",
            rendered=texts[locale],
            suppressed=blocked,
        )
        if item is not None:  # None: the engineer's address is suppressed
            items.append(item)
    return items


def notice(
    session: Session,
    notifier: Notifier,
    *,
    template: str,
    to: str,
    context: Mapping[str, Any],
    now: datetime,
    locale: str | None = None,
    in_reply_to: str | None = None,
) -> OutboxItem | None:
    """A polite one-off notice (unknown sender, unreadable mail …), at most once a day per kind."""
    per_day = notifier.config.mail.unknown_sender_notices_per_day
    if not to or not auto_mail_allowed(session, notifier.config.mail, to, template, now, per_day=per_day):
        return None
    return queue_mail(
        session,
        notifier,
        kind=template,
        to=[to],
        template=template,
        locale=locale or notifier.config.mail.default_locale,
        context=context,
        now=now,
        in_reply_to=in_reply_to,
        references=[in_reply_to] if in_reply_to else [],
        auto_submitted="auto-replied",
    )
