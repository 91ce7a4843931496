"""Customer feedback: ask for a 1-5 rating on resolution, record it, raise the alarm when low.

When an engineer resolves a ticket, the customer gets a short request with a
1-5 scale. They either reply with a digit (and, if they like, a comment), or
click a ``mailto:`` link whose address carries a signed token,
``support+rate-<ticket>-<score>-<mac>@domain`` (built and checked in
``mail.addresses`` by the one scheme of ``mail.signed``), so nobody can rate a
ticket by guessing addresses, and a forged token has no effect at all. A rating
at or below ``feedback.low_rating`` is mailed to the contract's dedicated
engineer and to the engineers of ``feedback.notify_lines`` (the L3 lead), who
can reopen the case. A rating reply never reopens a resolved ticket.

A reply counts as the answer to the request when its In-Reply-To names the
request's Message-ID (kept on its outbox row): then a leading score followed by
any text is the rating ("5 Спасибо!", "1 ужасно"). Any other reply rates only
with a score alone on its first line, so "1 декабря вернусь" stays a reply.
Only the person the request was sent to rates, by reply or by link; a
colleague's answer to it is kept on the ticket as a comment and does not
reopen it, and a colleague's mail to a rating link is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import select

from mailticket.log import get as get_logger
from mailticket.mail.addresses import (
    make_reply_token,
    parse_rating_address,
    rating_address,
    reply_address,
)
from mailticket.mail.quotes import strip_reply
from mailticket.model import ArticleKind, Direction, MailKind, PrincipalKind, Status
from mailticket.outbound import caps, notify
from mailticket.processing.work import Context, Disposition, Outcome, Work
from mailticket.store.schema import OutboxItem, Ticket
from mailticket.tickets import service as tickets

log = get_logger("feedback")

SCORES = (1, 2, 3, 4, 5)
# The score itself: "5", "5/5", "4 из 5"; not "12", "1.5", "1:30" or "1/2".
_SCORE = r"([1-5])(?:\s*(?:/|из|of|out of)\s*5\b|(?!\d|[.,:/]\d))"
# "5", "5.", "5/5", "4 из 5", "3 - so so", "5: спасибо!"; not "1 декабря вернусь".
_DIGIT_LINE = re.compile(
    rf"^\s*{_SCORE}\s*[.!)]?\s*(?:[-–—:,]\s*(?P<comment>.*))?$", re.IGNORECASE
)
# In an answer to the request: a leading score and any text ("5 Спасибо!", "1 ужасно"),
# but not a longer number, a decimal, a time or a fraction ("12", "1.5", "1:30", "1/2").
_LEADING_SCORE = re.compile(
    rf"^\s*{_SCORE}\s*[.!)]?\s*[-–—:,]?\s*(?P<comment>.*)$", re.IGNORECASE
)
MAX_COMMENT = 2000
# The outbox kind of the request; a reply whose In-Reply-To names one answers it.
REQUEST_KIND = "rating_request"


def parse_rating_reply(text: str, *, answers_request: bool = False) -> tuple[int, str] | None:
    """(score, comment) when the new text starts with a 1-5 score; else None.

    In an ordinary reply the score must stand alone on its line (with an
    optional separator before a comment); in an answer to the rating request
    any text may follow it.
    """
    lines = [line.strip() for line in strip_reply(text).splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return None
    match = _DIGIT_LINE.match(lines[0])
    if match is None and answers_request:
        match = _LEADING_SCORE.match(lines[0])
    if match is None:
        return None
    comment = "\n".join([match.group("comment") or "", *lines[1:]]).strip()
    return int(match.group(1)), comment[:MAX_COMMENT]


def request_rating(ctx: Context, ticket: Ticket | None, event: str) -> None:
    """After an engineer resolved (or closed) a ticket in this mail, ask the customer to rate it."""
    if (
        ticket is None or event != Disposition.ENGINEER_REPLY.code
        or not ctx.config.feedback.enabled
        or Status(ticket.status) not in (Status.RESOLVED, Status.CLOSED)
        or ticket.resolved_at != ctx.now or ticket.alert_key is not None
        or ticket.merged_into is not None or not ticket.contacts
    ):
        return
    to = ticket.contacts[0].address
    if not caps.auto_mail_allowed(ctx.session, ctx.config.mail, to, "rating_request", ctx.now,
                                  about=ticket.id):
        return
    secret, support = ctx.config.mail.reply_token_secret, ctx.notifier.support_address
    links = [{"score": s, "address": rating_address(support, secret, ticket.id, s)} for s in SCORES]
    notify.queue_mail(
        ctx.session, ctx.notifier, kind=REQUEST_KIND, to=[to], template="rating_request",
        locale=ticket.locale, now=ctx.now, ticket=ticket,
        context={"ticket": notify.ticket_context(ctx.notifier, ticket), "links": links},
    )
    ticket.rating_requested_at = ctx.now
    tickets.audit(ctx.session, ticket.id, "mailticket", "rating_requested", {"to": to}, ctx.now)


def ask(work: Work, ctx: Context) -> Work:
    """Last stage of the engineer path: a reply that resolved the ticket asks for a rating."""
    request_rating(ctx, work.ticket, work.event)
    return work


def rating_link(secret: str, work: Work) -> tuple[str, tuple[int, int] | str] | None:
    """The first ``support+rate-…`` address among the envelope recipients, To and Cc,
    with what it says: (ticket, score), or "forged" when its MAC fails."""
    assert work.mail is not None
    for address in (*work.envelope.rcpt_tos, *work.mail.to, *work.mail.cc):
        parsed = parse_rating_address(secret, address)
        if parsed is not None:
            return address, parsed
    return None


def from_link(work: Work, ctx: Context) -> Outcome:
    """Mail to a ``rate-`` address: a valid token rates, a forged one is refused."""
    assert work.mail is not None and work.auth is not None
    mail, principal = work.mail, work.auth.principal
    link = rating_link(ctx.config.mail.reply_token_secret, work)
    assert link is not None, "only mail to a rate- address is routed to the ratings path"
    address, parsed = link
    if isinstance(parsed, str):
        log.warning("rating token refused", extra={"spool_id": work.spool_id,
                    "from": principal.address})
        tickets.audit(ctx.session, None, principal.address or "unknown",
                      "rating_token_refused", {"spool_id": work.spool_id}, ctx.now)
        return Outcome(Disposition.RATING_FORGED, detail=address)
    ticket_id, score = parsed
    ticket = tickets.follow_merges(ctx.session, tickets.get_for_update(ctx.session, ticket_id))
    if ticket is None or principal.kind != PrincipalKind.CUSTOMER or not tickets.sender_belongs(
        ticket, principal.address, principal.contract_id
    ) or not _asked(principal.address, _latest_request(ctx, ticket)):
        return Outcome(Disposition.RATING_REFUSED, ticket_id, principal.address)
    comment = strip_reply(mail.text).strip()[:MAX_COMMENT]
    typed = parse_rating_reply(mail.text, answers_request=True)
    if typed is not None and typed[0] == score:
        comment = typed[1]  # "5 Спасибо!" to the rate-5 address: the comment is "Спасибо!"
    record(ctx, work, ticket, score, comment, via="link")
    return Outcome(Disposition.RATED, ticket.id, str(score))


def from_reply(ctx: Context, work: Work) -> Outcome | None:
    """A reply by the person asked to rate that starts with a score rates (no reopening)."""
    assert work.mail is not None and work.auth is not None
    ticket = work.ticket
    if ticket is None or not _may_answer(work, ticket):
        return None
    answered = _answered_request(ctx, work, ticket)
    asked = answered if answered is not None else _latest_request(ctx, ticket)
    if not _asked(work.auth.principal.address, asked):
        return None
    parsed = parse_rating_reply(work.mail.text, answers_request=answered is not None)
    if parsed is None:
        return None
    record(ctx, work, ticket, parsed[0], parsed[1], via="reply")
    return Outcome(Disposition.RATED, ticket.id, str(parsed[0]))


def colleague_answer(ctx: Context, work: Work) -> bool:
    """Whether this is someone else's answer to the rating request (audited here).

    It is kept as a comment on the ticket: it neither rates nor reopens it.
    """
    assert work.auth is not None
    ticket, sender = work.ticket, work.auth.principal.address
    if ticket is None or not _may_answer(work, ticket):
        return False
    answered = _answered_request(ctx, work, ticket)
    if answered is None or _asked(sender, answered):
        return False
    tickets.audit(ctx.session, ticket.id, sender or "unknown", "rating_answer_not_counted",
                  {"asked": list(answered), "spool_id": work.spool_id}, ctx.now)
    return True


def _may_answer(work: Work, ticket: Ticket) -> bool:
    """A customer's own mail to a resolved ticket that was asked for a rating."""
    assert work.auth is not None
    return (
        work.kind == MailKind.NORMAL and ticket.rating_requested_at is not None
        and work.auth.principal.kind == PrincipalKind.CUSTOMER
        and Status(ticket.status) in (Status.RESOLVED, Status.CLOSED)
    )


