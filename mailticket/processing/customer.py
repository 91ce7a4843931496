"""The customer path: find the thread, store the mail on a ticket, then announce it.

Everyone who is not a proven engineer comes this way, so threading also turns
away what may not open or join a ticket: a forged engineer, an unknown sender,
an auto-reply with no thread, and a reply that overtook the mail it answers.
A customer's mail opens a ticket (routed, audited), follows up a ticket closed
long ago, or adds an article to its thread (reopening, or closing on a close
phrase); colleagues of the same contract in To/Cc are copied from then on.
Then the customer gets an acknowledgement for a new ticket and the engineers a
notice. Everything runs in the worker's one transaction, so the ticket and the
outbox rows that announce it commit together with the spool row.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import select

from mailticket.log import get as get_logger
from mailticket.mail.compose import strip_reply_prefixes
from mailticket.mail.parse import InboundMail
from mailticket.mail.quotes import strip_reply
from mailticket.model import ArticleKind, Direction, MailKind, PrincipalKind, Priority, Status
from mailticket.outbound import caps, notify, stopped, suppression
from mailticket.policy import contracts, kb, routing
from mailticket.processing import engineer
from mailticket.processing import ratings as feedback
from mailticket.processing.work import Context, Disposition, Outcome, Work, auth_of, mail_of
from mailticket.store.schema import QueueState, SpoolItem, Ticket
from mailticket.tickets import service as tickets
from mailticket.tickets import sla_stamp

# The logger threading always used, kept for log filters.
log = get_logger("pipeline")

# Events after which the engineers hear about the customer's mail.
_NOTICE_EVENTS = ("new", "reply", "reopened", "closed")
# How long a reply waits for the mail it answers, if that is still in the spool.
DEFER_WINDOW = timedelta(minutes=2)


def thread(work: Work, ctx: Context) -> Work | Outcome:
    """Find the ticket this mail continues, refusing threads the sender may not join."""
    mail, who = mail_of(work), auth_of(work)
    assert work.keys is not None, "thread ran before drop_duplicate"
    keys, principal = work.keys, who.principal
    ticket = tickets.find_by_message_ids(ctx.session, keys.message_ids, work.known_ids)
    if ticket is None:
        ticket = tickets.find_by_numbers(ctx.session, keys.ticket_numbers)
    if ticket is None and keys.message_ids and _earlier_mail_in_flight(ctx, work):
        # A reply overtook the mail it answers (two workers, or a retry): wait for
        # it rather than open a second ticket for one conversation.
        return Outcome(Disposition.DEFERRED, detail="waiting for earlier mail")
    if ticket is not None and not tickets.sender_belongs(
        ticket, principal.address, principal.contract_id
    ):
        log.warning(
            "sender may not join this ticket; treated as a new request",
            extra={"spool_id": work.spool_id, "ticket": ticket.id, "from": principal.address},
        )
        ticket = None
    if who.forged:
        return engineer.refuse_forged(ctx, work, ticket)
    if ticket is None and work.kind != MailKind.NORMAL:
        # A robot's mail opens no ticket, so it gets no acknowledgement (RFC 3834).
        stopped.record(ctx.session, kind="ack", recipients=[principal.address],
                       reason=stopped.ROBOT, now=ctx.now, detail=work.kind_reason)
        return Outcome(Disposition.AUTO_UNTHREADED, detail=work.kind_reason)
    if ticket is None and principal.kind != PrincipalKind.CUSTOMER:
        if work.kind == MailKind.NORMAL:
            notify.notice(
                ctx.session,
                ctx.notifier,
                template="unknown_sender",
                to=principal.address,
                context={
                    "from_addr": principal.address,
                    "subject": mail.subject,
                    "support_address": ctx.notifier.support_address,
                },
                now=ctx.now,
                in_reply_to=mail.message_id,
            )
        log.info("unknown sender", extra={"spool_id": work.spool_id, "from": principal.address})
        return Outcome(Disposition.UNKNOWN_SENDER, detail=principal.address)
    return dataclasses.replace(work, ticket=ticket)


def _earlier_mail_in_flight(ctx: Context, work: Work) -> bool:
    """Whether older spool rows are still unprocessed (only for a short while after arrival)."""
    received = work.envelope.received_at
    if received is None or ctx.now - received > DEFER_WINDOW:
        return False
    pending = ctx.session.scalar(
        select(SpoolItem.id)
        .where(SpoolItem.id < work.spool_id,
               SpoolItem.state.in_([QueueState.QUEUED, QueueState.CLAIMED]),
               SpoolItem.created_at >= ctx.now - DEFER_WINDOW)
        .limit(1)
    )
    return pending is not None


def persist(work: Work, ctx: Context) -> Work | Outcome:
    """Store the customer's mail as a new ticket or an article on its thread."""
    assert work.mail is not None and work.auth is not None
    mail, principal = work.mail, work.auth.principal
    if (rated := feedback.from_reply(ctx, work)) is not None:
        return rated  # "5" in reply to a rating request rates; it does not reopen
    ticket, event = work.ticket, ""
    if ticket is None:
        contract = ctx.config.contracts.get(principal.contract_id or "")
        route = routing.decide(ctx.config, contract, sender=principal.address, subject=mail.subject)
        ticket = tickets.open_ticket(
            ctx.session,
            subject=strip_reply_prefixes(mail.subject),
            contract=contract,
            requester=principal.address,
            priority=route.priority,
            now=ctx.now,
            assignee=route.assignee,
            locale=contract.locale if contract else ctx.config.mail.default_locale,
            line=route.line.value,
            contract_type=route.contract_type,
        )
        tickets.apply_route(ctx.session, ticket, route, principal.address, ctx.now)
        tickets.audit(ctx.session, ticket.id, principal.address, "opened",
                      {"spool_id": work.spool_id, "message_id": mail.message_id}, ctx.now)
        event = "new"
    elif work.kind == MailKind.NORMAL and _past_reopen_window(ctx, ticket):
        old = ticket
        ticket = _follow_up(ctx, old, principal.address, principal.contract_id, mail,
                            work.spool_id)
        event = "new"
    elif work.kind == MailKind.NORMAL:
        event = "reply"
        # A colleague's answer to the rating request is a comment: no reopening.
        if (Status(ticket.status) in (Status.RESOLVED, Status.CLOSED)
                and not feedback.colleague_answer(ctx, work)):
            tickets.change_status(ctx.session, ticket, Status.OPEN, actor=principal.address,
                                  now=ctx.now)
            event = "reopened"
        elif Status(ticket.status) == Status.WAITING:
            tickets.change_status(ctx.session, ticket, Status.OPEN, actor=principal.address,
                                  now=ctx.now)
    else:
        event = "auto"
    if work.kind == MailKind.NORMAL:
        _add_colleagues(ctx, ticket, mail, principal.contract_id)
    tickets.add_article(
        ctx.session,
        ticket,
        direction=Direction.IN,
        kind=ArticleKind.CUSTOMER if work.kind == MailKind.NORMAL else ArticleKind.AUTO,
        from_addr=principal.address,
        to_addrs=[*mail.to, *mail.cc],
        subject=mail.subject,
        text=mail.text,
        html=mail.html,
        message_id=mail.message_id,
        spool_id=work.spool_id,
        author=principal.address,
        defects=mail.defects,
        attachments=[(a.filename, a.content_type, a.data) for a in mail.attachments],
        now=ctx.now,
        # The thread stage found this Message-ID unknown, in this transaction.
        new_message_id=True,
    )
    if work.kind == MailKind.NORMAL and event != "new" and _asks_to_close(ctx, mail):
        tickets.change_status(ctx.session, ticket, Status.CLOSED, actor=principal.address,
                              now=ctx.now)
        event = "closed"
    return dataclasses.replace(work, ticket=ticket, event=event)


