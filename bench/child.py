"""Benchmark child processes: a spool worker, an SMTP listener, or a crowd of SMTP clients.

Each runs in its own process so that its peak RSS (``VmHWM``) is its own and
so that clients never share a GIL with the server they measure. A child
prints ``ready`` after its set-up, waits for a line on stdin (so several can
start together and set-up is not timed), then prints one JSON line of results.

    child.py drain URL TMPDIR DOMAINS DEADLINE_S [PROFILE_PATH]
    child.py smtp-server URL
    child.py smtp-clients PORT CLIENTS PER_CLIENT CORPUS_DIR
"""

from __future__ import annotations

import asyncio
import json
import re
import smtplib
import sys
import threading
import time
from pathlib import Path

import common  # noqa: F401 - puts the repo on sys.path
from common import SUPPORT, bench_config, load_corpus, proc_status_kb
from sqlalchemy import func, select

from mailticket.config import ListenerConfig
from mailticket.notify import Notifier
from mailticket.render import Renderer
from mailticket.store.db import make_engine, make_sessionmaker
from mailticket.store.schema import SpoolItem
from mailticket.transport.lmtp import start_listener
from mailticket.worker import SpoolWorker

BARE_LF = re.compile(rb"(?<!\r)\n")


def _go() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def drain(url: str, tmp: str, domains: str, deadline_s: str, profile: str | None) -> None:
    """Run one SpoolWorker until the spool has nothing due or the deadline passes."""
    config = bench_config(Path(tmp), url, domains.split(","))
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    worker = SpoolWorker(factory, config, Notifier(config, Renderer(config.templates_dir)))
    rss_before = proc_status_kb("VmRSS")
    _go()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    deadline = started + float(deadline_s)
    count = 0
    while time.perf_counter() < deadline and worker.run_once():
        count += 1
    seconds = time.perf_counter() - started
    if profiler is not None and profile:
        profiler.disable()
        profiler.dump_stats(profile)
    engine.dispose()
    print(json.dumps({
        "count": count, "failed": worker.failed, "seconds": seconds,
        "rss_before_kb": rss_before, "hwm_kb": proc_status_kb("VmHWM"),
    }), flush=True)


async def _serve(url: str) -> None:
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    listener = ListenerConfig(host="127.0.0.1", port=0, max_message_size=48 * 1024 * 1024)
    server = await start_listener(listener, factory, (SUPPORT,), hostname="bench.local",
                                  max_connections=500, max_connections_per_ip=500)
    rss_before = proc_status_kb("VmRSS")
    print(server.sockets[0].getsockname()[1], flush=True)
    # The parent writes a line once its client has had the final reply.
    await asyncio.to_thread(sys.stdin.readline)
    server.close()
    await server.wait_closed()
    with factory() as session:
        rows = int(session.scalar(select(func.count()).select_from(SpoolItem)) or 0)
    engine.dispose()
    print(json.dumps({"rss_before_kb": rss_before, "hwm_kb": proc_status_kb("VmHWM"),
                      "rows": rows}), flush=True)


def smtp_server(url: str) -> None:
    """Serve SMTP into the spool until told to stop on stdin, then report RSS."""
    asyncio.run(_serve(url))


def smtp_clients(port: str, clients: str, per_client: str, corpus: str) -> None:
    """``clients`` threads, each one connection sending ``per_client`` corpus mails."""
    # The corpus files have LF line ends; on the wire SMTP needs CRLF (smtplib
    # sends bytes as they are).
    mails = [BARE_LF.sub(b"\r\n", m.raw) for m in load_corpus(Path(corpus))]
    senders = [m.sender for m in load_corpus(Path(corpus))]
    n, each = int(clients), int(per_client)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(n + 1)

    def client(k: int) -> None:
        mine: list[float] = []
        smtp = None
        try:
            smtp = smtplib.SMTP("127.0.0.1", int(port), local_hostname="client.test", timeout=120)
        except Exception as exc:  # a refused connection is a figure, not a crash
            with lock:
                errors.append(f"connect: {exc.__class__.__name__}: {exc}")
        start.wait()
        if smtp is None:
            return
        try:
            for j in range(each):
                i = (k * each + j) % len(mails)
                t0 = time.perf_counter()
                smtp.sendmail(senders[i], [SUPPORT], mails[i])
                mine.append(time.perf_counter() - t0)
            smtp.quit()
        except Exception as exc:  # a refused or broken session is a figure, not a crash
            with lock:
                errors.append(f"{exc.__class__.__name__}: {exc}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for thread in threads:
        thread.start()
    _go()
    start.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - t0
    print(json.dumps({"latencies": latencies, "seconds": seconds, "errors": errors[:5],
                      "error_count": len(errors)}), flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "drain":
        drain(args[0], args[1], args[2], args[3], args[4] if len(args) > 4 else None)
    elif command == "smtp-server":
        smtp_server(*args)
    elif command == "smtp-clients":
        smtp_clients(*args)
    else:
        raise SystemExit(f"unknown command {command}")
