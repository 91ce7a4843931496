"""The stages more than one path runs: the intake every message passes, and the
two checks at the head of every path that may answer a person.

Intake only reads and annotates (what the mail is, who sent it), so that the
dispatch table can route on facts; the only exits before routing are a mail
too large or too broken to read. Loops and re-deliveries stop at the head of
the ratings, engineer and customer paths, in that order, as they always have.
"""

from __future__ import annotations

import dataclasses

from mailticket.errors import UnparseableMessage
from mailticket.log import get as get_logger
from mailticket.mail import classify as classify_mod
from mailticket.mail.parse import parse as parse_mail
from mailticket.model import MailKind
from mailticket.outbound import notify
from mailticket.policy import auth as auth_mod
from mailticket.policy import monitoring
from mailticket.policy.thread_keys import thread_keys
from mailticket.processing import engineer
from mailticket.processing.work import Context, Disposition, Outcome, Work, mail_of
from mailticket.tickets import service as tickets

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
        return Outcome(Disposition.UNPARSEABLE, detail=str(exc))
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
    return Outcome(Disposition.TOO_LARGE, detail=subject)


def classify(work: Work, ctx: Context) -> Work:
    """A monitoring robot's alert, a bounce, our own mail back, an auto-reply, or normal."""
    mail = mail_of(work)
    if (alert := monitoring.recognise(ctx.config.contracts, mail, work.envelope)) is not None:
        return dataclasses.replace(work, alert=alert)  # robots' alerts never reach the classifier
    result = classify_mod.classify(
        mail,
        work.envelope,
        our_addresses=ctx.config.mail.support_addresses,
        loop_header_value=ctx.config.daemon.instance_id,
        message_id_domain=ctx.config.mail.message_id_domain,
    )
    return dataclasses.replace(work, kind=result.kind, kind_reason=result.reason)


def authenticate(work: Work, ctx: Context) -> Work | Outcome:
    """Who sent it, on what evidence; a bare From: proves nothing.

    A mail with two From (Subject, Message-ID …) fields proves nothing about
    anyone, customer or engineer: it is quarantined for the admin, unanswered.
    """
    result = auth_mod.authenticate(mail_of(work), work.envelope, ctx.config, ctx.now.date())
    work = dataclasses.replace(work, auth=result)
    if result.ambiguous is not None:
        engineer.record_refusals(ctx, work, None, (result.ambiguous,))
        return Outcome(Disposition.AMBIGUOUS_HEADERS,
                       detail=f"{result.ambiguous.code}: {result.ambiguous.detail}")
    return work


def drop_loop(work: Work, ctx: Context) -> Work | Outcome:
    """Our own mail coming back is dropped before anyone could be answered."""
    if work.kind != MailKind.LOOP:
        return work
    log.warning("own mail came back; dropped", extra={"spool_id": work.spool_id,
                "message_id": mail_of(work).message_id, "reason": work.kind_reason})
    return Outcome(Disposition.LOOP, detail=work.kind_reason)


def drop_duplicate(work: Work, ctx: Context) -> Work | Outcome:
    """A Message-ID we already store is a re-delivery (or To + Cc): it counts once."""
    mail = mail_of(work)
    keys = thread_keys(mail, ctx.config.mail.ticket_prefix)
    # One lookup answers "seen before?" here and "which thread?" in the customer path.
    known = tickets.known_message_ids(
        ctx.session, [m for m in (mail.message_id, *keys.message_ids) if m])
    if mail.message_id and mail.message_id in known:
        return Outcome(Disposition.DUPLICATE, detail=mail.message_id)
    return dataclasses.replace(work, keys=keys, known_ids=known)
