"""Lists by mail (issue 16): engineers ask for their queue, contacts for their tickets.

An engineer mails ``support+queue@…`` or writes ``#queue [L2|acme|overdue]`` as
the first line (a reply to any notice will do) and gets their queue
(:mod:`mailticket.digest.queue`). The request needs the evidence an engineer
command needs: it is a stage at the head of the engineer path, so only a
proven engineer gets there, and the evidence level, another engineer's token
and an old token are checked as ``engineer.apply`` checks them. Anyone else
who asks for a queue, in the customer path, gets a polite refusal that names
no ticket.

A contact mails ``support+status@…``, or writes ``#status`` / ``#статус`` as the
only line of a new mail, and gets the open tickets of their contract they may
see (their own, or every one if the contract sets ``status_all_tickets``),
each with its status and the next time we owe them something. It is a stage
at the head of the customer path, after loops and duplicates, so a robot never
gets a list; anyone who is not a proven contact goes on to threading, which
answers an unknown sender with the usual notice and nothing else.

The answer is a fresh thread (no References), marked auto-generated, with a
stable ``List-Id`` so mail clients can file it, and goes through the outbox and
the suppression list like every other mail.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from mailticket.config import EVIDENCE_AUTHENTICATED, engineer_evidence
from mailticket.config.digest import parse_clock
from mailticket.digest import queue as engineer_queue
from mailticket.digest import rows
from mailticket.log import get as get_logger
from mailticket.mail import addresses
from mailticket.mail.quotes import strip_reply
from mailticket.model import Contract, MailKind, PrincipalKind, Status
from mailticket.outbound import notify, promise
from mailticket.outbound.caps import auto_mail_allowed
from mailticket.policy.auth import Authentication
from mailticket.processing.work import Context, Disposition, Outcome, Work, auth_of, mail_of
from mailticket.store.schema import DigestSetting, Ticket, TicketContact
from mailticket.tickets.service import ref_of

log = get_logger("requests")

# The single lines that ask for the status in a new mail (compared case-insensitively).
STATUS_WORDS = ("#status", "#статус")
# The first word of a line that asks for the queue, and of one that sets the digest.
QUEUE_WORDS = ("#queue", "#очередь")
DIGEST_WORDS = ("#digest", "#сводка")
_OFF, _ON = ("off", "выкл", "нет"), ("on", "вкл", "да")
# Status answers to one address per day; the global per-recipient cap applies as well.
STATUS_ANSWERS_PER_DAY = 10
_CLOSED = (Status.RESOLVED.value, Status.CLOSED.value)


def _new_lines(work: Work) -> list[str]:
    """The non-blank lines of the mail's new text (quotes and signature cut)."""
    return [line.strip() for line in strip_reply(mail_of(work).text).splitlines() if line.strip()]


def _to_request_address(work: Work, ctx: Context, word: str) -> bool:
    mail = mail_of(work)
    support = ctx.config.mail.support_addresses
    return any(addresses.request_word(address, support) == word
               for address in (*work.envelope.rcpt_tos, *mail.to, *mail.cc))


def queue_words(work: Work, ctx: Context) -> list[str] | None:
    """The filter words of a queue request (``#queue L2`` → ``["L2"]``), None if none asked."""
    lines = _new_lines(work)
    first = lines[0].split() if lines else []
    if first and first[0].casefold() in QUEUE_WORDS:
        return first[1:]
    return [] if _to_request_address(work, ctx, "queue") else None


def digest_words(work: Work) -> list[str] | None:
    """The arguments of ``#digest off`` / ``#digest 09:00`` on the first line, None if absent."""
    lines = _new_lines(work)
    first = lines[0].split() if lines else []
    return first[1:] if first and first[0].casefold() in DIGEST_WORDS else None


def asks_status(work: Work, ctx: Context) -> bool:
    """Whether the mail asks for the status: the ``+status`` address, or the word alone."""
    if _to_request_address(work, ctx, "status"):
        return True
    if _in_thread(work):
        return False  # the word counts in a new mail only; in a thread it is text
    lines = _new_lines(work)
    return len(lines) == 1 and lines[0].casefold() in STATUS_WORDS


