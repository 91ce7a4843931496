"""The test-only gates: off unless asked for, refuse a mistyped spec, hold exactly the n-th pass."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from mailticket.errors import MailticketError
from mailticket.runners import gates


def test_no_variable_means_the_open_gate() -> None:
    assert gates.from_environ({}) is gates.open_gate
    assert gates.from_environ({gates.ENV: ""}) is gates.open_gate


@pytest.mark.parametrize(("points", "problem"), [
    ("worker.befor_claim", "unknown point"),
    ("worker.before_claim@0", "positive integer"),
    ("worker.before_claim@x", "positive integer"),
    ("", "expected"),
])
def test_a_mistyped_spec_refuses_to_start(tmp_path: Path, points: str, problem: str) -> None:
    with pytest.raises(MailticketError, match=problem):
        gates.from_environ({gates.ENV: f"{tmp_path}:{points}"})


def test_a_missing_directory_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(MailticketError, match="not a directory"):
        gates.from_environ({gates.ENV: f"{tmp_path / 'nope'}:worker.before_claim"})


def test_the_nth_pass_is_held_until_released(tmp_path: Path) -> None:
    gate = gates.from_environ({gates.ENV: f"{tmp_path}:outbox.after_send@2"})
    passed: list[int] = []

    def runner() -> None:
        for i in range(3):
            gate("worker.after_commit")  # not armed: never held
            gate("outbox.after_send")
            passed.append(i)

    thread = threading.Thread(target=runner)
    thread.start()
    marker = tmp_path / "outbox.after_send@2.reached"
    deadline = time.monotonic() + 10  # a guard only: the marker is what we wait for
    while not marker.exists():
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    assert marker.read_text().split()[0] == str(os.getpid())
    assert passed == [0]
    with open(tmp_path / "outbox.after_send@2.release", "wb"):
        pass  # closing the writing end lets the gate go on
    thread.join(10)
    assert not thread.is_alive()
    assert passed == [0, 1, 2]
