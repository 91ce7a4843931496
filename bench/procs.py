"""Start benchmark children (bench/child.py), release them together, and read their results."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from typing import IO, Any

from common import BENCH

CHILD = str(BENCH / "child.py")
# Each child's stderr (its logs) goes to a temporary file, not a pipe that could
# fill; when the child fails, the end of it is the error message.
_STDERR: dict[int, IO[str]] = {}


def spawn(*args: str) -> subprocess.Popen[str]:
    """Start ``child.py ARGS``, its stderr kept aside for :func:`failure`."""
    # Closed by failure(), or with the process at exit: it outlives this function.
    log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, CHILD, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=str(BENCH),
    )
    _STDERR[proc.pid] = log
    return proc


def failure(proc: subprocess.Popen[str], what: str) -> RuntimeError:
    """An error naming the child, its exit code and the last lines it wrote to stderr."""
    tail = ""
    log = _STDERR.pop(proc.pid, None)
    if log is not None:
        log.seek(0)
        tail = "".join(log.readlines()[-15:])
        log.close()
    return RuntimeError(f"benchmark child {proc.args!r} {what} {proc.returncode}"
                        + (f"; its stderr ended with:\n{tail}" if tail else ""))


def first_line(proc: subprocess.Popen[str]) -> str:
    """The child's first output line (``ready`` or a port), or an error if it died."""
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.wait()
        raise failure(proc, "exited with")
    return line


def release(procs: list[subprocess.Popen[str]]) -> None:
    """Let waiting children start their measured part."""
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The child's JSON result line; raises if it failed."""
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.wait()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise failure(proc, "failed with")
    data: dict[str, Any] = json.loads(lines[-1])
    return data
