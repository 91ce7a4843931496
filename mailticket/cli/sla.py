"""``mailticket sla show``, ``report monthly`` and ``oncall``: the SLA side of the command line.

``sla show REF`` explains one ticket's deadlines the way the scheduler computes
them (plan, calendar, the intervals counted, pauses, every event sent), so an
engineer can answer "why did I get this reminder?" without reading code.
``report monthly`` builds a contract's month by hand: mailed through the outbox
like the scheduled run, or written as HTML + PNGs + CSV with ``--out DIR``;
``--internal`` gives the provider's variant (to ``mail.admin_addresses``).
``oncall`` prints who is paged now and in the coming weeks. Kept apart from
``cli.py`` so that the main command table stays small; ``register`` adds the
sub-commands there.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mailticket.cli import common
from mailticket.cli import incident as cli_incident
from mailticket.errors import MailticketError
from mailticket.policy import oncall
from mailticket.store.db import transaction


def cmd_sla_show(args: argparse.Namespace) -> int:
    """Explain a ticket's SLA: plan, calendar intervals counted, pauses, events sent."""
    from mailticket.tickets import sla_stamp as sla_service

    cfg = common.load_config(args)
    with transaction(common.session_factory(cfg)) as session:
        ref, ticket = common.ticket_by_ref(session, cfg, args.ref)
        print(f"{ref}  {ticket.subject}")
        for line in sla_service.explain_ticket(session, cfg, ticket, common.utc_now()):
            print(line)
    return 0


def cmd_report_monthly(args: argparse.Namespace) -> int:
    """Build a contract's monthly report: mail it through the outbox, or write files."""
    # Imported here: templates and the chart are not needed by every other command.
    from mailticket.outbound.notify import Notifier
    from mailticket.outbound.render import Renderer
    from mailticket.reports import delivery as report_delivery
    from mailticket.reports import monthly as reports

    cfg = common.load_config(args)
    notifier = Notifier(cfg, Renderer(cfg.templates_dir))
    with transaction(common.session_factory(cfg)) as session:
        # A month that has ended is closed by its first build; later builds read the close.
        report = reports.build(session, cfg, args.contract, args.month, common.utc_now())
        if args.out:
            for path in report_delivery.write_files(notifier, report, Path(args.out),
                                                    internal=args.internal):
                print(path)
            return 0
        item = report_delivery.queue(session, notifier, report, common.utc_now(),
                                     internal=args.internal)
    if item is None:
        raise MailticketError(f"the report of {args.contract} has no recipients")
    print(f"monthly report {args.contract} {args.month}: queued for {', '.join(item.rcpt_tos)}")
    return 0


def cmd_oncall(args: argparse.Namespace) -> int:
    """The on-call pair now and in the next weeks, in the rota's time zone."""
    cfg = common.load_config(args)
    shifts = oncall.upcoming(cfg.oncall, common.utc_now(), args.weeks)
    if not shifts:
        print("no on-call rota configured: critical tickets page nobody")
        return 0
    zone = ZoneInfo(cfg.oncall.timezone)
    for shift in shifts:
        start = shift.starts_at.astimezone(zone).strftime("%Y-%m-%d %a %H:%M")
        end = shift.ends_at.astimezone(zone).strftime("%Y-%m-%d %a %H:%M %Z")
        names = [cfg.engineers[a].name if a in cfg.engineers else a for a in shift.pair]
        people = ", ".join(f"{name} <{a}>" for name, a in zip(names, shift.pair, strict=True))
        print(f"{start} → {end}\t{people}")
    return 0


def register(sub: Any) -> None:
    """Add ``sla show``, ``report monthly`` and ``oncall`` to the main parser's sub-commands."""
    sla = sub.add_parser("sla", help="SLA deadlines").add_subparsers(dest="sla_cmd", required=True)
    p = sla.add_parser("show", help="explain a ticket's deadlines and the events sent")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.add_argument("ref")
    p.set_defaults(func=cmd_sla_show)

    rp = sub.add_parser("report", help="reports").add_subparsers(dest="r_cmd", required=True)
    cli_incident.register(rp)
    p = rp.add_parser("monthly", help="a contract's monthly report (mailed, or files with --out)")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.add_argument("--contract", required=True, help="contract id")
    p.add_argument("--month", required=True, help="YYYY-MM")
    p.add_argument("--out", help="write HTML, PNG and CSV into this directory instead of mailing")
    p.add_argument("--internal", action="store_true",
                   help="the provider's variant (routing rules, breach reasons, calendar ids), "
                        "mailed to mail.admin_addresses")
    p.set_defaults(func=cmd_report_monthly)

    p = sub.add_parser("oncall", help="who is on call now and in the coming weeks")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.add_argument("--weeks", type=int, default=4, help="shifts to show (default 4)")
    p.set_defaults(func=cmd_oncall)
