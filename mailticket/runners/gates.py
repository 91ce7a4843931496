"""Test-only fault-injection gates: hold a runner at a named point so a test can kill it there.

Crash tests must kill the daemon at a chosen instant (mid-transaction, after
the relay's 250 …), not by racing the clock. The runners call their gate at
each named point; the default gate, :func:`open_gate`, does nothing (a no-op
call at each point, nothing else). The composition root arms gates only when
the test-only environment variable is set::

    MAILTICKET_TEST_ONLY_GATES=<dir>:<point>[@<n>][,<point>[@<n>] …]

``<dir>`` must exist. When a thread passes ``<point>`` for the ``<n>``-th time
(counted per point across the process, from 1; default 1) it creates the FIFO
``<dir>/<point>@<n>.release``, then the marker ``<dir>/<point>@<n>.reached``
(atomically, holding the pid and thread name), and blocks reading the FIFO
until the test opens and closes its writing end; or the test kills the
process there with SIGKILL. Arming is logged at WARNING, so is every hold.

Points:

* ``worker.before_claim``: a worker is about to take its next spool row
  (each loop turn, idle ones included);
* ``worker.after_pipeline``: the pipeline's writes are in the open
  transaction; the row is not finished yet, nothing is committed;
* ``worker.after_commit``: the message's transaction is committed; the worker
  may hold the next row's claim;
* ``outbox.before_claim``: the drainer is about to claim an outbox row;
* ``outbox.after_send``: the relay said 250 (or the Maildir file is written),
  the result is not recorded yet.

A test's own child process may build a :class:`DirectoryGate` with a point of
its own (the SLA scan test holds a commit through a SQLAlchemy session event).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from mailticket.errors import MailticketError
from mailticket.log import get as get_logger

ENV = "MAILTICKET_TEST_ONLY_GATES"

POINTS = frozenset({
    "worker.before_claim",
    "worker.after_pipeline",
    "worker.after_commit",
    "outbox.before_claim",
    "outbox.after_send",
})

Gate = Callable[[str], None]
"""Called with a point's name each time a runner passes it; returns when it may go on."""

log = get_logger("gates")


def open_gate(point: str) -> None:
    """The production gate: never holds anything."""


class DirectoryGate:
    """Holds the ``n``-th pass of each armed point until the test releases it (see module)."""

    def __init__(self, directory: Path, stops: Mapping[str, frozenset[int]]) -> None:
        self.directory = directory
        self.stops = dict(stops)
        self._passes: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, point: str) -> None:
        wanted = self.stops.get(point)
        if wanted is None:
            return
        with self._lock:
            self._passes[point] += 1
            n = self._passes[point]
        if n in wanted:
            self._hold(f"{point}@{n}")

    def _hold(self, name: str) -> None:
        release = self.directory / f"{name}.release"
        os.mkfifo(release)  # before the marker: a test that saw the marker can release
        draft = self.directory / f"{name}.reached.part"
        draft.write_text(f"{os.getpid()} {threading.current_thread().name}\n")
        draft.rename(self.directory / f"{name}.reached")
        log.warning("test gate reached; holding", extra={"gate": name})
        with open(release, "rb") as fifo:  # opens once the test opens the writing end
            fifo.read()  # EOF when the test closes it
        log.warning("test gate released", extra={"gate": name})


def parse(spec: str) -> DirectoryGate:
    """``<dir>:<point>[@<n>],…`` → its gate; a MailticketError says what is wrong."""
    directory, _, points = spec.rpartition(":")
    if not directory or not points:
        raise MailticketError(f"{ENV}={spec!r}: expected <dir>:<point>[@<n>][,…]")
    if not Path(directory).is_dir():
        raise MailticketError(f"{ENV}: {directory} is not a directory")
    stops: dict[str, set[int]] = {}
    for item in points.split(","):
        point, _, count = item.strip().partition("@")
        if point not in POINTS:
            raise MailticketError(f"{ENV}: unknown point {point!r}; known: {sorted(POINTS)}")
        if count and (not count.isdigit() or int(count) < 1):
            raise MailticketError(f"{ENV}: {item!r}: the count must be a positive integer")
        stops.setdefault(point, set()).add(int(count or 1))
    return DirectoryGate(Path(directory), {p: frozenset(n) for p, n in stops.items()})


def from_environ(environ: Mapping[str, str]) -> Gate:
    """The gate the environment asks for: :func:`open_gate` unless the test-only variable is set."""
    spec = environ.get(ENV)
    if not spec:
        return open_gate
    gate = parse(spec)
    log.warning("TEST-ONLY fault-injection gates armed: runners will stop at these points; "
                f"never set {ENV} in production", extra={"gates": spec})
    return gate
