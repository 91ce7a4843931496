"""Run the real daemon as a child process, the way systemd would, and talk to it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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

[sla_plans.standard]
name = "Standard"
[sla_plans.standard.critical]
first_response = "30m"
resolution = "4h"
calendar = "24x7"
[sla_plans.standard.major]
first_response = "2h"
resolution = "12h"
calendar = "business"
[sla_plans.standard.minor]
first_response = "8h"
resolution = "36h"
calendar = "business"
[sla_plans.standard.technical]
first_response = "12h"
resolution = "120h"
calendar = "business"

[engineers."anna@provider.example"]
name = "Anna Petrova"
line = "L1"

[[contracts]]
id = "acme"
name = "ACME Ltd"
sla_plan = "standard"
domains = ["acme.example"]
locale = "ru"
{extra}
""")
    return path


class Daemon:
    """``mailticket serve`` as a child with a NOTIFY_SOCKET, like systemd's Type=notify."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify_dir = Path(tempfile.mkdtemp(prefix="mt-notify-"))
        self.notify_path = self.notify_dir / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"

    def start(self, timeout: float = 20.0) -> Daemon:
        env = dict(os.environ, NOTIFY_SOCKET=str(self.notify_path), PYTHONUNBUFFERED="1")
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
