"""The stage table for one spool item: parse → classify → authenticate → thread →
apply_commands → persist → notify.

Each stage takes the :class:`Work` so far and returns either a new ``Work``
(go on) or an :class:`Outcome` (stop here, e.g. "duplicate", "bounce",
"unknown sender"). Expected outcomes are values, not exceptions; an exception
means a bug or an outage and is handled by the worker (retry, then quarantine).
All stages run inside the one transaction the worker gives them, so the
ticket, its articles and the outbox rows commit together with the spool row.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import select

from mailticket.errors import UnparseableMessage
from mailticket.log import get as get_logger
from mailticket.mail import classify as classify_mod
from mailticket.mail.parse import parse as parse_mail
from mailticket.model import Envelope, MailKind, PrincipalKind
from mailticket.outbound import notify
from mailticket.policy import auth as auth_mod
from mailticket.policy import monitoring
from mailticket.policy.thread_keys import thread_keys
from mailticket.processing import alerts as alert_tickets
from mailticket.processing import customer as customer_replies
from mailticket.processing import engineer as engineer_replies
from mailticket.processing import ratings as feedback
from mailticket.processing.work import Context, Outcome, Stage, Work, auth_of, mail_of
from mailticket.reports import incident
from mailticket.store.schema import QueueState, SpoolItem, Ticket
from mailticket.tickets import service as tickets
from mailticket.tickets import sla_stamp as sla_service

log = get_logger("pipeline")


def parse(work: Work, ctx: Context) -> Work | Outcome:
    """Raw bytes to InboundMail; unreadable mail is quarantined with a polite notice."""
    if work.source.startswith("imap-oversize"):
        return _too_large(work, ctx)
    try:
        mail = parse_mail(work.raw)
    except UnparseableMessage as exc:
        sender = work.envelope.mail_from
        if sender:
            notify.notice(
                ctx.session,
                ctx.notifier,
                template="unparseable",
                to=sender,
                context={"subject": "", "reason": str(exc)},
                now=ctx.now,
            )
        return Outcome(QueueState.QUARANTINED, "unparseable", detail=str(exc))
    # Nothing reads the raw mail after this; a 25 MB attachment is not kept twice.
    return dataclasses.replace(work, mail=mail, raw=b"")


def _too_large(work: Work, ctx: Context) -> Outcome:
    """An IMAP message over the size limit: only its headers were fetched."""
    try:
        mail = parse_mail(work.raw)
        subject, sender = mail.subject, mail.from_addr
    except UnparseableMessage:
        subject, sender = "", work.envelope.mail_from
    if sender:
        limit = max(a.max_message_size for a in ctx.config.imap) if ctx.config.imap else 0
        notify.notice(
            ctx.session,
            ctx.notifier,
            template="too_large",
            to=sender,
            context={
                "subject": subject,
                "size_mb": f"{work.size / 1048576:.1f}",
                "limit_mb": f"{limit / 1048576:.0f}",
            },
            now=ctx.now,
        )
    return Outcome(QueueState.REJECTED, "too_large", detail=subject)


def classify(work: Work, ctx: Context) -> Work | Outcome:
    """Bounces and our own mail coming back stop here; auto-replies go on, flagged."""
    mail = mail_of(work)
    if (alert := monitoring.recognise(ctx.config.contracts, mail, work.envelope)) is not None:
        return alert_tickets.handle(ctx, work, alert)  # robots' alerts never reach the classifier
    result = classify_mod.classify(
        mail,
        work.envelope,
        our_addresses=ctx.config.mail.support_addresses,
        loop_header_value=ctx.config.daemon.instance_id,
        message_id_domain=ctx.config.mail.message_id_domain,
    )
    if result.kind == MailKind.BOUNCE:
        return engineer_replies.record_bounce(ctx, work, mail, result.reason)
    if result.kind == MailKind.LOOP:
        log.warning("own mail came back; dropped", extra={"spool_id": work.spool_id,
                    "message_id": mail.message_id, "reason": result.reason})
        return Outcome(QueueState.DONE, "loop", detail=result.reason)
    return dataclasses.replace(work, kind=result.kind, kind_reason=result.reason)


def authenticate(work: Work, ctx: Context) -> Work | Outcome:
    """Who sent it, on what evidence; a bare From: proves nothing."""
    result = auth_mod.authenticate(mail_of(work), work.envelope, ctx.config, ctx.now.date())
    return dataclasses.replace(work, auth=result)


def thread(work: Work, ctx: Context) -> Work | Outcome:
    """Find the ticket this mail continues, refusing threads the sender may not join."""
    mail, who = mail_of(work), auth_of(work)
    keys = thread_keys(mail, ctx.config.mail.ticket_prefix)
    # One lookup answers "seen before?" and "which thread?".
    known = tickets.known_message_ids(
        ctx.session, [m for m in (mail.message_id, *keys.message_ids) if m])
    if mail.message_id and mail.message_id in known:
        return Outcome(QueueState.DONE, "duplicate", detail=mail.message_id)
    if (rated := feedback.from_token(ctx, work)) is not None:
        return rated  # a mail to a signed support+rate-… address rates a ticket, nothing else
    principal = who.principal
    if principal.kind == PrincipalKind.ENGINEER:
        return engineer_replies.thread(ctx, work)
    ticket = tickets.find_by_message_ids(ctx.session, keys.message_ids, known)
    if ticket is None:
        ticket = tickets.find_by_numbers(ctx.session, keys.ticket_numbers)
    if ticket is None and keys.message_ids and _earlier_mail_in_flight(ctx, work):
        # A reply overtook the mail it answers (two workers, or a retry): wait for
        # it rather than open a second ticket for one conversation.
        return Outcome(QueueState.QUEUED, "deferred", detail="waiting for earlier mail")
    if ticket is not None and not tickets.sender_belongs(
        ticket, principal.address, principal.contract_id
    ):
        log.warning(
            "sender may not join this ticket; treated as a new request",
            extra={"spool_id": work.spool_id, "ticket": ticket.id, "from": principal.address},
        )
        ticket = None
    if who.forged:
        return engineer_replies.refuse_forged(ctx, work, ticket)
    if ticket is None and work.kind != MailKind.NORMAL:
        return Outcome(QueueState.DONE, "auto_unthreaded", detail=work.kind_reason)
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
        return Outcome(QueueState.REJECTED, "unknown_sender", detail=principal.address)
    return dataclasses.replace(work, ticket=ticket)


DEFER_WINDOW = timedelta(minutes=2)


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


def apply_commands(work: Work, ctx: Context) -> Work | Outcome:
    """Engineer command lines change the ticket; customers' '#' lines stay plain text."""
    if auth_of(work).principal.kind == PrincipalKind.ENGINEER:
        return engineer_replies.apply(ctx, work)
    return work


