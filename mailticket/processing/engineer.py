"""The engineer's side of the pipeline: replies with commands, forged replies, bounces.

An engineer's reply is all-or-nothing: every command line is validated and
applied inside a savepoint; if any is refused, nothing changes, nothing goes
to the customer, and the engineer gets one result mail saying why. A mail that
only *claims* to be from an engineer changes nothing and warns the real one.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from mailticket.errors import CommandError
from mailticket.log import get as get_logger
from mailticket.mail import addresses
from mailticket.mail.parse import InboundMail
from mailticket.mail.quotes import strip_reply
from mailticket.model import ArticleKind, Direction, Line, MailKind, Priority, Status
from mailticket.outbound import notify
from mailticket.policy import kb
from mailticket.policy.commands import Command, parse_commands
from mailticket.policy.thread_keys import thread_keys
from mailticket.processing.work import Context, Outcome, Work
from mailticket.store.schema import Article, OutboxItem, QueueState, Ticket
from mailticket.tickets import service as tickets

log = get_logger("engineer")


def _outcome(state: str, code: str, ticket_id: int | None = None, detail: str = "") -> Outcome:
    return Outcome(state, code, ticket_id, detail)


def record_bounce(ctx: Context, work: Work, mail: InboundMail, reason: str) -> Outcome:
    """Match a bounce to the outbox row named by its VERP address and record the failures.

    Only a VERP address with a valid MAC counts, so a forged bounce changes
    nothing. Each failed recipient of that row is recorded in ``suppression``
    (repeated permanent failures stop mail to it) and on the ticket's audit log.
    Addresses the DSN names that the row never mailed are ignored: a recipient
    of our mail knows its VERP address and must not switch off someone else.
    """
    from mailticket.outbound import suppression

    secret = ctx.config.mail.reply_token_secret
    outbox_id = None
    for rcpt in work.envelope.rcpt_tos:
        outbox_id = addresses.parse_verp(secret, rcpt)
        if outbox_id is not None:
            break
    row = ctx.session.get(OutboxItem, outbox_id) if outbox_id is not None else None
    if row is None:
        log.info("bounce without a valid VERP address", extra={"spool_id": work.spool_id})
        return _outcome(QueueState.DONE, "bounce_unmatched", detail=reason)
    mailed = {addresses.normalise_address(r): r for r in row.rcpt_tos}
    failed: dict[str, str] = {}
    for dsn in mail.dsn:
        address = mailed.get(addresses.normalise_address(dsn.address))
        if address is None:
            continue
        permanent = suppression.is_permanent(dsn.status, dsn.action)
        failed[address] = f"{dsn.status} {dsn.diagnostic}".strip() or dsn.action
        suppression.record_failure(ctx.session, address, source="bounce",
                                   detail=failed[address], now=ctx.now, permanent=permanent,
                                   outbox_id=row.id, ticket_id=row.ticket_id)
    if not failed and len(row.rcpt_tos) == 1:
        # No report naming an address we mailed (none readable, or an alias that
        # forwarded elsewhere), but VERP names a one-recipient mail: it failed.
        permanent = not mail.dsn or any(
            suppression.is_permanent(d.status, d.action) for d in mail.dsn)
        failed[row.rcpt_tos[0]] = "bounced"
        suppression.record_failure(ctx.session, row.rcpt_tos[0], source="bounce",
                                   detail=reason, now=ctx.now, permanent=permanent,
                                   outbox_id=row.id, ticket_id=row.ticket_id)
    if row.ticket_id is not None:
        tickets.audit(
            ctx.session,
            row.ticket_id,
            "bounce",
            "delivery_failed",
            {"outbox_id": row.id, "message_id": row.message_id, "recipients": failed},
            ctx.now,
        )
    log.warning("delivery failed (bounce)", extra={"spool_id": work.spool_id,
                "outbox_id": row.id, "ticket": row.ticket_id, "recipients": failed})
    return _outcome(QueueState.DONE, "bounce", row.ticket_id, reason)


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
            "ticket_ref": f"{ctx.config.mail.ticket_prefix}-{ticket.id}" if ticket else "",
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
    return _outcome(QueueState.REJECTED, "forged_engineer", ticket.id if ticket else None,
                    work.auth.reason)


def thread(ctx: Context, work: Work) -> Work | Outcome:
    """An engineer's mail continues the ticket its token names (or its thread headers)."""
    import dataclasses

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
        return _outcome(QueueState.REJECTED, "engineer_no_ticket", detail=work.mail.subject)
    return dataclasses.replace(work, ticket=ticket)


def _refuse_mismatch(ctx: Context, work: Work, token_ticket: Ticket, cited: Ticket) -> Outcome:
    """The reply token names one ticket, the thread another: change neither, tell the engineer."""
    assert work.mail is not None and work.auth is not None
    engineer = work.auth.principal.address
    prefix = ctx.config.mail.ticket_prefix
    reason = (f"the reply token belongs to {prefix}-{token_ticket.id} but the mail continues "
              f"{prefix}-{cited.id}")
    _send_results(ctx, cited, engineer, [{"line": "", "ok": False, "message": reason}],
                  delivered=False)
    tickets.audit(ctx.session, cited.id, engineer, "token_mismatch_refused",
                  {"token_ticket": token_ticket.id, "spool_id": work.spool_id}, ctx.now,
                  work.auth.principal.evidence.value)
    return _outcome(QueueState.REJECTED, "token_mismatch", cited.id, reason)


