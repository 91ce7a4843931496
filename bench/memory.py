"""(d) Peak RSS: the SMTP listener receiving a 25 MB attachment, and a worker draining 10,000 mails.

Each measured part runs alone in a child process and reports its own
``VmHWM`` (peak resident set) from /proc. The 25 MB attachment is random
bytes, base64-encoded as a mail client would send it (about 34 MB on the
wire), so the listener's size limit is raised for this run; the worker then
processes that one mail (parse, attachment stored as a blob, ack composed).

Where the worker's peak goes (issue 9, profiled with VmHWM at each stage and
sqlite3_memory_highwater): the parse costs about one more copy of the mail
(mailticket/mail/lean.py) and the raw mail is let go once parsed; what is left
is SQLite rewriting the whole spool row, raw mail included, for the UPDATE
that claims it and the one that finishes it (about twice the mail each).
"""

from __future__ import annotations

import email.policy
import os
import smtplib
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from common import SUPPORT, Mail, Results
from procs import first_line, release, result, spawn
from throughput import outcome_counts, spool_all

from mailticket.store.db import make_engine

ATTACHMENT_BYTES = 25 * 1000 * 1000


def big_mail() -> bytes:
    """A customer mail with one 25 MB attachment (about 34 MB after base64)."""
    msg = EmailMessage()
    msg["From"] = "Ivan Petrov <ivan.0@acme.test>"
    msg["To"] = SUPPORT
    msg["Subject"] = "Дамп базы для анализа"
    msg["Message-ID"] = "<big-attachment-1@mail.acme.test>"
    msg.set_content("Добрый день! Во вложении дамп базы.\n")
    msg.add_attachment(os.urandom(ATTACHMENT_BYTES), maintype="application",
                       subtype="octet-stream", filename="dump.bin")
    return msg.as_bytes(policy=email.policy.SMTP)


def attachment(res: Results, db: Any, tmp: Path, domains: list[str]) -> dict[str, float]:
    """Listener RSS while receiving the big mail, then worker RSS while processing it."""
    raw = big_mail()
    with db("sqlite", tmp) as url:
        server = spawn("smtp-server", url)
        try:
            port = int(first_line(server))
            with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test",
                              timeout=300) as smtp:
                smtp.sendmail("ivan.0@acme.test", [SUPPORT], raw)
        except BaseException:
            server.kill()
            raise
        release([server])
        got = result(server)
        worker = spawn("drain", url, str(tmp), ",".join(domains), "300")
        first_line(worker)
        release([worker])
        done = result(worker)
        stored = outcome_counts(url)
    listener_mb = got["hwm_kb"] / 1024
    worker_mb = done["hwm_kb"] / 1024
    res.add("d peak rss", "listener receiving 25 MB attachment", f"{listener_mb:.0f} MB",
            f"{len(raw) / 1e6:.1f} MB message over SMTP, {got['rows']} spool row (SQLite); idle "
            f"{got['rss_before_kb'] / 1024:.0f} MB")
    res.add("d peak rss", "worker processing it", f"{worker_mb:.0f} MB",
            f"{done['count']} processed in {done['seconds']:.1f} s, tickets={stored['tickets']}; "
            f"idle worker {done['rss_before_kb'] / 1024:.0f} MB")
    return {"listener": listener_mb, "worker": worker_mb}


def queue(res: Results, db: Any, tmp: Path, mails: list[Mail], domains: list[str],
          total: int, limit_s: float) -> float:
    """Worker RSS while draining a spool of ``total`` queued mails (within ``limit_s``)."""
    from common import copies

    with db("sqlite", tmp) as url:
        spool_all(url, copies(mails, total))
        size = os.path.getsize(make_engine(url).url.database or "")
        worker = spawn("drain", url, str(tmp), ",".join(domains), str(limit_s))
        first_line(worker)
        release([worker])
        done = result(worker)
    mb = float(done["hwm_kb"]) / 1024
    partial = f" (of {total}; {limit_s:.0f} s limit)" if done["count"] < total else ""
    res.add("d peak rss", f"worker draining {total:,} queued mails", f"{mb:.0f} MB",
            f"{done['count']} processed{partial} at {done['count'] / done['seconds']:.1f} msg/s;"
            f" database {size / 1e6:.0f} MB")
    return mb