def _in_thread(work: Work) -> bool:
    keys = work.keys
    return keys is not None and bool(keys.message_ids or keys.ticket_numbers)


def visible_tickets(ctx: Context, contract: Contract, address: str) -> list[Ticket]:
    """Open tickets of the contract the contact may see, oldest first."""
    query = select(Ticket).where(Ticket.contract_id == contract.id,
                                 Ticket.status.not_in(_CLOSED))
    if not contract.status_all_tickets:
        copied = select(TicketContact.ticket_id).where(TicketContact.address == address)
        query = query.where(or_(Ticket.requester == address, Ticket.id.in_(copied)))
    return list(ctx.session.scalars(query.order_by(Ticket.created_at, Ticket.id)))


def status_row(ctx: Context, ticket: Ticket) -> dict[str, Any]:
    """One line of the status answer."""
    return {
        "ref": str(ref_of(ticket, ctx.config.mail.ticket_prefix)),
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "next": promise.next_due(ctx.config, ticket),
    }


def answer_customer(work: Work, ctx: Context) -> Work | Outcome:
    """Refuse a queue request, answer a contact's status request; the rest goes on."""
    if work.kind != MailKind.NORMAL:
        return work  # robots get no lists and no refusals
    if (queue_words(work, ctx) is not None
            and (auth_of(work).forged or not _in_thread(work)
                 or _to_request_address(work, ctx, "queue"))):
        return refuse_queue(work, ctx, "sender not proven to be an engineer")
    if not asks_status(work, ctx):
        return work
    return answer_status(work, ctx)


def answer_status(work: Work, ctx: Context) -> Work | Outcome:
    """Answer a contact's status request; anyone else goes on to threading."""
    who = auth_of(work)
    principal = who.principal
    contract = ctx.config.contracts.get(principal.contract_id or "")
    if who.forged or principal.kind != PrincipalKind.CUSTOMER or contract is None:
        # Not a proven contact: threading answers as for any mail (unknown sender
        # notice, or the forged-engineer refusal) and reveals no ticket.
        return work
    address = principal.address
    if auto_mail_allowed(ctx.session, ctx.config.mail, address, "status_answer", ctx.now,
                         per_day=STATUS_ANSWERS_PER_DAY):
        listed = [status_row(ctx, t) for t in visible_tickets(ctx, contract, address)]
        notify.queue_mail(
            ctx.session, ctx.notifier, kind="status_answer", to=[address],
            template="status_answer", locale=contract.locale,
            context={"contract_name": contract.name, "tickets": listed,
                     "all_tickets": contract.status_all_tickets,
                     "support_address": ctx.notifier.support_address},
            now=ctx.now, auto_submitted="auto-generated",
            extra_headers={"List-Id": rows.list_id(ctx.notifier.domain, "status")},
        )
    log.info("status answered", extra={"spool_id": work.spool_id, "from": address,
                                        "contract": contract.id})
    return Outcome(Disposition.STATUS_ANSWERED, detail=contract.id)


def refuse_queue(work: Work, ctx: Context, reason: str) -> Outcome:
    """A polite refusal to whoever the From names; it lists nothing and is rate-limited."""
    mail = mail_of(work)
    notify.notice(
        ctx.session, ctx.notifier, template="queue_refused", to=mail.from_addr,
        context={"subject": mail.subject, "support_address": ctx.notifier.support_address},
        now=ctx.now,
    )
    log.warning("queue request refused", extra={"spool_id": work.spool_id,
                "from": mail.from_addr, "reason": reason, "auth": auth_of(work).reason})
    return Outcome(Disposition.QUEUE_REFUSED, detail=reason)


def _queue_refusal(ctx: Context, auth: Authentication) -> str | None:
    """Why a proven engineer's queue request may not be answered, as for a command; None if it may."""
    if auth.token_owner is not None and auth.token_ticket_id is None:
        return f"reply token of {auth.token_owner}"
    if not auth.verified and engineer_evidence(ctx.config) == EVIDENCE_AUTHENTICATED:
        return "only a reply token and a matching From"
    issued, limit = auth.token_issued, ctx.config.mail.command_token_days
    if issued is not None and not auth.verified and (ctx.now.date() - issued).days > limit:
        return f"reply token from {issued.isoformat()}"
    return None


