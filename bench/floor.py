#!/usr/bin/env python3
"""The floor the pipeline is compared with, in the repo: stdlib parse + one durable insert per mail.

The same code as ``../shared/bench/baseline_python.py`` in its ``sqlite --sync
FULL`` mode (the peers' ``python-parse+sqlalchemy-sqlite-wal-syncfull``), so
``bench/run`` prints the floor ratios on a fresh clone with nothing beside it:
read each .eml, ``email.message_from_bytes(policy=default)``, take the body
(``get_body(('plain', 'html'))``), decode Subject and From; then per message
one SQLAlchemy 2.x Core transaction on a SQLite file in WAL mode with
``synchronous=FULL``: look the parent up by Message-ID, insert one row, commit.

    floor.py CORPUS_DIR [--db-dir DIR]

prints one line in the peers' format:
``<name> <N> msgs <seconds> s <msgs/s> msg/s tickets=<T> followups=<F>``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NAME = "python-parse+sqlalchemy-sqlite-wal-syncfull"
MSGID_RE = re.compile(r"<[^<>\s]+>")


def parse_one(raw: bytes) -> dict[str, Any]:
    """The minimum a ticketing system must pull out of one message (as baseline_python.py)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    part = msg.get_body(preferencelist=("plain", "html"))
    try:
        body = part.get_content() if part is not None else ""  # type: ignore[attr-defined]
    except (LookupError, UnicodeError):  # unknown charset: keep going
        body = part.get_payload(decode=True).decode("utf-8", "replace")  # type: ignore[union-attr]
    refs = MSGID_RE.findall(str(msg.get("References", "")))
    refs += MSGID_RE.findall(str(msg.get("In-Reply-To", "")))
    return {
        "message_id": str(msg.get("Message-ID", "")).strip(),
        "parents": refs[::-1],  # In-Reply-To first, then newest ref
        "subject": str(msg.get("Subject", "")),
        "sender": str(msg.get("From", "")),
        "body": body,
    }


def run_sqlite(files: list[Path], db_path: Path, sync: str = "FULL") -> tuple[int, int]:
    from sqlalchemy import (
        Column,
        Integer,
        MetaData,
        String,
        Table,
        Text,
        create_engine,
        event,
        func,
        insert,
        select,
    )

    engine = create_engine(f"sqlite:///{db_path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={sync}")
        cur.close()

    md = MetaData()
    msgs = Table("message", md,
                 Column("id", Integer, primary_key=True),
                 Column("ticket_id", Integer, nullable=False, index=True),
                 Column("message_id", String(998), unique=True),
                 Column("subject", Text), Column("sender", Text), Column("body", Text))
    md.create_all(engine)
    next_ticket = 1
    for f in files:
        m = parse_one(f.read_bytes())
        with engine.begin() as conn:  # one durable transaction per message
            tid = None
            if m["parents"]:
                tid = conn.execute(select(msgs.c.ticket_id)
                                   .where(msgs.c.message_id.in_(m["parents"])).limit(1)
                                   ).scalar()
            if tid is None:
                tid, next_ticket = next_ticket, next_ticket + 1
            conn.execute(insert(msgs).values(ticket_id=tid, message_id=m["message_id"],
                                             subject=m["subject"], sender=m["sender"],
                                             body=m["body"]))
    with engine.connect() as conn:
        tickets = int(conn.execute(select(func.count(func.distinct(msgs.c.ticket_id)))).scalar()
                      or 0)
        total = int(conn.execute(select(func.count()).select_from(msgs)).scalar() or 0)
    engine.dispose()
    return tickets, total - tickets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--db-dir", type=Path, default=None,
                    help="where the SQLite file goes (default: a fresh temp dir)")
    args = ap.parse_args()
    files = sorted(args.corpus.glob("*.eml"))
    for f in files:  # warm the page cache for every run alike
        f.read_bytes()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.db_dir) as d:
        tickets, followups = run_sqlite(files, Path(d) / "bench.db")
    dt = time.perf_counter() - t0
    print(f"{NAME} {len(files)} msgs {dt:.2f} s {len(files) / dt:.1f} msg/s "
          f"tickets={tickets} followups={followups}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
