"""The unit's command line run as systemd would: Type=notify READY, SIGHUP reload, SIGTERM stop."""

from __future__ import annotations

import configparser
import json
import shlex
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

from daemon_proc import REPO, Daemon, cli, free_port, tickets, wait_until, write_config
from support.mails import build

NEWCO = """
[[contracts]]
id = "newco"
name = "NewCo"
sla_plan = "standard"
domains = ["newco.example"]
locale = "en"
"""


def unit_exec_start() -> list[str]:
    """ExecStart of systemd/mailticket.service, with the install paths mapped to this checkout."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "systemd" / "mailticket.service")
    assert unit["Service"]["Type"] == "notify"
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[0].endswith("/bin/mailticket") and argv[-1] == "serve"
    return [sys.executable, "-m", "mailticket", *argv[1:]]


class UnitDaemon(Daemon):
    """Start with the unit's ExecStart instead of a hand-written command."""

    def start(self, timeout: float = 20.0) -> Daemon:
        import os

        argv = unit_exec_start()
        argv[argv.index("-c") + 1] = str(self.config)
        env = dict(os.environ, NOTIFY_SOCKET=str(self.notify_path), PYTHONUNBUFFERED="1")
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.config.parent)
        self.wait_for_notify("READY=1", timeout)
        return self


def send(port: int, sender: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(sender, ["support@provider.example"],
                        build(from_=sender, subject=subject))


def test_ready_reload_and_stop(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port)
    daemon = UnitDaemon(config).start()
    try:
        assert daemon.proc is not None
        # Before the reload, newco is unknown: no ticket.
        send(port, "cto@newco.example", "before reload")
        # Processed (refused as an unknown sender) before we look: no ticket.
        [refused] = wait_until(lambda: json.loads(
            cli(config, "spool", "list", "--state", "rejected", "--json").stdout))
        assert "cto@newco.example" in json.dumps(refused)
        assert tickets(config) == []

        config.write_text(config.read_text() + NEWCO)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for_notify("RELOADING=1", 10)
        daemon.wait_for_notify("READY=1", 10)
        send(port, "cto@newco.example", "after reload")
        [ticket] = wait_until(lambda: tickets(config))
        assert (ticket["contract"], ticket["subject"]) == ("newco", "after reload")

        # A broken config is refused; the running one keeps working.
        good = config.read_text()
        config.write_text(good + "\n[daemon]\nworkers = 'many'\n")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for_notify("READY=1", 10)
        assert "reload refused" in daemon.read_log()
        config.write_text(good)  # for the CLI below; the daemon did not re-read it
        send(port, "cto@newco.example", "still running")
        wait_until(lambda: len(tickets(config)) == 2)

        started = time.monotonic()
        assert daemon.stop(timeout=30) == 0
        assert time.monotonic() - started < 15
        log = daemon.read_log()
        assert "stopping: closing listeners" in log and "event=stopped" in log
    finally:
        daemon.close()


def test_unit_file_hardening() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "systemd" / "mailticket.service")
    service = unit["Service"]
    assert service["User"] == "mailticket"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "true" and service["PrivateTmp"] == "true"
    assert "/var/lib/mailticket" in service["ReadWritePaths"]
    assert service["ExecReload"].endswith("-HUP $MAINPID")
    assert "WatchdogSec" in service


def read_unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO / "systemd" / name)
    return unit


def test_instance_template_differs_only_by_instance_paths() -> None:
    """mailticket@.service is the main unit with %i in the config and state paths."""
    main, template = read_unit("mailticket.service"), read_unit("mailticket@.service")
    assert template["Service"]["ExecStart"].endswith("-c /etc/mailticket/%i.toml serve")
    assert template["Service"]["StateDirectory"] == "mailticket/%i"
    assert template["Service"]["ReadWritePaths"] == "/var/lib/mailticket/%i"
    instance_keys = {"ExecStart", "ExecStartPre", "StateDirectory", "ReadWritePaths"}
    for section in ("Service", "Install"):
        for key, value in main[section].items():
            if key not in instance_keys:
                assert template[section][key] == value, key
        assert set(template[section]) == set(main[section])
    assert template["Service"]["ExecStartPre"] == main["Service"]["ExecStartPre"].replace(
        "/etc/mailticket/mailticket.toml", "/etc/mailticket/%i.toml")
