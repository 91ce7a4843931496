"""The engineer path: replies with commands, and mail that only claims an engineer.

An engineer's reply is all-or-nothing: every command line is validated and
applied (by the handlers in ``command_handlers``) inside a savepoint; if any is
refused, nothing changes, nothing goes to the customer, and the engineer gets
one result mail saying why. A mail that only *claims* to be from an engineer
changes nothing and warns the real one (the customer path finds it, since its
sender proved nothing).

Evidence levels (``[mail] engineer_evidence``): under ``token+authenticated``
a reply whose only evidence is the token and a matching From (no SMTP AUTH,
no trusted aligned DKIM/DMARC pass) is kept as an unverified internal note;
nothing reaches the customer and no command runs, because a token proves only
that someone saw one notice. Commands run once per (token, normalised text)
and only from a token younger than ``command_token_days``, so a replayed or
old command mail does nothing. Every refused piece of evidence is logged and
audited with its code (``record_refusals``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence

from sqlalchemy import select

from mailticket.config import EVIDENCE_AUTHENTICATED, engineer_evidence
from mailticket.errors import CommandError
from mailticket.log import get as get_logger
from mailticket.mail import addresses
from mailticket.mail.quotes import strip_reply
from mailticket.model import ArticleKind, Direction, MailKind, Status
from mailticket.outbound import notify
from mailticket.policy import kb
from mailticket.policy.auth import Refusal, Refused
from mailticket.policy.commands import CommandName, parse_commands
from mailticket.policy.thread_keys import thread_keys
from mailticket.processing import command_handlers
from mailticket.processing.work import Context, Disposition, Outcome, Work
from mailticket.store.schema import Article, AuditEvent, Ticket
from mailticket.tickets import service as tickets

log = get_logger("engineer")


def record_refusals(ctx: Context, work: Work, ticket_id: int | None,
                    refusals: Iterable[Refused]) -> None:
    """One structured log line and one audit event per refused piece of evidence.

    Without them a refused reply left no trace of why (issue 18): the admin
    and ``tickets show --json`` must be able to tell a stolen token from a
    missing signature.
    """
    assert work.mail is not None
    sender = work.mail.from_addr
    for refused in refusals:
        log.warning("engineer evidence refused", extra={
            "spool_id": work.spool_id, "reason": refused.code.value, "from": sender,
            "ticket_id": ticket_id, "detail": refused.detail})
        tickets.audit(ctx.session, ticket_id, sender or "(no From)", "evidence_refused",
                      {"reason": refused.code.value, "detail": refused.detail,
                       "spool_id": work.spool_id}, ctx.now)


def _cited_id(ctx: Context, work: Work, ticket: Ticket | None) -> int | None:
    """The ticket a refused mail was aimed at, for its audit event (it joins nothing)."""
    assert work.mail is not None and work.auth is not None
    if ticket is not None:
        return ticket.id
    if work.auth.token_owner_ticket_id is not None:
        return work.auth.token_owner_ticket_id
    keys = work.keys or thread_keys(work.mail, ctx.config.mail.ticket_prefix)
    cited = tickets.find_by_message_ids(ctx.session, keys.message_ids) or tickets.find_by_numbers(
        ctx.session, keys.ticket_numbers)
    return cited.id if cited is not None else None


def refuse_forged(ctx: Context, work: Work, ticket: Ticket | None) -> Outcome:
    """A mail with an engineer's From: but no evidence: no effect, warn the real engineer."""
    assert work.mail is not None and work.auth is not None
    record_refusals(ctx, work, _cited_id(ctx, work, ticket), work.auth.refusals)
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
    auth = work.auth
    if auth.refusals:
        known = auth.token_ticket_id or auth.token_owner_ticket_id or (cited.id if cited else None)
        record_refusals(ctx, work, known, auth.refusals)
    if auth.token_owner is not None and auth.token_ticket_id is None:
        # Another engineer's token: whatever else proves the sender, it binds that
        # engineer's notice, so nothing runs; the sender learns why.
        return _refuse_evidence(ctx, work, auth.token_owner_ticket_id, Refused(
            Refusal.TOKEN_OWNER_MISMATCH,
            f"the reply address belongs to {auth.token_owner}, not to {auth.principal.address}"),
            Disposition.TOKEN_MISMATCH, recorded=True)
    if work.auth.token_ticket_id is not None:
        ticket = tickets.follow_merges(ctx.session, tickets.get_for_update(ctx.session, work.auth.token_ticket_id))
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


