"""The engineer path: replies with commands, and mail that only claims an engineer.

An engineer's reply is all-or-nothing: every command line is validated and
applied (by the handlers in ``command_handlers``) inside a savepoint; if any is
refused, nothing changes, nothing goes to the customer, and the engineer gets
one result mail saying why. A mail that only *claims* to be from an engineer
changes nothing and warns the real one (the customer path finds it, since its
sender proved nothing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sqlalchemy import select

from mailticket.errors import CommandError
from mailticket.log import get as get_logger
from mailticket.mail import addresses
from mailticket.mail.quotes import strip_reply
from mailticket.model import ArticleKind, Direction, MailKind, Status
from mailticket.outbound import notify
from mailticket.policy import kb
from mailticket.policy.commands import CommandName, parse_commands
from mailticket.policy.thread_keys import thread_keys
from mailticket.processing import command_handlers
from mailticket.processing.work import Context, Disposition, Outcome, Work
from mailticket.store.schema import Article, Ticket
from mailticket.tickets import service as tickets

log = get_logger("engineer")


def refuse_forged(ctx: Context, work: Work, ticket: Ticket | None) -> Outcome:
    """A mail with an engineer's From: but no evidence: no effect, warn the real engineer."""
    assert work.mail is not None and work.auth is not None
    claimed = work.auth.principal.claimed_engineer or work.mail.from_addr
    notify.notice(
        ctx.session,
        ctx.notifier,
        template="forged_reply",
        to=claimed,
        context={
            "ticket_ref": str(tickets.ref_of(ticket, ctx.config.mail.ticket_prefix)) if ticket else "",
            "from_addr": work.mail.from_addr,
            "subject": work.mail.subject,
            "reason": work.auth.reason,
        },
        now=ctx.now,
    )
    tickets.audit(ctx.session, ticket.id if ticket else None, work.mail.from_addr,
                  "forged_reply_refused", {"reason": work.auth.reason,
                  "spool_id": work.spool_id}, ctx.now)
    log.warning("forged engineer mail refused", extra={"spool_id": work.spool_id,
                "claimed": claimed, "reason": work.auth.reason})
    return Outcome(Disposition.FORGED_ENGINEER, ticket.id if ticket else None, work.auth.reason)


def thread(work: Work, ctx: Context) -> Work | Outcome:
    """An engineer's mail continues the ticket its token names (or its thread headers)."""
    assert work.mail is not None and work.auth is not None
    keys = thread_keys(work.mail, ctx.config.mail.ticket_prefix)
    cited = tickets.find_by_message_ids(ctx.session, keys.message_ids) or tickets.find_by_numbers(
        ctx.session, keys.ticket_numbers
    )
    ticket = cited
    if work.auth.token_ticket_id is not None:
        ticket = tickets.follow_merges(ctx.session, ctx.session.get(Ticket, work.auth.token_ticket_id))
        if cited is not None and ticket is not None and cited.id != ticket.id:
            # A valid token pasted into another ticket's thread: the token binds one
            # ticket, so acting on the cited one would let a token travel.
            return _refuse_mismatch(ctx, work, ticket, cited)
    if ticket is None:
        log.info("engineer mail matches no ticket", extra={"spool_id": work.spool_id,
                 "from": work.mail.from_addr})
        return Outcome(Disposition.ENGINEER_NO_TICKET, detail=work.mail.subject)
    return dataclasses.replace(work, ticket=ticket)


def _refuse_mismatch(ctx: Context, work: Work, token_ticket: Ticket, cited: Ticket) -> Outcome:
    """The reply token names one ticket, the thread another: change neither, tell the engineer."""
    assert work.mail is not None and work.auth is not None
    engineer = work.auth.principal.address
    prefix = ctx.config.mail.ticket_prefix
    reason = (f"the reply token belongs to {tickets.ref_of(token_ticket, prefix)} but the mail "
              f"continues {tickets.ref_of(cited, prefix)}")
    _send_results(ctx, cited, engineer, [{"line": "", "ok": False, "message": reason}],
                  delivered=False)
    tickets.audit(ctx.session, cited.id, engineer, "token_mismatch_refused",
                  {"token_ticket": token_ticket.id, "spool_id": work.spool_id}, ctx.now,
                  work.auth.principal.evidence.value)
    return Outcome(Disposition.TOKEN_MISMATCH, cited.id, reason)