def _past_reopen_window(ctx: Context, ticket: Ticket) -> bool:
    """A reply long after resolution starts a new ticket instead of reopening the old one."""
    if Status(ticket.status) not in (Status.RESOLVED, Status.CLOSED):
        return False
    ended = ticket.closed_at or ticket.resolved_at
    window = timedelta(days=ctx.config.mail.reopen_window_days)
    return ended is not None and ctx.now - ended > window


def _follow_up(ctx: Context, old: Ticket, requester: str, contract_id: str | None,
               mail: InboundMail, spool_id: int) -> Ticket:
    """Open a new ticket for a late reply, linked both ways in the audit log.

    It keeps the old ticket's priority and assignee; its line and contract type
    are routed as for any new ticket.
    """
    contract = ctx.config.contracts.get(contract_id or "")
    route = routing.decide(ctx.config, contract, sender=requester, subject=mail.subject)
    ticket = tickets.open_ticket(
        ctx.session, subject=strip_reply_prefixes(mail.subject) or old.subject, contract=contract,
        requester=requester, priority=Priority(old.priority), now=ctx.now,
        assignee=old.assignee, locale=old.locale,
        line=route.line.value, contract_type=route.contract_type,
    )
    prefix = ctx.config.mail.ticket_prefix
    tickets.audit(ctx.session, ticket.id, requester, "opened",
                  {"spool_id": spool_id, "follows": str(tickets.ref_of(old, prefix))}, ctx.now)
    tickets.audit(ctx.session, old.id, requester, "followed_up",
                  {"by": str(tickets.ref_of(ticket, prefix))}, ctx.now)
    return ticket


