"""(a) SMTP accept rate and latency into the durable spool, at 1, 10 and 100 concurrent clients.

The real listener (``transport.lmtp.start_listener``) runs on this process's
event loop; the clients are threads of one separate process (smtplib, one
connection each, several mails per connection as an MTA does), so they never
share a GIL with the server. Latency is one ``sendmail`` call: MAIL, RCPT,
DATA and the 250 that comes only after the spool row is committed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from common import SUPPORT, Results, percentile
from procs import CHILD
from sqlalchemy import event, func, select

from mailticket.config import ListenerConfig
from mailticket.intake.listener import start_listener
from mailticket.store.db import make_engine, make_sessionmaker
from mailticket.store.schema import SpoolItem

# (clients, mails per client): 500 to 1,000 mails per level, fewer for one client.
LEVELS = ((1, 100), (10, 50), (100, 10))


async def _level(factory: Any, clients: int, each: int, corpus: Path) -> dict[str, Any]:
    listener = ListenerConfig(host="127.0.0.1", port=0)
    server = await start_listener(listener, factory, (SUPPORT,), hostname="bench.local",
                                  max_connections=clients + 10,
                                  max_connections_per_ip=clients + 10)
    port = server.sockets[0].getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, CHILD, "smtp-clients", str(port),
        str(clients), str(each), str(corpus),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    await proc.stdout.readline()
    cpu0 = time.process_time()
    proc.stdin.write(b"go\n")
    await proc.stdin.drain()
    out = await proc.stdout.read()
    server_cpu = time.process_time() - cpu0
    await proc.wait()
    server.close()
    await server.wait_closed()
    data: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    data["server_cpu_seconds"] = server_cpu
    return data


def run(res: Results, db: Any, tmp: Path, corpus: Path) -> dict[str, float]:
    """Every backend × level; returns p99 latency in ms keyed ``sqlite-100`` etc."""
    p99s: dict[str, float] = {}
    plan = [(b, c, e) for b in ("sqlite", "postgresql") for c, e in LEVELS]
    for backend, clients, each in plan:
        with db(backend, tmp) as url:
            engine = make_engine(url)
            factory = make_sessionmaker(engine)
            commits: list[int] = []
            event.listen(engine, "commit", lambda _conn, seen=commits: seen.append(1))
            data = asyncio.run(_level(factory, clients, each, corpus))
            with factory() as s:
                rows = int(s.scalar(select(func.count()).select_from(SpoolItem)) or 0)
            engine.dispose()
        lat = [x * 1000 for x in data["latencies"]]
        rate = len(lat) / data["seconds"] if data["seconds"] else 0.0
        p50, p99 = percentile(lat, 50), percentile(lat, 99)
        label = f"{backend} {clients} clients"
        p99s[f"{backend}-{clients}"] = p99
        errors = f", {data['error_count']} errors: {data['errors'][:2]}" \
            if data["error_count"] else ""
        mails = max(1, len(lat))
        res.add("a smtp accept", label, f"{rate:.0f} msg/s",
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(lat, default=0):.1f} ms; "
                f"{len(lat)} mails, {rows} spool rows, {len(lat) / max(1, len(commits)):.1f} "
                f"mails/commit; CPU per mail: server {data['server_cpu_seconds'] / mails * 1000:.2f}"
                f" ms, clients {data['cpu_seconds'] / mails * 1000:.2f} ms{errors}")
    return p99s
