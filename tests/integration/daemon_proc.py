"""Run the real daemon as a child process, the way systemd would, and talk to it.

Crash tests stop it at a chosen point with :class:`Gates` (the test's end of
``mailticket.runners.gates``) and kill it there, instead of racing the clock.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from support.configs import standard_plan_toml

from mailticket.runners import gates as runner_gates

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, *, port: int, db_url: str | None = None,
                 poll_interval: float = 0.05, extra: str = "") -> Path:
    """A config like the shipped one, with its own port, database and maildir."""
    path = directory / "mailticket.toml"
    path.write_text(f"""
[daemon]
instance_id = "mt-e2e"
data_dir = "{directory}"
templates_dir = "{REPO / 'templates'}"
poll_interval = {poll_interval}
log_level = "INFO"

[database]
url = "{db_url or 'sqlite:///' + str(directory / 'mt.db')}"

[[listeners]]
host = "127.0.0.1"
port = {port}

[relay]
maildir = "{directory / 'outgoing'}"
timeout = 1.0

[mail]
support_addresses = ["support@provider.example"]
message_id_domain = "mt.provider.example"
reply_token_secret = "e2e-secret-0123456789abcdef"

[worker]
max_attempts = 3
lease_seconds = 5
retry_base_seconds = 0.1
retry_max_seconds = 1

[calendars.24x7]
always_open = true

[calendars.business]
timezone = "Europe/Moscow"
mon = ["08:00-20:00"]
tue = ["08:00-20:00"]
wed = ["08:00-20:00"]
thu = ["08:00-20:00"]
fri = ["08:00-20:00"]

{standard_plan_toml("business")}

[engineers."anna@provider.example"]
name = "Anna Petrova"
line = "L1"

# The daemon's scheduler runs on the real clock: with digests on, Anna's morning
# digest would join the outgoing mail a minute after start whenever a test ran on
# a Moscow weekday between 08:00 and 20:00, and not otherwise. Off, the mail a
# test counts does not depend on the hour it runs (the digests have their own
# tests on a simulated clock: test_digest.py, test_handover.py).
[digest]
enabled = false
weekly = false
handover = false

[[contracts]]
id = "acme"
name = "ACME Ltd"
sla_plan = "standard"
domains = ["acme.example"]
locale = "ru"
{extra}
""")
    return path


class Gates:
    """Arms test-only gates in a daemon, waits until it holds at one, and lets it go on.

    Points are named ``<point>@<n>``: the ``n``-th pass of ``<point>`` in that
    process (``mailticket.runners.gates`` lists the points).
    """

    def __init__(self, directory: Path, *points: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.points = points

    @property
    def env(self) -> dict[str, str]:
        """The environment that arms ``points`` in a daemon started with it."""
        return {runner_gates.ENV: f"{self.directory}:{','.join(self.points)}"}

    def wait(self, point: str, process: Daemon | subprocess.Popen[str],
             timeout: float = 30.0) -> str:
        """Block until ``process`` holds at ``point``; its marker (pid, thread).

        The timeout only guards against a test that would hang: the marker is the
        synchronisation. A process that exits first fails the test at once.
        """
        proc = process.proc if isinstance(process, Daemon) else process
        assert proc is not None
        marker = self.directory / f"{point}.reached"

        def reached() -> bool:
            if marker.exists():
                return True
            if proc.poll() is not None:
                if isinstance(process, Daemon):
                    output = process.read_log()
                else:
                    output = process.stderr.read() if process.stderr else ""
                raise AssertionError(f"exited ({proc.returncode}) before {point}:\n{output}")
            return False

        wait_until(reached, timeout=timeout, interval=0.01)
        return marker.read_text()

    def release(self, point: str, timeout: float = 30.0) -> None:
        """Let the process held (or about to hold) at ``point`` go on."""
        fifo = self.directory / f"{point}.release"
        deadline = time.monotonic() + timeout
        while True:
            try:
                # Non-blocking: fails until the gate has opened its end (ENXIO)
                # or created the FIFO at all (ENOENT).
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno not in (errno.ENXIO, errno.ENOENT):
                    raise
                if time.monotonic() > deadline:
                    raise AssertionError(f"nothing held at {point}") from None
                time.sleep(0.01)
                continue
            os.close(fd)  # EOF on the gate's end: it goes on
            return


class Daemon:
    """``mailticket serve`` as a child with a NOTIFY_SOCKET, like systemd's Type=notify."""

    def __init__(self, config: Path, gates: Gates | None = None) -> None:
        self.config = config
        self.gates = gates
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify_dir = Path(tempfile.mkdtemp(prefix="mt-notify-"))
        self.notify_path = self.notify_dir / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"

    def start(self, timeout: float = 20.0) -> Daemon:
        env = dict(os.environ, NOTIFY_SOCKET=str(self.notify_path), PYTHONUNBUFFERED="1")
        if self.gates is not None:
            env.update(self.gates.env)
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailticket", "-c", str(self.config), "serve"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=self.config.parent,
        )
        self.wait_for_notify("READY=1", timeout)
        return self

    def wait_for_notify(self, wanted: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.notify.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                message = self.notify.recv(4096).decode()
            except TimeoutError:
                break
            if wanted in message:
                return message
        raise AssertionError(f"daemon never sent {wanted}; log:\n{self.read_log()}")

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"daemon did not stop in {timeout}s:\n{self.read_log()}") from None
        self.log.close()
        return int(self.proc.returncode)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.notify.close()


def cli(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the ``mailticket`` CLI against a config, as an admin would."""
    result = subprocess.run(
        [sys.executable, "-m", "mailticket", "-c", str(config), *args],
        capture_output=True, text=True, timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"mailticket {' '.join(args)} -> {result.returncode}\n{result.stderr}")
    return result


def tickets(config: Path) -> list[dict[str, Any]]:
    return list(json.loads(cli(config, "tickets", "list", "--json").stdout))


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


# --- reading a stopped or running daemon's SQLite database -------------------------------


def query(directory: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows of ``sql`` in the daemon's ``mt.db`` in ``directory`` (read beside the daemon)."""
    conn = sqlite3.connect(directory / "mt.db", timeout=30)
    try:
        return [tuple(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def states(directory: Path, table: str) -> dict[str, int]:
    """How many rows of a queue table (spool, outbox) are in each state."""
    return {str(state): int(n) for state, n in query(  # type: ignore[call-overload]
        directory, f"SELECT state, count(*) FROM {table} GROUP BY state")}


def settled(directory: Path) -> bool:
    """Nothing queued or claimed in the spool or the outbox."""
    busy = query(directory, "SELECT count(*) FROM spool WHERE state IN ('queued', 'claimed')"
                 " UNION ALL SELECT count(*) FROM outbox WHERE state IN ('queued', 'claimed')")
    return all(n == 0 for (n,) in busy)