def _answered_request(ctx: Context, work: Work, ticket: Ticket) -> Sequence[str] | None:
    """Who the rating request named by this mail's In-Reply-To was sent to, or None."""
    assert work.mail is not None
    if not work.mail.in_reply_to:
        return None
    return ctx.session.scalar(
        select(OutboxItem.rcpt_tos).where(
            OutboxItem.message_id.in_(work.mail.in_reply_to), OutboxItem.kind == REQUEST_KIND,
            OutboxItem.ticket_id == ticket.id,
        ).limit(1)
    )


def _latest_request(ctx: Context, ticket: Ticket) -> Sequence[str] | None:
    """Who the ticket's last rating request was sent to, or None (none on record)."""
    return ctx.session.scalar(
        select(OutboxItem.rcpt_tos)
        .where(OutboxItem.ticket_id == ticket.id, OutboxItem.kind == REQUEST_KIND)
        .order_by(OutboxItem.id.desc()).limit(1)
    )


def _asked(sender: str | None, asked: Sequence[str] | None) -> bool:
    """Whether ``sender`` was asked to rate; with no request on record, anyone may."""
    if asked is None:
        return True
    return sender is not None and sender.lower() in {a.lower() for a in asked}


def record(ctx: Context, work: Work, ticket: Ticket, score: int, comment: str, *, via: str) -> None:
    """Store the rating and the mail on the ticket; a low one alerts the people responsible."""
    assert work.mail is not None and work.auth is not None
    mail, actor = work.mail, work.auth.principal.address
    ticket.rating, ticket.rating_comment, ticket.rated_at = score, comment or None, ctx.now
    tickets.add_article(
        ctx.session, ticket, direction=Direction.IN, kind=ArticleKind.CUSTOMER, from_addr=actor,
        to_addrs=[*mail.to, *mail.cc], subject=mail.subject, text=mail.text,
        message_id=mail.message_id, spool_id=work.spool_id, author=actor, now=ctx.now,
    )
    tickets.audit(ctx.session, ticket.id, actor, "rated",
                  {"score": score, "comment": comment, "via": via}, ctx.now)
    if score <= ctx.config.feedback.low_rating:
        _alert_low(ctx, ticket, score, comment, actor)


