"""One spool row through processing: build the ``Work``, run the dispatch table,
then bring the ticket it touched up to date.

The stages, the paths and every exit are listed in :mod:`.dispatch`. Everything
runs inside the one transaction the worker gives it, so the ticket, its
articles and the outbox rows commit together with the spool row.
"""

from __future__ import annotations

from mailticket.model import Envelope
from mailticket.processing import dispatch
from mailticket.processing.work import Context, Outcome, Work
from mailticket.reports import incident
from mailticket.store.schema import SpoolItem
from mailticket.tickets import service as tickets
from mailticket.tickets import sla_stamp as sla_service


def process(item: SpoolItem, ctx: Context) -> Outcome:
    """Run one spool item through the dispatch table; the caller owns the transaction."""
    envelope = Envelope(
        mail_from=item.mail_from,
        rcpt_tos=tuple(item.rcpt_tos),
        peer=item.peer,
        auth_user=item.auth_user,
        source=item.source.split(":", 1)[0],
        received_at=item.created_at,
    )
    work = Work(
        spool_id=item.id, source=item.source, envelope=envelope, raw=item.raw, size=item.size
    )
    if item not in ctx.session:
        item.raw = b""  # the worker's detached copy: the mail is freed once parsed
    outcome = dispatch.run(work, ctx)
    _after_change(ctx, outcome.ticket_id)
    return outcome


def _after_change(ctx: Context, ticket_id: int | None) -> None:
    """After every mail that touched a ticket: restamp its SLA clock, and report an incident.

    One place covers every change a mail can make (opened, customer message, reply,
    status, priority, alert), and it runs after all of the mail's commands, so an
    incident report sees the ``#cause`` written in the same reply as ``#status resolved``.
    """
    ticket = tickets.get(ctx.session, ticket_id) if ticket_id is not None else None
    if ticket is not None:
        sla_service.restamp(ctx.session, ctx.config, ticket, ctx.now)
        incident.report_if_due(ctx.session, ctx.notifier, ticket, ctx.now)
