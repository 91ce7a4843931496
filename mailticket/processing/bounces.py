"""The bounces path: a delivery report is matched to the outbox row it failed for.

Only a VERP address with a valid MAC names a row, so a forged bounce changes
nothing. The address is looked for wherever the mail was delivered to: the
envelope recipients, and for mail fetched by IMAP (whose envelope is only the
account's address) the delivery headers the receiving MTA wrote
(``Delivered-To``, ``X-Original-To``, ``Envelope-To``, ``X-Envelope-To``).
Each failed recipient of that row is recorded in ``suppression`` (repeated
permanent failures stop mail to it) and on the ticket's audit log, and a
permanent failure turns the row itself to ``bounced`` with the report's status
and diagnostic, so the outbox no longer claims a mail was delivered. Addresses
the DSN names that the row never mailed are ignored: a recipient of our mail
knows its VERP address and must not switch off someone else.
"""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import getaddresses

from mailticket.log import get as get_logger
from mailticket.mail import addresses
from mailticket.mail.inbound import InboundMail
from mailticket.outbound import suppression
from mailticket.processing.work import Context, Disposition, Outcome, Work, mail_of
from mailticket.store.schema import OutboxItem, QueueState
from mailticket.tickets import service as tickets

# The logger bounces always used (they lived with the engineer path), kept for log filters.
log = get_logger("engineer")

# Headers a receiving MTA writes with the envelope recipient it delivered to
# (Postfix and Dovecot LDA: Delivered-To, X-Original-To; Exim: Envelope-To;
# fetchmail, qmail and others: X-Envelope-To).
DELIVERY_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to")
# Envelope sources whose recipients are not the delivered-to address.
_FETCHED = ("imap", "imap-oversize")


def delivered_to(work: Work) -> Iterator[str]:
    """Every address this mail was delivered to: the envelope, then (IMAP) the delivery headers."""
    yield from work.envelope.rcpt_tos
    if work.envelope.source in _FETCHED and work.mail is not None:
        yield from _header_addresses(work.mail)


def _header_addresses(mail: InboundMail) -> Iterator[str]:
    for name in DELIVERY_HEADERS:
        for _, address in getaddresses(list(mail.headers.get(name, ()))):
            if address:
                yield address


def outbox_row(ctx: Context, work: Work) -> OutboxItem | None:
    """The outbox row the first validly signed VERP address this mail reached names, if any."""
    secret = ctx.config.mail.reply_token_secret
    for rcpt in delivered_to(work):
        outbox_id = addresses.parse_verp(secret, rcpt)
        if outbox_id is not None:
            return ctx.session.get(OutboxItem, outbox_id)
    return None


def record(work: Work, ctx: Context) -> Outcome:
    """Record the failures a bounce reports against the row its VERP address names."""
    mail, reason = mail_of(work), work.kind_reason
    row = outbox_row(ctx, work)
    if row is None:
        log.info("bounce without a valid VERP address", extra={
            "spool_id": work.spool_id, "source": work.envelope.source,
            "delivered_to": sorted(set(delivered_to(work)))})
        return Outcome(Disposition.BOUNCE_UNMATCHED, detail=reason)
    mailed = {addresses.normalise_address(r): r for r in row.rcpt_tos}
    failed: dict[str, str] = {}
    hard: list[tuple[str, str]] = []
    for dsn in mail.dsn:
        address = mailed.get(addresses.normalise_address(dsn.address))
        if address is None:
            continue
        permanent = suppression.is_permanent(dsn.status, dsn.action)
        failed[address] = f"{dsn.status} {dsn.diagnostic}".strip() or dsn.action
        if permanent:
            hard.append((dsn.status or "5.0.0", dsn.diagnostic or dsn.action))
        suppression.record_failure(ctx.session, address, source="bounce",
                                   detail=failed[address], now=ctx.now, permanent=permanent,
                                   outbox_id=row.id, ticket_id=row.ticket_id)
    if not failed and len(row.rcpt_tos) == 1:
        # No report naming an address we mailed (none readable, or an alias that
        # forwarded elsewhere), but VERP names a one-recipient mail: it failed.
        named = [d for d in mail.dsn if suppression.is_permanent(d.status, d.action)]
        permanent = not mail.dsn or bool(named)
        if permanent:
            first = named[0] if named else None
            hard.append((first.status if first else "5.0.0",
                         first.diagnostic if first else reason or "bounced"))
        failed[row.rcpt_tos[0]] = "bounced"
        suppression.record_failure(ctx.session, row.rcpt_tos[0], source="bounce",
                                   detail=reason, now=ctx.now, permanent=permanent,
                                   outbox_id=row.id, ticket_id=row.ticket_id)
    if hard:
        _mark_bounced(row, *hard[0])
    if row.ticket_id is not None:
        tickets.audit(
            ctx.session,
            row.ticket_id,
            "bounce",
            "delivery_failed",
            {"outbox_id": row.id, "message_id": row.message_id, "recipients": failed,
             "outbox_state": row.state},
            ctx.now,
        )
    log.warning("delivery failed (bounce)", extra={"spool_id": work.spool_id,
                "outbox_id": row.id, "ticket": row.ticket_id, "recipients": failed,
                "outbox_state": row.state, "dsn_status": row.dsn_status})
    return Outcome(Disposition.BOUNCE, row.ticket_id, reason)


def _mark_bounced(row: OutboxItem, status: str, diagnostic: str) -> None:
    """The relay took the mail but a report came back: the row says so, not ``done``.

    A row still waiting (the report overtook our own record of the send, or
    other recipients are being retried) keeps its state, so the drainer's
    claim is never overwritten; it only carries the report.
    """
    row.dsn_status = status[:32]
    row.dsn_diagnostic = diagnostic
    if row.state == QueueState.DONE:
        row.state = QueueState.BOUNCED
        row.last_error = f"bounced: {status} {diagnostic}".strip()