def _asks_to_close(ctx: Context, mail: InboundMail) -> bool:
    """Whether the customer's new text starts with a configured close phrase."""
    lines = [line.strip() for line in strip_reply(mail.text).splitlines() if line.strip()]
    if not lines:
        return False
    first = lines[0].casefold()
    return any(first == phrase.casefold() for phrase in ctx.config.mail.close_phrases)


def _add_colleagues(ctx: Context, ticket: Ticket, mail: InboundMail,
                    contract_id: str | None) -> None:
    """Colleagues of the same contract in To/Cc are copied on the ticket from now on."""
    if contract_id is None:
        return
    contract = ctx.config.contracts.get(contract_id)
    if contract is None:
        return
    ours = {a.lower() for a in ctx.config.mail.support_addresses}
    for address in (*mail.to, *mail.cc):
        if address in ours or address == ticket.requester or "+" in address.split("@")[0]:
            continue
        if contracts.belongs(contract, address):
            tickets.add_contact(ticket, address)


def announce(work: Work, ctx: Context) -> Work:
    """Acknowledge new tickets and tell engineers; robots get nothing.

    Suppressed addresses among everyone this mail may reach are looked up once.
    """
    assert work.mail is not None and work.ticket is not None
    mail, ticket = work.mail, work.ticket
    if work.event == "auto":
        # An auto-reply on a thread is kept as an article; nobody is mailed about it.
        stopped.record(ctx.session, kind="engineer_reply", recipients=[], reason=stopped.ROBOT,
                       now=ctx.now, ticket_id=ticket.id, detail=work.kind_reason)
        return work
    engineers: list[str] = []
    if work.event in _NOTICE_EVENTS:
        engineers = (routing.notice_recipients(ctx.config, ticket.contract_id, ticket.assignee)
                     or notify.engineers_for(ctx.notifier, ticket))
    # Both lookups are Core queries: nothing this mail buffered is flushed early.
    blocked: set[str] | None = None
    if work.event == "new":
        # The ack states the promised first-response time: stamp it now (the
        # pipeline's restamp after the chain finds the same due times), before
        # anything writes the new ticket, so its one INSERT carries them.
        sla_stamp.restamp(ctx.session, ctx.config, ticket, ctx.now)
        # One query: who is suppressed, and the caps of the acknowledgement.
        found = caps.gate(ctx.session, [ticket.requester, *engineers],
                          recipient=ticket.requester, kind="ack", ticket_id=ticket.id,
                          now=ctx.now)
        blocked = found.suppressed
        notify.acknowledge(
            ctx.session,
            ctx.notifier,
            ticket,
            to=ticket.requester,
            customer_name=mail.from_name,
            in_reply_to=mail.message_id,
            references=mail.references,
            now=ctx.now,
            suppressed=blocked,
            counts=found.counts,
        )
    elif engineers:
        blocked = suppression.suppressed_among(ctx.session, [ticket.requester, *engineers])
    if work.event in _NOTICE_EVENTS:
        notify.notify_engineers(
            ctx.session,
            ctx.notifier,
            ticket,
            event="reply" if work.event == "closed" else work.event,
            from_addr=mail.from_addr,
            from_name=mail.from_name,
            text=mail.text,
            attachments=[a.filename for a in mail.attachments],
            now=ctx.now,
            recipients=engineers,
            suggestions=(kb.suggest(ctx.knowledge, ctx.config.kb, ticket.subject, mail.text)
                         if work.event == "new" else ()),
            suppressed=blocked,
        )
    return work