def apply(ctx: Context, work: Work) -> Work | Outcome:
    """Validate and apply every command, store the reply, copy the customer; all or nothing."""
    assert work.mail is not None and work.auth is not None and work.ticket is not None
    mail, ticket, engineer = work.mail, work.ticket, work.auth.principal.address
    evidence = work.auth.principal.evidence.value
    if work.kind != MailKind.NORMAL:
        return _keep_auto_reply(ctx, work)
    parsed = parse_commands(strip_reply(mail.text))
    results: list[dict[str, object]] = []
    errors: list[CommandError] = list(parsed.errors)
    internal = any(c.name == "internal" for c in parsed.commands)
    savepoint = ctx.session.begin_nested()
    for command in parsed.commands:
        try:
            message = _apply_one(ctx, ticket, command, engineer, evidence)
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
        return _outcome(QueueState.DONE, "commands_refused", ticket.id)
    savepoint.commit()
    if ticket.assignee is None and not any(c.name == "assign" for c in parsed.commands):
        # Whoever answers an unassigned ticket first owns it; later notices go to them.
        ticket.assignee = engineer
        tickets.audit(ctx.session, ticket.id, engineer, "assign", {"to": engineer, "auto": True},
                      ctx.now, evidence)
    body = kb.with_articles(ctx.config, ticket.locale, parsed.body.strip(), parsed.commands)
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
    if body and not internal:
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
    import dataclasses

    return dataclasses.replace(work, event="engineer_reply")


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
    return _outcome(QueueState.DONE, "engineer_auto", work.ticket.id, work.kind_reason)


def _apply_one(ctx: Context, ticket: Ticket, command: Command, engineer: str, evidence: str) -> str:
    """Apply one command or raise CommandError with a reason the engineer can act on."""
    name, arg, now, session = command.name, command.arg or "", ctx.now, ctx.session
    if name == "status" or name == "close":
        target = Status(arg) if name == "status" else Status.CLOSED
        if not tickets.change_status(session, ticket, target, actor=engineer, now=now,
                                     evidence=evidence):
            raise CommandError(command.line, f"cannot change status from {ticket.status} to {target}")
        return f"status is now {target}"
    if name == "priority":
        old = ticket.priority
        ticket.priority = Priority(arg).value
        tickets.audit(session, ticket.id, engineer, "priority", {"from": old, "to": arg}, now, evidence)
        return f"priority is now {arg}"
    if name == "assign":
        address = arg.lower()
        if address not in ctx.config.engineers:
            raise CommandError(command.line, f"{address} is not a configured engineer")
        ticket.assignee = address
        tickets.audit(session, ticket.id, engineer, "assign", {"to": address}, now, evidence)
        return f"assigned to {address}"
    if name == "line":
        line = Line(arg)
        old = ticket.line
        ticket.line = line.value
        tickets.audit(session, ticket.id, engineer, "line", {"from": old, "to": line.value}, now, evidence)
        return f"line is now {line.value}"
    if name == "internal":
        return "kept as an internal note; nothing sent to the customer"
    if name == "time":
        ticket.time_spent_minutes += int(arg)
        tickets.audit(session, ticket.id, engineer, "time", {"minutes": int(arg)}, now, evidence)
        return f"{arg} min recorded ({ticket.time_spent_minutes} in total)"
    if name in ("cc", "uncc"):
        return _cc(ctx, ticket, command, engineer, evidence)
    if name == "merge":
        return _merge(ctx, ticket, command, engineer, evidence)
    if name in ("cause", "actions"):
        tickets.audit(session, ticket.id, engineer, name, {"text": arg}, now, evidence)
        return f"{name} recorded"
    if name == "kb":
        return kb.check_command(ctx.config, ticket.locale, command)
    raise CommandError(command.line, f"#{name} is not available yet")


def _cc(ctx: Context, ticket: Ticket, command: Command, engineer: str, evidence: str) -> str:
    address = (command.arg or "").lower()
    contract = ctx.config.contracts.get(ticket.contract_id or "")
    if command.name == "uncc":
        if not tickets.remove_contact(ticket, address):
            raise CommandError(command.line, f"{address} is not copied on this ticket")
        tickets.audit(ctx.session, ticket.id, engineer, "uncc", {"address": address}, ctx.now, evidence)
        return f"{address} will no longer be copied"
    domain = address.rpartition("@")[2]
    if contract is None or not (
        address in contract.contacts or any(domain == d or domain.endswith("." + d) for d in contract.domains)
    ):
        raise CommandError(command.line, f"{address} does not belong to the ticket's contract")
    tickets.add_contact(ticket, address)
    tickets.audit(ctx.session, ticket.id, engineer, "cc", {"address": address}, ctx.now, evidence)
    return f"{address} will be copied"


def _merge(ctx: Context, ticket: Ticket, command: Command, engineer: str, evidence: str) -> str:
    number = tickets.parse_ref(command.arg or "", ctx.config.mail.ticket_prefix)
    target = ctx.session.get(Ticket, number) if number is not None else None
    if target is None or target.id == ticket.id:
        raise CommandError(command.line, f"no other ticket {command.arg}")
    if target.contract_id != ticket.contract_id:
        raise CommandError(command.line, "tickets of different contracts cannot be merged")
    ticket.merged_into = target.id
    tickets.change_status(ctx.session, ticket, Status.CLOSED, actor=engineer, now=ctx.now,
                          evidence=evidence)
    for contact in ticket.contacts:
        tickets.add_contact(target, contact.address)
    tickets.audit(ctx.session, ticket.id, engineer, "merge", {"into": target.id}, ctx.now, evidence)
    return f"merged into {ctx.config.mail.ticket_prefix}-{target.id}"


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
