"""Benchmark child processes: a spool worker, an SMTP listener, or a crowd of SMTP clients.

Each runs in its own process so that its peak RSS (``VmHWM``) is its own and
so that clients never share a GIL with the server they measure. A child
prints ``ready`` after its set-up, waits for a line on stdin (so several can
start together and set-up is not timed), then prints one JSON line of results.

    child.py drain URL TMPDIR DOMAINS DEADLINE_S [PROFILE_PATH|""] [CAPTURE_PATH]
    child.py smtp-server URL
    child.py smtp-clients PORT CLIENTS PER_CLIENT CORPUS_DIR
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path

import common  # noqa: F401 - puts the repo on sys.path
from common import SUPPORT, bench_config, load_corpus, proc_status_kb
from sqlalchemy import func, select

from mailticket.app import assemble
from mailticket.config import ListenerConfig
from mailticket.intake.listener import start_listener
from mailticket.runners.worker import SpoolWorker
from mailticket.store.db import make_engine, make_sessionmaker
from mailticket.store.schema import SpoolItem

BARE_LF = re.compile(rb"(?<!\r)\n")


def _go() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def drain(url: str, tmp: str, domains: str, deadline_s: str, profile: str | None,
          capture: str | None = None) -> None:
    """Run one SpoolWorker until the spool has nothing due or the deadline passes.

    With ``capture``, every distinct SQL statement the worker runs is written
    there (pickled: statement -> first parameters, count) for ``scale.py``.
    """
    config = bench_config(Path(tmp), url, domains.split(","))
    engine = make_engine(url)
    recorder = None
    if capture:
        from scale import Capture

        recorder = Capture(engine)
    worker = SpoolWorker(assemble(config, engine))
    rss_before = proc_status_kb("VmRSS")
    _go()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    cpu_started = time.process_time()
    deadline = started + float(deadline_s)
    count = 0
    while time.perf_counter() < deadline and worker.run_once():
        count += 1
    seconds = time.perf_counter() - started
    if profiler is not None and profile:
        profiler.disable()
        profiler.dump_stats(profile)
    if recorder is not None and capture:
        import pickle

        recorder.close()
        Path(capture).write_bytes(pickle.dumps(recorder.seen))
    engine.dispose()
    print(json.dumps({
        "count": count, "failed": worker.failed, "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu_started,
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


class SmtpConversation:
    """One client connection speaking plain SMTP over asyncio streams, one command at a time.

    The load generator is asyncio rather than smtplib threads so that the
    clients spend little CPU of their own (on a two-core machine a hundred
    smtplib threads cost more CPU per mail than the server under test). It
    sends exactly what smtplib.sendmail does: MAIL FROM with SIZE=, RCPT TO,
    DATA, the dot-stuffed body, and waits for each reply before the next line.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> tuple[int, bytes]:
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line[3:4] != b"-":
                return int(line[:3]), line

    async def command(self, line: bytes, expect: int) -> None:
        self.writer.write(line)
        code, text = await self.reply()
        if code != expect:
            raise RuntimeError(f"{line[:20]!r} -> {text!r}")

    async def sendmail(self, sender: str, rcpt: str, stuffed: bytes, size: int) -> None:
        await self.command(f"MAIL FROM:<{sender}> SIZE={size}\r\n".encode(), 250)
        await self.command(f"RCPT TO:<{rcpt}>\r\n".encode(), 250)
        await self.command(b"DATA\r\n", 354)
        await self.command(stuffed, 250)


def _stuffed(raw: bytes) -> bytes:
    """The DATA payload smtplib would send: CRLF line ends, dots doubled, CRLF . CRLF."""
    body = BARE_LF.sub(b"\r\n", raw)
    body = re.sub(rb"(?m)^\.", b"..", body)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


async def _clients(port: int, n: int, each: int, corpus: str) -> dict[str, object]:
    mails = load_corpus(Path(corpus))
    payloads = [(m.sender, _stuffed(m.raw), len(BARE_LF.sub(b"\r\n", m.raw))) for m in mails]
    latencies: list[float] = []
    errors: list[str] = []
    conversations: list[SmtpConversation | None] = []
    for _ in range(n):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            talk = SmtpConversation(reader, writer)
            code, text = await talk.reply()
            if code != 220:
                raise RuntimeError(f"greeting {text!r}")
            await talk.command(b"EHLO client.test\r\n", 250)
            conversations.append(talk)
        except Exception as exc:  # a refused connection is a figure, not a crash
            errors.append(f"connect: {exc.__class__.__name__}: {exc}")
            conversations.append(None)

    async def client(k: int, talk: SmtpConversation) -> None:
        try:
            for j in range(each):
                sender, stuffed, size = payloads[(k * each + j) % len(payloads)]
                t0 = time.perf_counter()
                await talk.sendmail(sender, SUPPORT, stuffed, size)
                latencies.append(time.perf_counter() - t0)
            await talk.command(b"QUIT\r\n", 221)
        except Exception as exc:  # a refused or broken session is a figure, not a crash
            errors.append(f"{exc.__class__.__name__}: {exc}")
        finally:
            talk.writer.close()

    await asyncio.to_thread(_go)
    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client(k, t) for k, t in enumerate(conversations) if t is not None))
    seconds = time.perf_counter() - t0
    return {"latencies": latencies, "seconds": seconds, "errors": errors[:5],
            "error_count": len(errors), "cpu_seconds": time.process_time() - cpu0}


def smtp_clients(port: str, clients: str, per_client: str, corpus: str) -> None:
    """``clients`` concurrent connections, each sending ``per_client`` corpus mails in turn."""
    result = asyncio.run(_clients(int(port), int(clients), int(per_client), corpus))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "drain":
        drain(args[0], args[1], args[2], args[3], args[4] if len(args) > 4 and args[4] else None,
              args[5] if len(args) > 5 else None)
    elif command == "smtp-server":
        smtp_server(*args)
    elif command == "smtp-clients":
        smtp_clients(*args)
    else:
        raise SystemExit(f"unknown command {command}")
