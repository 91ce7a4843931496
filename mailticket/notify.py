"""Turn ticket events into outbox rows: who gets which mail, rendered and composed.

Rows are written in the caller's transaction (the transactional outbox), so a
mail exists exactly when the ticket change that caused it was committed. Every
automatic mail is counted per recipient (RFC 3834 / Znuny's 40 a day) so a
loop with another robot burns out instead of flooding both sides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailticket import suppression
from mailticket.config import Config
from mailticket.log import get as get_logger
from mailticket.mail import addresses, compose
from mailticket.model import ArticleKind, Direction, Line
from mailticket.render import Renderer
from mailticket.store.schema import AutoReplyLog, OutboxItem, QueueState, Ticket
from mailticket.tickets import add_article, index_message_id, ref_of


@dataclass(frozen=True)
class Notifier:
    """What notify needs: the config and the template renderer."""

    config: Config
    renderer: Renderer

    @property
    def support_address(self) -> str:
        return self.config.mail.support_addresses[0]

    @property
    def domain(self) -> str:
        return self.config.mail.message_id_domain


# Automatic mail about one ticket, to anyone, in any hour: a circuit breaker
# for loops that the per-recipient cap would stop only after forty rounds.
AUTO_MAILS_PER_TICKET_PER_HOUR = 10

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


def auto_mail_allowed(
    session: Session, notifier: Notifier, recipient: str, kind: str, now: datetime,
    *, per_day: int | None = None, ticket_id: int | None = None,
) -> bool:
    """Whether one more automatic mail to ``recipient`` stays under every cap.

    Three caps, all counted from ``auto_reply_log`` (RFC 3834, Znuny's
    ``PostmasterMaxEmails``): ``per_day`` of this ``kind`` (and ticket, if
    given) to this recipient; all automatic mail to this recipient per day
    (``mail.auto_replies_per_recipient_per_day``, or the recipient's entry in
    ``mail.auto_reply_overrides``); and, for a ticket, at most
    :data:`AUTO_MAILS_PER_TICKET_PER_HOUR` to anyone. A loop with another robot
    burns out against these instead of flooding both sides.
    """
    since = now - timedelta(days=1)
    mail_cfg = notifier.config.mail
    overrides: Mapping[str, int] = getattr(mail_cfg, "auto_reply_overrides", None) or {}
    daily = overrides.get(recipient.lower(), mail_cfg.auto_replies_per_recipient_per_day)
    to_recipient = select(func.count()).select_from(AutoReplyLog).where(
        AutoReplyLog.recipient == recipient, AutoReplyLog.sent_at >= since
    )
    if int(session.scalar(to_recipient) or 0) >= daily:
        return False
    if per_day is not None:
        query = to_recipient.where(AutoReplyLog.kind == kind)
        if ticket_id is not None:
            query = query.where(AutoReplyLog.ticket_id == ticket_id)
        if int(session.scalar(query) or 0) >= per_day:
            return False
    if ticket_id is not None:
        this_hour = select(func.count()).select_from(AutoReplyLog).where(
            AutoReplyLog.ticket_id == ticket_id,
            AutoReplyLog.sent_at >= now - timedelta(hours=1),
        )
        if int(session.scalar(this_hour) or 0) >= AUTO_MAILS_PER_TICKET_PER_HOUR:
            return False
    return True


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
) -> OutboxItem | None:
    """Render, compose and queue one mail; it leaves when the transaction commits.

    Suppressed recipients (repeated permanent failures, see ``suppression``)
    are left out and logged; when nobody is left, nothing is queued and the
    result is None.
    """
    blocked = suppression.suppressed_among(session, [*to, *cc])
    if blocked:
        log.warning("suppressed recipients left out", extra={
            "kind": kind, "ticket": ticket.id if ticket is not None else None,
            "recipients": sorted(blocked)})
        to = [a for a in to if a not in blocked]
        cc = [a for a in cc if a not in blocked]
        if not to:
            # Someone must be in To:; a Cc colleague takes the requester's place.
            to, cc = list(cc[:1]), list(cc[1:])
        if not to:
            return None
    rendered = notifier.renderer.render(template, locale, context)
    subject = rendered.subject
    refs = list(references)
    if ticket is not None:
        root = thread_root(notifier, ticket)
        refs = [root, *[r for r in refs if r != root]]
        if subject_tag:
            subject = compose.subject_with_tag(subject, ref_of(ticket, notifier.config.mail.ticket_prefix).tag)
    message_id = compose.new_message_id(notifier.domain)
    msg = compose.compose(
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
        date=now,
    )
    item = OutboxItem(
        ticket_id=ticket.id if ticket is not None else None,
        kind=kind,
        envelope_from=notifier.support_address,
        rcpt_tos=[*to, *cc],
        message_id=message_id,
        raw=compose.to_bytes(msg),
        state=QueueState.QUEUED,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(item)
    session.flush()
    # VERP: the envelope sender names this row, so a bounce finds it without
    # trusting anything in the bounce body.
    item.envelope_from = addresses.verp_return_path(
        notifier.support_address, item.id, notifier.config.mail.reply_token_secret
    )
    if ticket is not None:
        index_message_id(session, message_id, ticket.id, None, Direction.OUT)
    if auto_submitted != "no":
        for recipient in [*to, *cc]:
            session.add(
                AutoReplyLog(
                    recipient=recipient,
                    kind=kind,
                    ticket_id=ticket.id if ticket is not None else None,
                    sent_at=now,
                )
            )
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
) -> OutboxItem | None:
    """Send the customer an acknowledgement with the ticket reference (rate-limited)."""
    if not auto_mail_allowed(session, notifier, to, "ack", now, per_day=1, ticket_id=ticket.id):
        return None
    context = {
        "ticket": ticket_context(notifier, ticket),
        "customer_name": customer_name,
        "contract_name": ticket_context(notifier, ticket)["contract_name"],
        "support_address": notifier.support_address,
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
) -> list[OutboxItem]:
    """One copy per engineer, each with its own signed Reply-To token."""
    items = []
    for engineer in recipients if recipients is not None else engineers_for(notifier, ticket):
        token = addresses.make_reply_token(
            notifier.config.mail.reply_token_secret, ticket.id, engineer, now.date()
        )
        reply_to = addresses.reply_address(notifier.support_address, token)
        person = notifier.config.engineers.get(engineer)
        context = {
            "ticket": ticket_context(notifier, ticket),
            "event": event,
            "from_addr": from_addr,
            "from_name": from_name,
            "text": text,
            "attachments": list(attachments),
            "suggestions": list(suggestions),
        }
        items.append(
            queue_mail(
                session,
                notifier,
                kind=f"engineer_{event}",
                to=[engineer],
                template="engineer_notice",
                locale=person.locale if person else notifier.config.mail.default_locale,
                context=context,
                now=now,
                ticket=ticket,
                reply_to=reply_to,
                auto_submitted="auto-generated",
            )
        )
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
    if not to or not auto_mail_allowed(session, notifier, to, template, now, per_day=per_day):
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
