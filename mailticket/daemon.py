"""Composition root: build the App from the config and run every part of the daemon.

Start order: config → logging → database (schema checked) → SMTP/LMTP
listeners → spool workers, outbox drainer, IMAP pollers → READY=1 to systemd.
Stop order on SIGTERM: stop intake (close listeners, stop pollers), let
workers finish the message in hand, flush the outbox, exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import IO

from mailticket import log as logsetup
from mailticket.app import App, assemble
from mailticket.config import Config, load
from mailticket.errors import ConfigError, MailticketError, SchemaError
from mailticket.intake.imap import start_pollers
from mailticket.intake.listener import start_listener
from mailticket.intake.submission import EngineerAuthenticator
from mailticket.metrics import Metrics, start_metrics_server
from mailticket.runners import gates
from mailticket.runners.outbox import OutboxDrainer, relay_tls_context
from mailticket.runners.recovery import Recovery
from mailticket.runners.scheduler import Scheduler
from mailticket.runners.worker import SpoolWorker
from mailticket.store import migrate
from mailticket.store.db import is_sqlite, make_engine

log = logsetup.get("daemon")


def build_app(config: Config, *, create_empty_schema: bool = True) -> App:
    """Open the database and check its schema (an empty one is initialised); build the App."""
    engine = make_engine(config.database.url)
    current = migrate.current_revision(engine)
    if current is None and create_empty_schema:
        log.info("empty database: creating the schema", extra={"url": _safe_url(config)})
        migrate.upgrade(engine)
    migrate.require_current(engine)
    app = assemble(config, engine, Metrics())
    for problem in app.knowledge.problems:
        log.warning("knowledge base article skipped", extra={"problem": problem})
    for warning in config.warnings:
        log.warning("config warning", extra={"warning": str(warning)})
    return app


def _safe_url(config: Config) -> str:
    url = config.database.url
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url


class InstanceLock:
    """SQLite allows one daemon per database file; a second one is refused clearly."""

    def __init__(self, config: Config) -> None:
        self.path: Path | None = None
        self.handle: IO[str] | None = None
        url = config.database.url
        if url.startswith("sqlite:///") and ":memory:" not in url:
            self.path = Path(url.removeprefix("sqlite:///") + ".lock")

    def acquire(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "w")  # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MailticketError(
                f"another mailticket instance already uses {self.path.with_suffix('')}; "
                "SQLite supports one instance: use PostgreSQL to run several"
            ) from None
        self.handle.write(str(os.getpid()))
        self.handle.flush()


class PidFile:
    """``serve --pid-file``: our PID, for running without systemd.

    Written by the daemon itself once it accepts mail (a PID taken from ``$!``
    names whatever wrapper started it: ``sudo``, ``sh -c``, ``nohup``),
    atomically, so a reader never sees half a number; removed on a clean stop
    when it still names us. One left by ``kill -9`` is overwritten at the next start.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, self.path)
        log.info("pid file written", extra={"path": str(self.path), "pid": os.getpid()})

    def remove(self) -> None:
        if self.path is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if int(self.path.read_text().strip()) == os.getpid():
                self.path.unlink()