def low_rating_recipients(ctx: Context, ticket: Ticket) -> list[str]:
    """The contract's dedicated engineer (and deputy), then the engineers of the notify lines."""
    contract = ctx.config.contracts.get(ticket.contract_id or "")
    people = [contract.dedicated_engineer, contract.deputy_engineer] if contract else []
    lines = set(ctx.config.feedback.notify_lines)
    people += [e.address for e in ctx.config.engineers.values() if e.line.value in lines]
    return list(dict.fromkeys(p for p in people if p))


def _alert_low(ctx: Context, ticket: Ticket, score: int, comment: str, actor: str) -> None:
    for engineer in low_rating_recipients(ctx, ticket):
        person = ctx.config.engineers.get(engineer)
        token = make_reply_token(ctx.config.mail.reply_token_secret, ticket.id, engineer,
                                 ctx.now.date())
        notify.queue_mail(
            ctx.session, ctx.notifier, kind="low_rating", to=[engineer], template="low_rating",
            locale=person.locale if person else ctx.config.mail.default_locale, now=ctx.now,
            ticket=ticket, reply_to=reply_address(ctx.notifier.support_address, token),
            context={"ticket": notify.ticket_context(ctx.notifier, ticket), "rating": score,
                     "comment": comment, "from_addr": actor},
        )
    log.info("low rating", extra={"ticket": ticket.id, "score": score})