def _refuse_evidence(ctx: Context, work: Work, ticket_id: int | None, refused: Refused,
                     disposition: Disposition, *, recorded: bool = False) -> Outcome:
    """Nothing runs; the engineer gets one mail saying why and how to resend."""
    assert work.mail is not None and work.auth is not None
    if not recorded:
        record_refusals(ctx, work, ticket_id, (refused,))
    ticket = ctx.session.get(Ticket, ticket_id) if ticket_id is not None else None
    _tell_engineer(ctx, work, ticket, refused)
    return Outcome(disposition, ticket_id, f"{refused.code}: {refused.detail}")


def _tell_engineer(ctx: Context, work: Work, ticket: Ticket | None, refused: Refused) -> None:
    assert work.mail is not None and work.auth is not None
    engineer = work.auth.principal.address
    person = ctx.config.engineers.get(engineer)
    notify.notice(
        ctx.session, ctx.notifier, template="evidence_refused", to=engineer,
        locale=person.locale if person else None,
        context={
            "ticket_ref": str(tickets.ref_of(ticket, ctx.config.mail.ticket_prefix))
            if ticket else "",
            "subject": work.mail.subject,
            "reason": refused.code.value,
            "detail": refused.detail,
        },
        now=ctx.now,
    )


def _keep_unverified(ctx: Context, work: Work) -> Outcome:
    """A token-only reply under ``token+authenticated``: an internal note marked unverified."""
    assert work.mail is not None and work.auth is not None and work.ticket is not None
    ticket, engineer = work.ticket, work.auth.principal.address
    refused = Refused(Refusal.WEAK_EVIDENCE,
                      "only a reply token and a matching From; no SMTP AUTH and no trusted "
                      "DKIM/DMARC pass aligned with the From domain")
    text = strip_reply(work.mail.text).strip()
    tickets.add_article(
        ctx.session, ticket, direction=Direction.IN, kind=ArticleKind.NOTE, from_addr=engineer,
        to_addrs=[], subject=work.mail.subject, text=f"[unverified] {text}", now=ctx.now,
        message_id=work.mail.message_id, spool_id=work.spool_id, author=engineer,
        evidence=work.auth.principal.evidence.value,
    )
    return _refuse_evidence(ctx, work, ticket.id, refused, Disposition.UNVERIFIED_NOTE)


def _replay_key(token: str, text: str) -> str:
    """What makes a command mail the same mail again: its token and its words."""
    normalised = " ".join(text.split()).lower()
    return hashlib.sha256(f"{token}\n{normalised}".encode()).hexdigest()


def _seen_replay(ctx: Context, ticket: Ticket, key: str) -> bool:
    # Few engineer mails per ticket: read their audit rows rather than index JSON.
    details = ctx.session.scalars(select(AuditEvent.detail).where(
        AuditEvent.ticket_id == ticket.id, AuditEvent.action.in_(("reply", "note"))))
    return any(isinstance(d, dict) and d.get("replay_key") == key for d in details)


def apply(work: Work, ctx: Context) -> Work | Outcome:
    """Validate and apply every command, store the reply, copy the customer; all or nothing."""
    assert work.mail is not None and work.auth is not None and work.ticket is not None
    mail, ticket, engineer = work.mail, work.ticket, work.auth.principal.address
    evidence = work.auth.principal.evidence.value
    if work.kind != MailKind.NORMAL:
        return _keep_auto_reply(ctx, work)
    if (not work.auth.verified
            and engineer_evidence(ctx.config) == EVIDENCE_AUTHENTICATED):
        return _keep_unverified(ctx, work)
    new_text = strip_reply(mail.text)
    parsed = parse_commands(new_text)
    replay_key = None
    if parsed.commands and work.auth.token is not None:
        replay_key = _replay_key(work.auth.token, new_text)
        if _seen_replay(ctx, ticket, replay_key):
            return _refuse_evidence(ctx, work, ticket.id, Refused(
                Refusal.REPLAYED, "these commands came with this reply token before"),
                Disposition.REPLAYED)
        issued = work.auth.token_issued
        limit = ctx.config.mail.command_token_days
        if issued is not None and (ctx.now.date() - issued).days > limit:
            return _refuse_evidence(ctx, work, ticket.id, Refused(
                Refusal.TOKEN_EXPIRED,
                f"commands need a reply token from the last {limit} days; this one is from "
                f"{issued.isoformat()}"), Disposition.COMMAND_TOKEN_EXPIRED)
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
                   "spool_id": work.spool_id, "replay_key": replay_key}, ctx.now, evidence)
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