def persist(work: Work, ctx: Context) -> Work | Outcome:
    """Store the customer's mail as a new ticket or an article on its thread."""
    if auth_of(work).principal.kind == PrincipalKind.ENGINEER:
        return work  # the engineer path persisted in apply_commands
    return customer_replies.persist(ctx, work)


def notify_stage(work: Work, ctx: Context) -> Work | Outcome:
    """Acknowledge new tickets and tell engineers; robots get nothing."""
    return customer_replies.announce(ctx, work)


STAGES: tuple[Stage, ...] = (
    parse,
    classify,
    authenticate,
    thread,
    apply_commands,
    persist,
    notify_stage,
)


def process(item: SpoolItem, ctx: Context) -> Outcome:
    """Run one spool item through every stage; the caller owns the transaction."""
    envelope = Envelope(
        mail_from=item.mail_from,
        rcpt_tos=tuple(item.rcpt_tos),
        peer=item.peer,
        auth_user=item.auth_user,
        source=item.source.split(":", 1)[0],
        received_at=item.created_at,
    )
    work: Work | Outcome = Work(
        spool_id=item.id, source=item.source, envelope=envelope, raw=item.raw, size=item.size
    )
    if item not in ctx.session:
        item.raw = b""  # the worker's detached copy: the mail is freed once parsed
    for stage in STAGES:
        assert isinstance(work, Work)
        work = stage(work, ctx)
        if isinstance(work, Outcome):
            _after_change(ctx, work.ticket_id)
            return work
    assert isinstance(work, Work)
    ticket_id = work.ticket.id if work.ticket is not None else None
    _after_change(ctx, ticket_id)
    return Outcome(QueueState.DONE, work.event or "processed", ticket_id)


def _after_change(ctx: Context, ticket_id: int | None) -> None:
    """After every mail that touched a ticket: restamp its SLA clock, and report an incident.

    One place covers every change a mail can make (opened, customer message, reply,
    status, priority, alert), and it runs after all of the mail's commands, so an
    incident report sees the ``#cause`` written in the same reply as ``#status resolved``.
    """
    ticket = ctx.session.get(Ticket, ticket_id) if ticket_id is not None else None
    if ticket is not None:
        sla_service.restamp(ctx.session, ctx.config, ticket, ctx.now)
        incident.report_if_due(ctx.session, ctx.notifier, ticket, ctx.now)
