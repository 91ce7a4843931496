"""The bounces path: a delivery report is matched to the outbox row it failed for.

Only a VERP recipient with a valid MAC names a row, so a forged bounce changes
nothing. Each failed recipient of that row is recorded in ``suppression``
(repeated permanent failures stop mail to it) and on the ticket's audit log.
Addresses the DSN names that the row never mailed are ignored: a recipient of
our mail knows its VERP address and must not switch off someone else.
"""

from __future__ import annotations

from mailticket.log import get as get_logger
from mailticket.mail import addresses
from mailticket.outbound import suppression
from mailticket.processing.work import Context, Disposition, Outcome, Work, mail_of
from mailticket.store.schema import OutboxItem
from mailticket.tickets import service as tickets

# The logger bounces always used (they lived with the engineer path), kept for log filters.
log = get_logger("engineer")


def outbox_row(ctx: Context, work: Work) -> OutboxItem | None:
    """The outbox row the first validly signed VERP recipient names, if any."""
    secret = ctx.config.mail.reply_token_secret
    for rcpt in work.envelope.rcpt_tos:
        outbox_id = addresses.parse_verp(secret, rcpt)
        if outbox_id is not None:
            return ctx.session.get(OutboxItem, outbox_id)
    return None


def record(work: Work, ctx: Context) -> Outcome:
    """Record the failures a bounce reports against the row its VERP address names."""
    mail, reason = mail_of(work), work.kind_reason
    row = outbox_row(ctx, work)
    if row is None:
        log.info("bounce without a valid VERP address", extra={"spool_id": work.spool_id})
        return Outcome(Disposition.BOUNCE_UNMATCHED, detail=reason)
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
    return Outcome(Disposition.BOUNCE, row.ticket_id, reason)