def sd_notify(message: str) -> None:
    """Tell systemd about our state (no-op when not started by systemd)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        # Never block the event loop on a full notify queue: a lost WATCHDOG is
        # retried on the next beat, a hung daemon is not.
        sock.setblocking(False)
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError as exc:
            log.warning("sd_notify failed", extra={"error": str(exc), "message": message})


async def serve(config: Config, pid_file: Path | None = None) -> None:
    """Run until SIGTERM/SIGINT."""

    lock = InstanceLock(config)
    lock.acquire()
    # Crash tests only: hold the runners at named points (a no-op unless the variable is set).
    gate = gates.from_environ(os.environ)
    app = build_app(config)
    if not is_sqlite(app.engine):
        log.info("PostgreSQL backend: several instances may share this database")
    # Before any worker claims: take back what a dead predecessor held, then beat.
    recovery = Recovery(app.factory, config.daemon.instance_id, config.daemon.instance_grace,
                        single_instance=is_sqlite(app.engine))
    released = await asyncio.to_thread(recovery.start)
    log.info("instance registered", extra={"holder": recovery.holder, "taken_back": released})
    loop = asyncio.get_running_loop()
    stop_async = asyncio.Event()
    stop_threads = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_async.set)
    reloader = Reloader(app)
    loop.add_signal_handler(signal.SIGHUP, reloader.request)

    # A bad relay.ca_file stops the start before any listener accepts mail.
    relay_context = relay_tls_context(config.relay)
    servers = []
    for listener in config.listeners:
        authenticator = EngineerAuthenticator(config.engineers) if listener.submission else None
        server = await start_listener(
            listener,
            app.factory,
            config.mail.support_addresses,
            authenticator=authenticator,
            hostname=listener.hostname or None,
            max_connections=listener.max_connections,
            max_connections_per_ip=listener.max_connections_per_ip,
            metrics=app.metrics,
        )
        servers.append(server)
        log.info("listening", extra={"protocol": listener.protocol, "host": listener.host,
                                     "port": listener.port})
    metrics_server = (
        start_metrics_server(config.daemon.metrics_host, config.daemon.metrics_port,
                             app.factory, app.metrics)
        if config.daemon.metrics_port else None
    )
    if metrics_server is not None:
        log.info("metrics endpoint", extra={"host": config.daemon.metrics_host,
                                            "port": metrics_server.port})
    threads: list[threading.Thread] = []
    drainer = OutboxDrainer(
        app.factory,
        config.relay,
        tls_context=relay_context,
        helo_name=config.mail.message_id_domain,
        # Long enough for a slow relay, short enough that another instance takes
        # over a killed one's outbox rows in minutes, not hours.
        lease_seconds=max(config.worker.lease_seconds, 4 * config.relay.timeout),
        metrics=app.metrics,
        gate=gate,
        holder=recovery.holder,
    )
    # Each committed message wakes the drainer, so its acks leave at once.
    workers = [
        SpoolWorker(app, name=f"worker-{i + 1}", gate=gate, holder=recovery.holder,
                    on_commit=drainer.wake)
        for i in range(config.daemon.workers)
    ]
    for worker in workers:
        threads.append(threading.Thread(target=worker.run, args=(stop_threads,), name=worker.name))
    threads.append(threading.Thread(target=drainer.run, args=(stop_threads,), name="relay"))
    threads.append(threading.Thread(target=recovery.run, args=(stop_threads,), name="recovery"))
    for thread in threads:
        thread.start()
    imap_stop = threading.Event()
    imap_threads = start_pollers(config.imap, app.factory, imap_stop, metrics=app.metrics)
    reloader.attach(workers)
    watchdog = Watchdog(workers, config)
    # SLA scan (at once, to catch up after downtime, then every minute), reports, housekeeping.
    scheduler = Scheduler(app)
    scheduler.start()
    reloader.scheduler = scheduler
    pid = PidFile(pid_file)
    pid.write()
    sd_notify("READY=1\nSTATUS=accepting mail")
    log.info("mailticket ready", extra={"instance": config.daemon.instance_id,
                                        "workers": len(workers), "imap_accounts": len(config.imap)})
    while not stop_async.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_async.wait(), timeout=1)
        if reloader.pending:
            await asyncio.to_thread(reloader.reload)
        watchdog.beat()
    sd_notify("STOPPING=1")
    log.info("stopping: closing listeners")
    for server in servers:
        server.close()
    imap_stop.set()
    scheduler.shutdown()
    stop_threads.set()
    drainer.wake()
    for thread in [*threads, *imap_threads]:
        await asyncio.to_thread(thread.join, 30)
    sent = await asyncio.to_thread(drainer.flush, 10.0)
    with contextlib.suppress(MailticketError):
        # Not fatal: another instance forgets us after the grace.
        await asyncio.to_thread(recovery.stop)
    if metrics_server is not None:
        metrics_server.close()
    pid.remove()
    log.info("stopped", extra={"outbox_flushed": sent})
    app.engine.dispose()


class Reloader:
    """SIGHUP: re-read the config; a bad one is refused and the running one kept.

    Contracts, engineers, SLA plans, mail settings, templates and the knowledge
    base take effect for the next message: a new immutable :class:`App` is built
    and handed to each worker and the scheduler by one reference assignment, so a
    message in hand finishes with the App it started with. Listeners, the
    database and IMAP accounts need a restart (logged), because changing them
    under open connections would drop mail.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.pending = False
        self.workers: list[SpoolWorker] = []
        self.scheduler: Scheduler | None = None

    def attach(self, workers: list[SpoolWorker]) -> None:
        self.workers = workers

    def request(self) -> None:
        self.pending = True

    def reload(self) -> bool:
        self.pending = False
        sd_notify("RELOADING=1")
        old = self.app.config
        try:
            new = load(old.path)
        except ConfigError as exc:
            log.error("reload refused: the config has problems; keeping the running config",
                      extra={"problems": str(exc), "file": str(old.path)})
            sd_notify("READY=1\nSTATUS=reload refused: config has problems")
            return False
        app = self.app.reloaded(new)
        for worker in self.workers:
            worker.app = app
        if self.scheduler is not None:
            self.scheduler.app = app
        self.app = app
        needs_restart = [name for name in ("listeners", "database", "imap", "relay", "daemon")
                         if getattr(new, name) != getattr(old, name)]
        if needs_restart:
            log.warning("reloaded; these sections change only after a restart",
                        extra={"sections": ",".join(needs_restart)})
        log.info("configuration reloaded", extra={"contracts": len(new.contracts),
                                                  "engineers": len(new.engineers),
                                                  "kb_articles": len(app.knowledge.articles)})
        sd_notify("READY=1\nSTATUS=accepting mail")
        return True


class Watchdog:
    """Tell systemd we are alive, only while every worker loop is turning.

    Beats at most every ``interval`` seconds (the unit's WatchdogSec=60 / 6).
    """

    def __init__(self, workers: list[SpoolWorker], config: Config, interval: float = 10.0) -> None:
        self.workers = workers
        self.limit = max(60.0, config.daemon.poll_interval * 2 + 10)
        self.interval = interval
        self.last = 0.0

    def beat(self) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        stale = [w.name for w in self.workers if now - w.last_beat > self.limit]
        if stale:
            log.error("worker loop stalled; withholding WATCHDOG",
                      extra={"workers": ",".join(stale)})
            return
        sd_notify("WATCHDOG=1")


def run(config: Config, pid_file: Path | None = None) -> int:
    """Entry point for ``mailticket serve``."""
    logsetup.setup(config.daemon.log_level, config.daemon.log_format)
    try:
        asyncio.run(serve(config, pid_file))
    except SchemaError:
        raise
    return 0
