"""The README's "Without systemd" commands, run as written (issue 15.8).

The block is read from README.md (paths swapped for this test's), started
through ``bash`` as an admin would, and must leave the daemon's own PID in the
pid file: that PID reloads it with SIGHUP and stops it with SIGTERM, after
which the file is gone.
"""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
from pathlib import Path

from daemon_proc import REPO, free_port, wait_until, write_config

README = REPO / "README.md"


def readme_block(name: str) -> list[str]:
    """The commands of the fenced block after ``<!-- test:NAME -->`` (continuations joined)."""
    match = re.search(rf"<!-- test:{name} -->\n```sh\n(.*?)```", README.read_text(), re.S)
    assert match, f"README.md has no tested block {name!r}"
    return match.group(1).replace("\\\n", " ").splitlines()


def state(pid: int) -> str | None:
    """The process's state letter, None once it is gone (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    letter = stat.rpartition(")")[2].split()[0]
    return None if letter in ("Z", "X") else letter


def test_readme_commands_record_the_daemons_own_pid(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port)
    pid_file, log = tmp_path / "run" / "mailticket.pid", tmp_path / "mailticket.log"
    start, reload_, stop = (
        line.replace("/etc/mailticket/mailticket.toml", str(config))
        .replace("/run/mailticket/mailticket.pid", str(pid_file))
        .replace("/var/log/mailticket.log", str(log))
        .replace(".venv/bin/mailticket", str(REPO / ".venv" / "bin" / "mailticket"))
        for line in readme_block("without-systemd")
    )
    launcher = subprocess.run(["bash", "-c", f"{start}\necho $!"], capture_output=True,
                              text=True, timeout=30, cwd=tmp_path)
    shell_pid = int(launcher.stdout.split()[-1])
    pid = 0
    try:
        wait_until(pid_file.exists, timeout=30)
        pid = int(pid_file.read_text())
        # The daemon's own PID: it accepts mail and is the `serve` process itself.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"serve" in cmdline and b"--pid-file" in cmdline
        assert not any(part.endswith(b"bash") for part in cmdline)
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            assert client.noop()[0] == 250
        assert shell_pid == pid or state(shell_pid) is None

        subprocess.run(["bash", "-c", reload_], check=True, timeout=10)
        wait_until(lambda: "configuration reloaded" in log.read_text(), timeout=20)
        assert state(pid) is not None

        subprocess.run(["bash", "-c", stop], check=True, timeout=10)
        wait_until(lambda: state(pid) is None, timeout=30)
        assert not pid_file.exists()
        assert "event=stopped " in log.read_text()
    finally:
        if pid and state(pid) is not None:
            os.kill(pid, 9)
