"""Every way through processing, and every exit, in one table (Mailman's builtin chain).

A message runs the intake, is routed once, then runs its path's chain. Each
stage returns a new ``Work`` (go on) or an ``Outcome`` (stop, with one
:class:`Disposition`); a chain that runs to its end ends with its ``event``.
Exits are values, not exceptions: an exception is a bug or an outage, which
the worker retries and finally quarantines. Exits not ``done`` are marked.

intake    parse → classify → authenticate
          too_large (rejected), unparseable (quarantined),
          ambiguous_headers (quarantined)

route     the first rule that matches (like Mailman's LMTP runner, by address
          where an address decides; see "Order" below)
  ALERTS    the From or envelope sender is a contract's monitoring sender
  BOUNCES   the mail is a delivery report; its VERP recipient (for IMAP mail also
            the MTA's Delivered-To and the like) names the row
  RATINGS   a ``support+rate-…`` address among envelope recipients, To and Cc
  ENGINEER  an engineer proven by a ``support+r…`` reply token, SMTP AUTH or DKIM
  CUSTOMER  anyone else: customers, unknown senders, forged engineers

path      chain                                 exits
ALERTS    handle                                duplicate, alert_ignored,
                                                alert_ok_unmatched, alert_info_unmatched,
                                                alert_new, alert_repeat, alert_flap,
                                                alert_flap_noted, alert_resolved,
                                                alert_ok_noted, alert_info
BOUNCES   record                                bounce, bounce_unmatched
RATINGS   drop_loop → drop_duplicate →          loop, duplicate, rating_forged (rejected),
          from_link                             rating_refused (rejected), rated
ENGINEER  drop_loop → drop_duplicate →          loop, duplicate, queue_answered, digest_set,
          answer_queue → thread → apply →       queue_refused (rejected),
          ask (for a rating)                    token_mismatch (rejected),
                                                engineer_no_ticket (rejected), engineer_auto,
                                                unverified_note, replayed,
                                                command_token_expired, commands_refused;
                                                at the end engineer_reply
CUSTOMER  drop_loop → drop_duplicate →          loop, duplicate, status_answered,
          answer_customer → thread → persist →  queue_refused (rejected), deferred (queued again),
          announce                              forged_engineer (rejected), auto_unthreaded,
                                                unknown_sender (rejected), rated; at the end
                                                new, reply, reopened, closed or auto

``processed`` ends a chain that named no event; no path does that today.

Order: the rules keep the order the pipeline always had, which is not the
recipient alone. A monitoring robot is known by its sender, whatever it
writes to, and comes first. A bounce is known by its content: the VERP
address also receives out-of-office replies (RFC 3834 answers the return
path), which take the customer or engineer path, and a bounce to the plain
address (or with a forged MAC) still ends as ``bounce_unmatched``. A rating
address counts in To/Cc too (IMAP mail has no envelope of ours) and before
the sender is looked at. An engineer is known by evidence, of which a reply
token is one; a token from anyone else proves nothing, and a forged engineer
is refused in the customer path, after threading, so the warning names the
ticket. Loops and duplicates stop at the head of the last three paths.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

from mailticket.config import Config
from mailticket.model import MailKind, PrincipalKind
from mailticket.processing import alerts, bounces, customer, engineer, queue_requests, ratings
from mailticket.processing.stages import (
    authenticate,
    classify,
    drop_duplicate,
    drop_loop,
    parse,
)
from mailticket.processing.work import Chain, Context, Disposition, Outcome, Work, auth_of

D = Disposition


class Path(enum.StrEnum):
    """Where a message goes after the intake."""

    ALERTS = "alerts"
    BOUNCES = "bounces"
    RATINGS = "ratings"
    ENGINEER = "engineer"
    CUSTOMER = "customer"


INTAKE: Chain = (parse, classify, authenticate)
INTAKE_EXITS: tuple[Disposition, ...] = (D.TOO_LARGE, D.UNPARSEABLE, D.AMBIGUOUS_HEADERS)

PATHS: Mapping[Path, Chain] = {
    Path.ALERTS: (alerts.handle,),
    Path.BOUNCES: (bounces.record,),
    Path.RATINGS: (drop_loop, drop_duplicate, ratings.from_link),
    Path.ENGINEER: (drop_loop, drop_duplicate, queue_requests.answer_queue, engineer.thread,
                    engineer.apply, ratings.ask),
    Path.CUSTOMER: (drop_loop, drop_duplicate, queue_requests.answer_customer, customer.thread,
                    customer.persist, customer.announce),
}

# Every Disposition a path can end with; a test checks each one is listed somewhere.
EXITS: Mapping[Path, tuple[Disposition, ...]] = {
    Path.ALERTS: (D.DUPLICATE, D.ALERT_IGNORED, D.ALERT_OK_UNMATCHED, D.ALERT_INFO_UNMATCHED,
                  D.ALERT_NEW, D.ALERT_REPEAT, D.ALERT_FLAP, D.ALERT_FLAP_NOTED,
                  D.ALERT_RESOLVED, D.ALERT_OK_NOTED, D.ALERT_INFO),
    Path.BOUNCES: (D.BOUNCE, D.BOUNCE_UNMATCHED),
    Path.RATINGS: (D.LOOP, D.DUPLICATE, D.RATING_FORGED, D.RATING_REFUSED, D.RATED),
    Path.ENGINEER: (D.LOOP, D.DUPLICATE, D.QUEUE_ANSWERED, D.QUEUE_REFUSED, D.DIGEST_SET,
                    D.TOKEN_MISMATCH, D.ENGINEER_NO_TICKET, D.ENGINEER_AUTO, D.UNVERIFIED_NOTE,
                    D.REPLAYED, D.COMMAND_TOKEN_EXPIRED, D.COMMANDS_REFUSED, D.ENGINEER_REPLY),
    Path.CUSTOMER: (D.LOOP, D.DUPLICATE, D.STATUS_ANSWERED, D.QUEUE_REFUSED, D.DEFERRED,
                    D.FORGED_ENGINEER, D.AUTO_UNTHREADED, D.UNKNOWN_SENDER, D.RATED, D.NEW,
                    D.REPLY, D.REOPENED, D.CLOSED, D.AUTO),
}


def _from_monitoring(work: Work, config: Config) -> bool:
    return work.alert is not None


def _is_bounce(work: Work, config: Config) -> bool:
    return work.kind == MailKind.BOUNCE


def _to_rating_address(work: Work, config: Config) -> bool:
    return ratings.rating_link(config.mail.reply_token_secret, work) is not None


def _from_engineer(work: Work, config: Config) -> bool:
    return auth_of(work).principal.kind == PrincipalKind.ENGINEER


def _anyone(work: Work, config: Config) -> bool:
    return True


# Checked in this order after the intake; the first rule that holds picks the path.
ROUTES: tuple[tuple[Path, Callable[[Work, Config], bool]], ...] = (
    (Path.ALERTS, _from_monitoring),
    (Path.BOUNCES, _is_bounce),
    (Path.RATINGS, _to_rating_address),
    (Path.ENGINEER, _from_engineer),
    (Path.CUSTOMER, _anyone),
)


def route(work: Work, config: Config) -> Path:
    """The path of a message that passed the intake (pure: no database, no side effects)."""
    return next(path for path, holds in ROUTES if holds(work, config))


def _run_chain(chain: Chain, work: Work, ctx: Context) -> Work | Outcome:
    result: Work | Outcome = work
    for stage in chain:
        assert isinstance(result, Work)
        result = stage(result, ctx)
        if isinstance(result, Outcome):
            break
    return result


def run(work: Work, ctx: Context) -> Outcome:
    """Intake, route, then the path's chain: how this message ends."""
    result = _run_chain(INTAKE, work, ctx)
    if isinstance(result, Outcome):
        return result
    result = _run_chain(PATHS[route(result, ctx.config)], result, ctx)
    if isinstance(result, Outcome):
        return result
    ticket_id = result.ticket.id if result.ticket is not None else None
    return Outcome(Disposition.of_event(result.event), ticket_id)

