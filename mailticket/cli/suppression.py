"""``mailticket suppression list|show|clear``: the admin's side of the suppression list.

Repeated permanent delivery failures stop all mail to an address
(``mailticket.outbound.suppression``); only an admin starts it again, after checking
that the mailbox works. ``list`` shows what is stopped and why, ``show`` the
failures recorded for one address, ``clear`` lets mail flow again and leaves
an audit event saying who cleared it. Kept apart from ``cli.py`` so that the
main command table stays small; ``register`` adds the sub-commands there.
"""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

from mailticket.cli import common
from mailticket.errors import NotFound
from mailticket.outbound import suppression
from mailticket.store.db import transaction
from mailticket.tickets import service as tickets


def _row(entry: suppression.SuppressedAddress) -> dict[str, Any]:
    return {
        "address": entry.address,
        "permanent_failures": entry.permanent_failures,
        "suppressed_at": common.iso(entry.suppressed_at),
        "cleared_at": common.iso(entry.cleared_at),
        "active": entry.active,
        "reason": entry.reason,
    }


def cmd_list(args: argparse.Namespace) -> int:
    """Print suppressed addresses, oldest first (with ``--all`` also cleared ones)."""
    with transaction(common.session_factory(common.load_config(args))) as session:
        rows = [_row(e) for e in suppression.listing(session, include_cleared=args.all)]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for row in rows:
        state = "suppressed" if row["active"] else f"cleared {row['cleared_at']}"
        print(f"{row['address']}\t{state}\t{row['permanent_failures']} failures\t"
              f"since {row['suppressed_at']}\t{row['reason']}")
    if not rows:
        print("no suppressed addresses")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print whether one address is suppressed and the failures recorded for it."""
    with transaction(common.session_factory(common.load_config(args))) as session:
        active = suppression.is_suppressed(session, args.address)
        found = [
            {"at": common.iso(f.at), "source": f.source, "permanent": f.permanent,
             "outbox_id": f.outbox_id, "ticket_id": f.ticket_id, "detail": f.detail}
            for f in suppression.failures(session, args.address, limit=args.limit)
        ]
    if args.json:
        print(json.dumps({"address": args.address, "suppressed": active, "failures": found},
                         ensure_ascii=False, indent=2))
        return 0
    print(f"{args.address}: {'suppressed' if active else 'not suppressed'}")
    for f in found:
        kind = "permanent" if f["permanent"] else "temporary"
        print(f"{f['at']}\t{f['source']}\t{kind}\toutbox {f['outbox_id']}\t"
              f"ticket {f['ticket_id']}\t{f['detail']}")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    """Let mail to an address go out again; exit 4 if it was not suppressed."""
    now = common.utc_now()
    with transaction(common.session_factory(common.load_config(args))) as session:
        if not suppression.clear(session, args.address, now):
            raise NotFound(f"{args.address} is not suppressed")
        tickets.audit(session, None, f"cli:{getpass.getuser()}", "suppression_cleared",
                      {"address": args.address}, now)
    print(f"cleared {args.address}: mail to it goes out again")
    return 0


def register(sub: Any) -> None:
    """Add ``suppression list|show|clear`` to the main parser's sub-commands."""
    group = sub.add_parser(
        "suppression", help="addresses no longer mailed after repeated permanent failures"
    ).add_subparsers(dest="s_cmd", required=True)
    p = group.add_parser("list", help="suppressed addresses and why")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.add_argument("--all", action="store_true", help="also addresses an admin cleared")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = group.add_parser("show", help="the delivery failures recorded for one address")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.add_argument("address")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)
    p = group.add_parser("clear", help="mail an address again (after checking it works)")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.add_argument("address")
    p.set_defaults(func=cmd_clear)
