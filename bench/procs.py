"""Start benchmark children (bench/child.py), release them together, and read their results."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from common import BENCH

CHILD = str(BENCH / "child.py")


def spawn(*args: str) -> subprocess.Popen[str]:
    """Start ``child.py ARGS``; stderr (logs) is discarded so it cannot fill a pipe."""
    return subprocess.Popen(
        [sys.executable, CHILD, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=str(BENCH),
    )


def first_line(proc: subprocess.Popen[str]) -> str:
    """The child's first output line (``ready`` or a port), or an error if it died."""
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.wait()
        raise RuntimeError(f"benchmark child {proc.args!r} exited with {proc.returncode}")
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
        raise RuntimeError(f"benchmark child {proc.args!r} failed with {proc.returncode}")
    data: dict[str, Any] = json.loads(lines[-1])
    return data
