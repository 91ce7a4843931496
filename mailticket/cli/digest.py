"""``mailticket digest preview``: what an engineer's morning digest would say (issue 16, point 6).

For admins checking a setup and for tests: it renders the digest from the
database as the scheduler would at ``--at`` (default now), prints it, and
sends nothing. The header lines say whether the digest would go out that day
and when, so "why did Anna get nothing?" has an answer.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from mailticket.cli import common
from mailticket.errors import MailticketError, NotFound
from mailticket.store.db import transaction


def parse_at(text: str | None, timezone: str) -> datetime:
    """``--at``: an ISO time; without a zone it is read in the engineer's own zone."""
    if text is None:
        return common.utc_now()
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise MailticketError(f"--at: expected a time like 2026-12-07T09:00, got {text!r}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(timezone))
    return value.astimezone(UTC)


def cmd_digest_preview(args: argparse.Namespace) -> int:
    """Print the digest ``--engineer`` would get at ``--at``."""
    from mailticket.digest import morning
    from mailticket.outbound.notify import Notifier
    from mailticket.outbound.render import Renderer

    cfg = common.load_config(args)
    engineer = cfg.engineers.get(args.engineer.strip().lower())
    if engineer is None:
        raise NotFound(f"no engineer {args.engineer}")
    calendar = morning.calendar_for(cfg, engineer)
    zone = calendar.timezone if calendar is not None else "UTC"
    now = parse_at(args.at, zone)
    notifier = Notifier(cfg, Renderer(cfg.templates_dir))
    with transaction(common.session_factory(cfg)) as session:
        plan = morning.plan_for(session, cfg, engineer.address)
        window = morning.send_time(plan, now.astimezone(ZoneInfo(zone)).date())
        rendered = morning.render_for(session, notifier, engineer, now)
    if not plan.enabled:
        print("# digest: off for this engineer")
    elif window is None:
        print("# digest: none that day (day off or holiday)")
    else:
        print(f"# digest: sent at {window[0].isoformat()}")
    print(f"Subject: {rendered.subject}\n")
    print(rendered.text)
    return 0


def register(sub: Any) -> None:
    """Add ``digest preview`` to the main parser's sub-commands."""
    digest = sub.add_parser("digest", help="morning digests").add_subparsers(
        dest="digest_cmd", required=True)
    p = digest.add_parser("preview", help="print what an engineer's digest would say")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.add_argument("--engineer", required=True, help="the engineer's address")
    p.add_argument("--at", help="the moment to preview, e.g. 2026-12-07T09:00 (default now)")
    p.set_defaults(func=cmd_digest_preview)
