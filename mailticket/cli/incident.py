"""``mailticket report incident REF``: send a ticket's incident notice again.

The notice goes out by itself once per resolution (``reports.incident``); an
admin re-sends it when a customer lost it, a new contact needs it, or an
engineer added the cause or prevention after the resolution. It is queued
through the outbox like any mail, with an audit row naming who re-sent it and
to whom, and without a second marker in the append-only SLA record. A ticket
that was never critical has nothing to report; ``--force`` sends it anyway.
"""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from mailticket.cli import common
from mailticket.errors import MailticketError
from mailticket.store.db import transaction


def cmd_report_incident(args: argparse.Namespace) -> int:
    """Queue the incident notice of one ticket again and print what was queued."""
    # Imported here: templates are not needed by every other command.
    from mailticket.outbound.notify import Notifier
    from mailticket.outbound.render import Renderer
    from mailticket.reports import incident, incident_facts

    cfg = common.load_config(args)
    notifier = Notifier(cfg, Renderer(cfg.templates_dir))
    with transaction(common.session_factory(cfg)) as session:
        ref, ticket = common.ticket_by_ref(session, cfg, args.ref)
        if not args.force:
            if not incident_facts.needs_notice(session, ticket):
                raise MailticketError(f"{ref} was never critical and breached nothing while "
                                      "critical: it has no incident notice (--force sends one)")
            if ticket.resolved_at is None:
                raise MailticketError(f"{ref} is not resolved: its notice would have no "
                                      "resolution (--force sends it as it stands)")
        items = incident.resend(session, notifier, ticket, common.utc_now(),
                                actor=f"cli:{getpass.getuser()}", to=args.to or ())
        session.flush()
        queued = [(item.id, list(item.rcpt_tos)) for item in items]
    if not queued:
        raise MailticketError(f"the incident notice of {ref} has no recipients")
    for outbox_id, rcpts in queued:
        print(f"incident notice {ref}: queued for {', '.join(rcpts)} (outbox {outbox_id})")
    return 0


def register(reports: Any) -> None:
    """Add ``incident`` to the ``report`` sub-commands."""
    p = reports.add_parser("incident", help="send a ticket's incident notice again")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.add_argument("ref", help="ticket reference, e.g. MT-12")
    p.add_argument("--to", nargs="+", action="extend", metavar="ADDR",
                   help="send only to these addresses (in the ticket's language) instead of "
                        "the contract's contacts, reports.incident_recipients and the admins")
    p.add_argument("--force", action="store_true",
                   help="send even for a ticket that was never critical or is not resolved")
    p.set_defaults(func=cmd_report_incident)
