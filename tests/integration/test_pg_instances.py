"""Several daemons on one PostgreSQL share the spool and outbox; a killed one's work is taken over."""

from __future__ import annotations

import email
import email.policy
import smtplib
import time
from collections import Counter
from pathlib import Path

from daemon_proc import Daemon, free_port, wait_until, write_config
from sqlalchemy import text
from support.databases import postgres_database
from support.mails import build, new_id

from mailticket.store.db import make_engine


def send_all(port: int, ids: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        for mid in ids:
            # One sender per mail: the per-recipient cap on automatic mail (40 a day)
            # would otherwise, rightly, stop acknowledgements to a single address.
            sender = f"user-{mid[:8]}@acme.example"
            client.sendmail(sender, ["support@provider.example"],
                            build(from_=sender, message_id=mid, subject=mid[:8]))


def acks(*dirs: Path) -> list[str]:
    """In-Reply-To of every acknowledgement written by any instance."""
    found = []
    for directory in dirs:
        for path in (directory / "outgoing" / "new").glob("*"):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if msg["Auto-Submitted"] == "auto-replied":
                found.append(str(msg["In-Reply-To"]).strip("<>"))
    return found


def counts(url: str) -> tuple[int, Counter[str]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        tickets = conn.execute(text("SELECT count(*) FROM tickets")).scalar_one()
        ids = Counter(r[0] for r in conn.execute(
            text("SELECT message_id FROM articles WHERE direction = 'in'")))
    engine.dispose()
    return int(tickets), ids


def test_two_instances_share_work_and_take_over_a_killed_one(tmp_path: Path) -> None:
    with postgres_database() as url:
        dirs = [tmp_path / "a", tmp_path / "b"]
        ports = [free_port(), free_port()]
        daemons = []
        for directory, port in zip(dirs, ports, strict=True):
            directory.mkdir()
            daemons.append(Daemon(write_config(directory, port=port, db_url=url)).start())
        try:
            first = [new_id("acme.example") for _ in range(30)]
            second = [new_id("acme.example") for _ in range(30)]
            send_all(ports[0], first[:15] + second[:15])
            send_all(ports[1], first[15:] + second[15:])
            wait_until(lambda: counts(url)[0] == 60, timeout=60, interval=0.2)
            # Both instances did work (each writes its own maildir).
            per_instance = [len(acks(d)) for d in dirs]
            assert all(n > 0 for n in per_instance), per_instance

            # Kill one mid-stream: its claimed rows come back when the lease (5 s) expires.
            third = [new_id("acme.example") for _ in range(40)]
            send_all(ports[0], third)
            daemons[0].kill9()
            wait_until(lambda: counts(url)[0] == 100, timeout=60, interval=0.2)
            time.sleep(1)
            tickets, ids = counts(url)
            assert tickets == 100
            assert set(ids) == set(first + second + third)
            assert all(n == 1 for n in ids.values())
            # Every acknowledgement went out at least once; only the killed window may repeat.
            everyone = set(first + second + third)
            wait_until(lambda: set(acks(*dirs)) == everyone, timeout=30, interval=0.2)
            sent = Counter(acks(*dirs))
            assert sum(n - 1 for n in sent.values()) <= 2
            assert daemons[1].stop() == 0
        finally:
            for daemon in daemons:
                daemon.close()