def answer_queue(work: Work, ctx: Context) -> Work | Outcome:
    """Answer an engineer's ``#queue``; any other engineer mail goes on down its path."""
    if work.kind != MailKind.NORMAL:
        return work
    if (setting := digest_words(work)) is not None:
        return set_digest(work, ctx, setting)
    words = queue_words(work, ctx)
    if words is None:
        return work
    auth = auth_of(work)
    engineer = ctx.config.engineers.get(auth.principal.address)
    refusal = _queue_refusal(ctx, auth)
    if engineer is None or refusal is not None:
        return refuse_queue(work, ctx, refusal or "not a configured engineer")
    wanted = engineer_queue.parse_filter(ctx.config, words)
    sections = engineer_queue.sections(ctx.session, ctx.config, engineer, ctx.now, wanted)
    notify.queue_mail(
        ctx.session, ctx.notifier, kind="queue_answer", to=[engineer.address],
        template="queue_answer", locale=engineer.locale,
        context={"engineer_name": engineer.name,
                 "line": (wanted.line or engineer.line).value,
                 "filters": wanted.describe(), "unknown": list(wanted.unknown),
                 "now": ctx.now, "timezone": promise.DEFAULT_TIMEZONE,
                 "sections": [{"name": s.name, "rows": s.rows} for s in sections]},
        now=ctx.now, auto_submitted="auto-generated",
        extra_headers={"List-Id": rows.list_id(ctx.notifier.domain, "queue")},
    )
    log.info("queue answered", extra={"spool_id": work.spool_id, "engineer": engineer.address,
                                       "evidence": auth.principal.evidence.value})
    return Outcome(Disposition.QUEUE_ANSWERED, detail=" ".join(wanted.describe()))


def set_digest(work: Work, ctx: Context, words: list[str]) -> Outcome:
    """``#digest off|on|HH:MM``: store the engineer's own digest setting, and confirm it.

    Same evidence as a queue request; the confirmation is the queue itself, so
    the engineer sees at once what tomorrow's digest will hold.
    """
    auth = auth_of(work)
    engineer = ctx.config.engineers.get(auth.principal.address)
    refusal = _queue_refusal(ctx, auth)
    if engineer is None or refusal is not None:
        return refuse_queue(work, ctx, refusal or "not a configured engineer")
    word = words[0].casefold() if words else "on"
    at = parse_clock(word) if word not in (*_OFF, *_ON) else None
    if word not in (*_OFF, *_ON) and at is None:
        return _digest_result(work, ctx, engineer.address, engineer.locale, error=word)
    row = ctx.session.get(DigestSetting, engineer.address)
    if row is None:
        row = DigestSetting(engineer=engineer.address, enabled=True, updated_at=ctx.now)
        ctx.session.add(row)
    row.enabled = word not in _OFF
    row.at = at.strftime("%H:%M") if at is not None else (row.at if word in _ON else None)
    row.updated_at = ctx.now
    log.info("digest setting", extra={"engineer": engineer.address, "enabled": row.enabled,
                                       "at": row.at})
    return _digest_result(work, ctx, engineer.address, engineer.locale, enabled=row.enabled,
                          at=row.at)


def _digest_result(work: Work, ctx: Context, engineer: str, locale: str, *,
                   enabled: bool = False, at: str | None = None, error: str = "") -> Outcome:
    notify.queue_mail(
        ctx.session, ctx.notifier, kind="digest_setting", to=[engineer],
        template="digest_setting", locale=locale,
        context={"enabled": enabled, "at": at or "", "error": error,
                 "support_address": ctx.notifier.support_address},
        now=ctx.now, auto_submitted="auto-generated",
        extra_headers={"List-Id": rows.list_id(ctx.notifier.domain, "digest")},
    )
    return Outcome(Disposition.DIGEST_SET, detail=error or ("off" if not enabled else at or "on"))
