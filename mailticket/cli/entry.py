"""The ``mailticket`` command: serve, check-config, db, tickets, spool, outbox.

The SLA commands (``sla show``, ``report monthly``, ``oncall``) live in
``cli_sla`` and the suppression list in ``cli_suppression``; ``main`` is the
entry point for all of them.

Errors a user can fix (bad config, unknown ticket, old schema) print one clear
message and exit with the code of their ``MailticketError`` class; a traceback
appears only for bugs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select

from mailticket import config as config_mod
from mailticket.cli import calendar as cli_calendar
from mailticket.cli import common
from mailticket.cli import digest as cli_digest
from mailticket.cli import sla as cli_sla
from mailticket.cli import suppression as cli_suppression
from mailticket.errors import MailticketError, NotFound
from mailticket.model import TicketRef
from mailticket.outbound.render import Renderer
from mailticket.policy import kb as kb_mod
from mailticket.store import migrate, workqueue
from mailticket.store.db import make_engine, transaction
from mailticket.store.schema import AuditEvent, OutboxItem, QueueState, SpoolItem, Ticket

DEFAULT_CONFIG = "config.example.toml"


def cmd_serve(args: argparse.Namespace) -> int:
    from mailticket import daemon

    pid_file = Path(args.pid_file) if args.pid_file else None
    return daemon.run(common.load_config(args), pid_file)


def cmd_check_config(args: argparse.Namespace) -> int:
    problems = config_mod.check(Path(args.config))
    if problems:
        print(config_mod.format_problems(problems), file=sys.stderr)
        print(f"{len(problems)} problem(s) in {args.config}", file=sys.stderr)
        return 2
    cfg = common.load_config(args)
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    broken = Renderer(cfg.templates_dir).compile_all()
    if broken:
        for problem in broken:
            print(problem, file=sys.stderr)
        print(f"{len(broken)} template problem(s) in {cfg.templates_dir} "
              f"(templates_dir of {args.config})", file=sys.stderr)
        return 2
    if args.connect:
        from mailticket.cli.connect import check_everything

        failed = check_everything(cfg, print)
        if failed:
            print(f"{failed} connection check(s) failed for {args.config}", file=sys.stderr)
            return 2
    print(f"{args.config}: ok")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    cfg = common.load_config(args)
    engine = make_engine(cfg.database.url)
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    print(f"database upgraded: {before or 'empty'} -> {migrate.current_revision(engine)}")
    return 0


def _ticket_json(ticket: Ticket, prefix: str, events: Sequence[AuditEvent] = ()) -> dict[str, Any]:
    return {
        "ref": str(TicketRef(prefix, ticket.id)),
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "line": ticket.line,
        "contract": ticket.contract_id,
        "requester": ticket.requester,
        "assignee": ticket.assignee,
        "contacts": [c.address for c in ticket.contacts],
        "created_at": common.iso(ticket.created_at),
        "updated_at": common.iso(ticket.updated_at),
        "first_response_at": common.iso(ticket.first_response_at),
        "resolved_at": common.iso(ticket.resolved_at),
        "time_spent_minutes": ticket.time_spent_minutes,
        "articles": [
            {
                "message_id": a.message_id,
                "from": a.from_addr,
                "direction": a.direction,
                "kind": a.kind,
                "subject": a.subject,
                "text": a.text,
                "attachments": [
                    {"filename": f.filename, "content_type": f.content_type, "size": f.size,
                     "sha256": f.sha256}
                    for f in a.attachments
                ],
                "created_at": common.iso(a.created_at),
            }
            for a in ticket.articles
        ],
        "events": [
            {"at": common.iso(e.at), "actor": e.actor, "action": e.action, "detail": e.detail,
             "evidence": e.evidence}
            for e in events
        ],
    }


def cmd_tickets_list(args: argparse.Namespace) -> int:
    cfg = common.load_config(args)
    prefix = cfg.mail.ticket_prefix
    with transaction(common.session_factory(cfg)) as session:
        query = select(Ticket).order_by(Ticket.id)
        if args.status:
            query = query.where(Ticket.status == args.status)
        rows = session.scalars(query).all()
        if args.json:
            data = [
                {k: v for k, v in _ticket_json(t, prefix).items() if k not in ("articles", "events")}
                for t in rows
            ]
            print(json.dumps(data, ensure_ascii=False, indent=2))
            return 0
        for t in rows:
            print(f"{TicketRef(prefix, t.id)}\t{t.status}\t{t.priority}\t{t.contract_id or '-'}\t"
                  f"{t.requester}\t{t.subject}")
        print(f"{len(rows)} ticket(s)", file=sys.stderr)
    return 0


def cmd_tickets_show(args: argparse.Namespace) -> int:
    cfg = common.load_config(args)
    with transaction(common.session_factory(cfg)) as session:
        _, ticket = common.ticket_by_ref(session, cfg, args.ref)
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.ticket_id == ticket.id).order_by(AuditEvent.id)
        ).all()
        data = _ticket_json(ticket, cfg.mail.ticket_prefix, events)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    print(f"{data['ref']}  {data['subject']}")
    print(f"status {data['status']}  priority {data['priority']}  line {data['line']}  "
          f"contract {data['contract']}  requester {data['requester']}")
    for art in data["articles"]:
        print(f"\n--- {art['created_at']}  {art['direction']}/{art['kind']}  {art['from']}")
        print(art["text"].rstrip())
    return 0


# Checked once per table: the spool and the outbox share the queue columns.
QueueModel = TypeVar("QueueModel", SpoolItem, OutboxItem)


def _queue_list(args: argparse.Namespace, model: type[QueueModel]) -> int:
    cfg = common.load_config(args)
    with transaction(common.session_factory(cfg)) as session:
        query = select(model).order_by(model.id)
        if args.state:
            query = query.where(model.state == args.state)
        rows = session.scalars(query.limit(args.limit)).all()
        out = []
        for r in rows:
            item: dict[str, Any] = {"id": r.id, "state": r.state, "attempts": r.attempts,
                                    "created_at": common.iso(r.created_at), "last_error": r.last_error}
            if isinstance(r, SpoolItem):
                item.update(source=r.source, mail_from=r.mail_from, rcpt_tos=r.rcpt_tos,
                            size=r.size, outcome=r.outcome, ticket_id=r.ticket_id)
            else:
                item.update(kind=r.kind, rcpt_tos=r.rcpt_tos, message_id=r.message_id,
                            ticket_id=r.ticket_id, dsn_status=r.dsn_status,
                            dsn_diagnostic=r.dsn_diagnostic)
            out.append(item)
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        for item in out:
            print("\t".join(str(item.get(k, "")) for k in
                            ("id", "state", "attempts", "source", "kind", "mail_from", "rcpt_tos",
                             "outcome", "dsn_status", "last_error") if k in item))
        print(f"{len(out)} row(s)", file=sys.stderr)
    return 0


def _queue_change(args: argparse.Namespace, model: type[QueueModel], drop: bool) -> int:
    cfg = common.load_config(args)
    with transaction(common.session_factory(cfg)) as session:
        row = session.get(model, args.id)
        if row is None:
            raise NotFound(f"no {model.__tablename__} row {args.id}")
        if row.state == QueueState.CLAIMED:
            raise MailticketError(f"{model.__tablename__} row {args.id} is being processed right now")
        if drop:
            row.state = QueueState.DROPPED
            row.finished_at = common.utc_now()
        else:
            workqueue.requeue(session, row, common.utc_now())
            if isinstance(row, OutboxItem):
                # A bounced row sent again starts clean; its bounce stays in the audit log.
                row.dsn_status = row.dsn_diagnostic = None
    print(f"{model.__tablename__} row {args.id}: {'dropped' if drop else 'queued again'}")
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    """Process everything due in the spool once, without listeners (cron-style or tests)."""
    from mailticket.daemon import build_app
    from mailticket.runners.outbox import OutboxDrainer
    from mailticket.runners.worker import SpoolWorker

    cfg = common.load_config(args)
    app = build_app(cfg, create_empty_schema=False)
    count = SpoolWorker(app).drain()
    sent = OutboxDrainer(app.factory, cfg.relay).drain_once() if args.send else 0
    print(f"processed {count} spooled message(s), sent {sent}")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Print a password hash for an engineer's ``password_hash`` (SMTP AUTH on submission)."""
    import getpass

    from mailticket.config.passwords import hash_password

    password = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("Password: ")
    if len(password) < 8:
        raise MailticketError("password too short: use at least 8 characters")
    print(hash_password(password))
    return 0