def apply(work: Work, ctx: Context) -> Work | Outcome:
    """Validate and apply every command, store the reply, copy the customer; all or nothing."""
    assert work.mail is not None and work.auth is not None and work.ticket is not None
    mail, ticket, engineer = work.mail, work.ticket, work.auth.principal.address
    evidence = work.auth.principal.evidence.value
    if work.kind != MailKind.NORMAL:
        return _keep_auto_reply(ctx, work)
    parsed = parse_commands(strip_reply(mail.text))
    results: list[dict[str, object]] = []
    errors: list[CommandError] = list(parsed.errors)
    internal = any(c.name == CommandName.INTERNAL for c in parsed.commands)
    body = kb.with_articles(ctx.knowledge, ticket.locale, parsed.body.strip(), parsed.commands)
    # Whether this mail reaches the customer: a status change it carries is then a
    # question to them (it may pause the SLA), otherwise an internal change.
    visible = bool(body) and not internal
    acting = command_handlers.CommandContext(ctx, ticket, engineer, evidence, visible)
    savepoint = ctx.session.begin_nested()
    for command in parsed.commands:
        try:
            message = command_handlers.apply(acting, command)
            results.append({"line": command.line, "ok": True, "message": message})
        except CommandError as exc:
            errors.append(exc)
    if errors:
        savepoint.rollback()
        for err in errors:
            results.append({"line": err.line, "ok": False, "message": err.reason})
        for result in results:
            if result["ok"]:
                result["ok"] = False
                result["message"] = "not applied: another command in this mail was refused"
        _send_results(ctx, ticket, engineer, results, delivered=False)
        tickets.audit(ctx.session, ticket.id, engineer, "commands_refused",
                      {"errors": [str(e) for e in errors]}, ctx.now, evidence)
        return Outcome(Disposition.COMMANDS_REFUSED, ticket.id)
    savepoint.commit()
    if ticket.assignee is None and not any(c.name == CommandName.ASSIGN for c in parsed.commands):
        # Whoever answers an unassigned ticket first owns it; later notices go to them.
        ticket.assignee = engineer
        tickets.audit(ctx.session, ticket.id, engineer, "assign", {"to": engineer, "auto": True},
                      ctx.now, evidence)
    kind = ArticleKind.NOTE if internal else ArticleKind.REPLY
    attachments = [(a.filename, a.content_type, a.data) for a in mail.attachments]
    if body or attachments:
        tickets.add_article(
            ctx.session, ticket, direction=Direction.IN, kind=kind, from_addr=engineer,
            to_addrs=[], subject=mail.subject, text=body, now=ctx.now,
            message_id=mail.message_id, spool_id=work.spool_id, author=engineer,
            evidence=evidence, attachments=attachments,
        )
    delivered = False
    if visible:
        _reply_to_customer(ctx, ticket, engineer, body, attachments)
        delivered = True
        if ticket.first_response_at is None:
            ticket.first_response_at = ctx.now
        if Status(ticket.status) == Status.NEW:
            tickets.change_status(ctx.session, ticket, Status.OPEN, actor=engineer,
                                  now=ctx.now, evidence=evidence)
    elif mail.message_id:
        tickets.index_message_id(ctx.session, mail.message_id, ticket.id, None, Direction.IN)
    if parsed.commands:
        _send_results(ctx, ticket, engineer, results, delivered=delivered)
    tickets.audit(ctx.session, ticket.id, engineer, "note" if internal else "reply",
                  {"commands": [c.line for c in parsed.commands], "delivered": delivered,
                   "spool_id": work.spool_id}, ctx.now, evidence)
    return dataclasses.replace(work, event=Disposition.ENGINEER_REPLY.code)


def _keep_auto_reply(ctx: Context, work: Work) -> Outcome:
    """An engineer's out-of-office (any RFC 3834 robot) answering a notice: kept, no effect.

    Automatic mail never acts (SECURITY.md R3.1), even with a valid token: no
    commands, no copy to the customer, no assignment, and the first response
    stays due. Without this, an engineer's vacation notice reached the customer
    as the engineer's answer and stopped the SLA timer.
    """
    assert work.mail is not None and work.auth is not None and work.ticket is not None
    engineer, evidence = work.auth.principal.address, work.auth.principal.evidence.value
    tickets.add_article(
        ctx.session, work.ticket, direction=Direction.IN, kind=ArticleKind.AUTO,
        from_addr=engineer, to_addrs=[], subject=work.mail.subject, text=work.mail.text,
        now=ctx.now, message_id=work.mail.message_id, spool_id=work.spool_id, author=engineer,
        evidence=evidence,
    )
    tickets.audit(ctx.session, work.ticket.id, engineer, "auto_reply_kept",
                  {"reason": work.kind_reason, "spool_id": work.spool_id}, ctx.now, evidence)
    return Outcome(Disposition.ENGINEER_AUTO, work.ticket.id, work.kind_reason)


def _customer_thread(ctx: Context, ticket: Ticket) -> tuple[str | None, list[str]]:
    """The customer's last Message-ID and their references, so our reply joins their thread."""
    ids = [
        mid
        for mid in ctx.session.scalars(
            select(Article.message_id)
            .where(Article.ticket_id == ticket.id, Article.kind == ArticleKind.CUSTOMER.value)
            .order_by(Article.id)
        )
        if mid
    ]
    return (ids[-1] if ids else None), ids[-10:]


def _reply_to_customer(
    ctx: Context, ticket: Ticket, engineer: str, body: str,
    attachments: Sequence[tuple[str, str, bytes]],
) -> None:
    person = ctx.config.engineers.get(engineer)
    show = ctx.config.mail.show_engineer_name and person is not None
    last, refs = _customer_thread(ctx, ticket)
    contacts = [c.address for c in ticket.contacts]
    notify.queue_mail(
        ctx.session, ctx.notifier, kind="reply", to=contacts[:1], cc=contacts[1:],
        template="reply", locale=ticket.locale,
        context={"ticket": notify.ticket_context(ctx.notifier, ticket), "text": body,
                 "engineer_name": person.name if show and person else ""},
        now=ctx.now, ticket=ticket, in_reply_to=last, references=refs,
        auto_submitted="no",
        from_name=f"{person.name} ({ctx.config.mail.from_name})" if show and person else None,
        attachments=attachments,
    )


def _send_results(ctx: Context, ticket: Ticket, engineer: str, results: list[dict[str, object]],
                  *, delivered: bool) -> None:
    person = ctx.config.engineers.get(engineer)
    # The result carries a fresh token, so the engineer can simply reply to retry.
    token = addresses.make_reply_token(ctx.config.mail.reply_token_secret, ticket.id, engineer,
                                       ctx.now.date())
    notify.queue_mail(
        ctx.session, ctx.notifier, kind="command_result", to=[engineer], template="command_result",
        reply_to=addresses.reply_address(ctx.notifier.support_address, token),
        locale=person.locale if person else ctx.config.mail.default_locale,
        context={"ticket": notify.ticket_context(ctx.notifier, ticket), "results": results,
                 "delivered_to_customer": delivered},
        now=ctx.now, ticket=ticket,
    )
