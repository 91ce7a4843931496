"""(e) The peer systems on the same corpus, via ../shared/bench/peers.sh, read back as figures.

The peers live beside the repo, not in it: main.py runs this section only when
../shared/bench is there. peers.sh generates its corpus with its own copy of
gen_corpus.py, so before the peers run their corpus is compared with ours byte
for byte; a difference is printed, because ratios over different mail mean little.

peers.sh prints one line per system:
``<name> <N> msgs <seconds> s <msg/s> msg/s tickets=<T> followups=<F>``.
The floor is ``python-parse+sqlalchemy-sqlite-wal-syncfull`` (stdlib parse
plus one durable SQLite insert per message).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from common import PEERS, Results

LINE = re.compile(r"^(?P<name>\S+) (?P<n>\d+) msgs (?P<s>[\d.]+) s (?P<rate>[\d.]+) msg/s(?P<rest>.*)")
FLOOR = "python-parse+sqlalchemy-sqlite-wal-syncfull"


def corpus_difference(ours: Path, tmp: Path, count: int) -> str | None:
    """The first file where the peers' generator writes other bytes than ours, or None."""
    theirs = tmp / f"peer-corpus-{count}"
    subprocess.run([sys.executable, str(PEERS / "gen_corpus.py"), str(theirs), "-n", str(count)],
                   check=True, stdout=subprocess.DEVNULL)
    names = sorted(p.name for p in ours.iterdir())
    if names != sorted(p.name for p in theirs.iterdir()):
        return "the file lists differ"
    return next((n for n in names if (ours / n).read_bytes() != (theirs / n).read_bytes()), None)


def run(res: Results, count: int) -> dict[str, float]:
    """Run peers.sh on ``count`` mails; returns msg/s by system name (output streamed)."""
    env = dict(os.environ)
    # The threading probes feed no ratio, and the one-process-per-mail Roundup
    # run needs few mails for its rate; both are set in the environment to change.
    env.setdefault("PROBE_N", "0")
    env.setdefault("CLI_N", "20")
    # A peer that takes longer than this stops and reports the rate so far.
    env.setdefault("TIME_LIMIT", "120")
    proc = subprocess.Popen(
        ["bash", str(PEERS / "peers.sh"), str(count)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    rates: dict[str, float] = {}
    for line in proc.stdout:
        match = LINE.match(line.strip())
        if match is None:
            print(f"  {line.rstrip()}", flush=True)
            continue
        rate = float(match["rate"])
        # A run that stopped early (get_email aborts on 8bit KOI8-R mail) has no
        # comparable rate: it is printed but gets no ratio.
        if "STOPPED" not in match["rest"]:
            rates[match["name"]] = rate
        res.add("e peers", match["name"], f"{rate:.1f} msg/s",
                f"{match['n']} msgs in {match['s']} s;{match['rest']}")
    proc.wait()
    if proc.returncode != 0:
        print(f"  peers.sh exited with {proc.returncode}", flush=True)
    return rates


def ratios(res: Results, ours: float, label: str, peers: dict[str, float]) -> None:
    """Our pipeline rate against the floor and each peer, as ``ours / theirs``."""
    names = [FLOOR, *sorted(n for n in peers if n != FLOOR and not n.startswith("python-parse"))]
    for name in names:
        if name in peers and peers[name] > 0:
            note = "target >= 0.50" if name == FLOOR else ""
            res.add("e ratio", f"{label} / {name}", f"{ours / peers[name]:.2f}x", note)