def _kb(args: argparse.Namespace) -> kb_mod.KnowledgeBase:
    base = kb_mod.load(common.load_config(args).kb.dir)
    for problem in base.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return base


def cmd_kb_list(args: argparse.Namespace) -> int:
    """One line per article: slug, locale, title and tags."""
    for article in _kb(args).articles:
        if args.locale in (None, article.locale):
            print(f"{article.slug}\t{article.locale}\t{article.title}\t{', '.join(article.tags)}")
    return 0


def cmd_kb_show(args: argparse.Namespace) -> int:
    """An article as an engineer's #kb would insert it."""
    article = _kb(args).find(args.slug, args.locale)
    if article is None:
        raise NotFound(f"no knowledge-base article {args.slug!r}")
    print(f"{article.title}\n\n{article.body}")
    return 0


def cmd_kb_search(args: argparse.Namespace) -> int:
    """The articles most similar to the words given, with their scores."""
    for article, score in _kb(args).search(" ".join(args.words), limit=args.limit):
        print(f"{score:.3f}\t{article.slug}\t{article.locale}\t{article.title}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Queue depths, oldest item, recent delivery failures: the 3 a.m. overview."""
    from mailticket.cli.status import collect_status, format_status

    config = common.load_config(args)
    status = collect_status(common.session_factory(config), common.utc_now(),
                            tuple(a.name for a in config.imap), config)
    status["warnings"] = [str(warning) for warning in config.warnings]
    if args.json:
        print(json.dumps(status, indent=2, ensure_ascii=False, default=str))
    else:
        print(format_status(status), end="")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """A consistent copy of the live SQLite database, with progress on a terminal."""
    from mailticket.store.backup import backup

    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        print(f"\rcopied {done}/{total} pages", end="", file=sys.stderr, flush=True)

    result = backup(common.load_config(args).database.url, Path(args.dest), progress=progress if tty else None)
    if tty:
        print(file=sys.stderr)
    print(f"backup written to {result.path} ({result.size} bytes, schema {result.revision})")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Replace the SQLite database with a backup (only while the daemon is stopped)."""
    from mailticket.store.backup import restore

    result = restore(Path(args.src), common.load_config(args).database.url)
    kept = f"; previous database kept as {result.moved_aside}" if result.moved_aside else ""
    print(f"restored {result.path} (schema {result.revision}){kept}")
    if result.needs_upgrade:
        print("run `mailticket db upgrade` before starting the daemon")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailticket", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="TOML config file")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("-c", "--config", default=argparse.SUPPRESS, help="TOML config file")
        p.set_defaults(func=func)
        return p

    for name in ("serve", "run"):
        p = add(name, cmd_serve, "run the daemon" + (" (alias of serve)" if name == "run" else ""))
        p.add_argument("--pid-file", metavar="PATH",
                       help="write the daemon's PID here once it accepts mail (without systemd)")
    p = add("check-config", cmd_check_config, "validate the config; exit 2 on problems")
    p.add_argument("--connect", action="store_true",
                   help="also connect to the relay (EHLO, STARTTLS, AUTH), the database "
                   "(schema version) and every IMAP account")
    p = add("status", cmd_status, "queue depths, oldest item, outbox failures")
    p.add_argument("--json", action="store_true")
    p = add("backup", cmd_backup, "consistent copy of the live SQLite database (PostgreSQL: pg_dump)")
    p.add_argument("dest")
    p = add("restore", cmd_restore, "replace the SQLite database with a backup (daemon stopped)")
    p.add_argument("src")
    p = add("hash-password", cmd_hash_password, "hash a password for engineers.*.password_hash")
    p.add_argument("--stdin", action="store_true", help="read the password from standard input")
    p = add("process", cmd_process, "process the spool once")
    p.add_argument("--send", action="store_true", help="also send the outbox once")

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_cmd", required=True)
    p = db.add_parser("upgrade", help="apply migrations")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_db_upgrade)

    tk = sub.add_parser("tickets", help="tickets").add_subparsers(dest="t_cmd", required=True)
    p = tk.add_parser("list", help="list tickets")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true")
    p.add_argument("--status")
    p.set_defaults(func=cmd_tickets_list)
    p = tk.add_parser("show", help="show one ticket")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.add_argument("ref")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tickets_show)

    kb = sub.add_parser("kb", help="knowledge base").add_subparsers(dest="kb_cmd", required=True)
    p = kb.add_parser("list", help="list articles")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.add_argument("--locale", choices=("ru", "en"))
    p.set_defaults(func=cmd_kb_list)
    p = kb.add_parser("show", help="print one article")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.add_argument("slug")
    p.add_argument("--locale", choices=("ru", "en"))
    p.set_defaults(func=cmd_kb_show)
    p = kb.add_parser("search", help="articles most similar to some words")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS)
    p.add_argument("words", nargs="+")
    p.add_argument("--limit", type=int, default=5)
    p.set_defaults(func=cmd_kb_search)

    for name, model in (("spool", SpoolItem), ("outbox", OutboxItem)):
        q = sub.add_parser(name, help=f"the {name} queue").add_subparsers(dest="q_cmd", required=True)
        p = q.add_parser("list", help=f"list {name} rows")
        p.add_argument("-c", "--config", default=argparse.SUPPRESS)
        p.add_argument("--state", help="queued, claimed, done, quarantined, rejected, failed, "
                       "dropped; outbox also bounced (a delivery report came back)")
        p.add_argument("--json", action="store_true")
        p.add_argument("--limit", type=int, default=200)
        p.set_defaults(func=lambda a, m=model: _queue_list(a, m))
        p = q.add_parser("retry", help="queue a row again with fresh attempts")
        p.add_argument("-c", "--config", default=argparse.SUPPRESS)
        p.add_argument("id", type=int)
        p.set_defaults(func=lambda a, m=model: _queue_change(a, m, drop=False))
        if name == "spool":
            p = q.add_parser("drop", help="give up on a row (kept, marked dropped)")
            p.add_argument("-c", "--config", default=argparse.SUPPRESS)
            p.add_argument("id", type=int)
            p.set_defaults(func=lambda a, m=model: _queue_change(a, m, drop=True))
    cli_suppression.register(sub)
    cli_sla.register(sub)
    cli_calendar.register(sub)
    cli_digest.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the command, turn MailticketError into a message and exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MailticketError as exc:
        print(f"mailticket: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # Files and sockets an admin can fix: a missing directory, a port in use.
        print(f"mailticket: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
