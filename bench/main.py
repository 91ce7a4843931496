"""Every benchmark of issue 9 in one run, printed as figures; nothing is asserted.

    bench/run [SECTION ...]     sections: pipeline peers accept sla memory (default: all),
                                and profile (a cProfile'd one-worker run of 300 mails)

Environment knobs (defaults in brackets):
  BENCH_N [500]                 corpus size for the pipeline and the peers
  BENCH_PIPELINE_SECONDS [25]   time limit per pipeline run (rate over what finished)
  BENCH_RSS_MAILS [10000]       queued mails for the worker RSS figure
  BENCH_RSS_SECONDS [20]        time limit for draining them
  BENCH_SLA_MAX [1000000]       largest ticket count for the SLA scan
  BENCH_PEERS [1]               0 skips ../shared/bench/peers.sh (skipped anyway, with a
                                "peers skipped" line, when ../shared/bench is not beside the repo)
  MAILTICKET_PG_URL             admin URL of the PostgreSQL server (a database is
                                created and dropped for each measurement)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import accept
import common
import memory
import peers
import sla_scan
import throughput
from common import Results, corpus_dir, database, load_corpus, sender_domains

SECTIONS = ("pipeline", "peers", "accept", "sla", "memory", "profile")
DEFAULT = SECTIONS[:-1]


def _env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _targets(res: Results, figures: dict[str, dict[str, float]]) -> list[str]:
    """Each issue-9 target against this run's figures."""
    out = []

    def check(label: str, value: float | None, goal: float, better: str, unit: str) -> None:
        if value is None:
            out.append(f"  {label}: not measured")
            return
        met = value >= goal if better == "higher" else value <= goal
        gap = value / goal if goal else 0.0
        verdict = "met" if met else f"MISSED ({value:.2f}{unit} vs {goal:g}{unit}, {gap:.2f}x)"
        out.append(f"  {label}: {value:.2f}{unit} -> {verdict}")

    pipe, peer = figures.get("pipeline", {}), figures.get("peers", {})
    floor = peer.get(peers.FLOOR)
    check("pipeline sqlite 1 worker / floor (>= 0.50)",
          pipe["sqlite-1"] / floor if floor and "sqlite-1" in pipe else None, 0.5, "higher", "x")
    if "postgresql-1" in pipe and "postgresql-2" in pipe:
        check("postgresql 2 workers / 1 worker (> 1.00)",
              pipe["postgresql-2"] / pipe["postgresql-1"], 1.0, "higher", "x")
    check("smtp accept p99, sqlite, 100 clients (< 50 ms)",
          figures.get("accept", {}).get("sqlite-100"), 50, "lower", " ms")
    sla = figures.get("sla", {})
    check("sla scan query, 1M tickets, sqlite (< 2000 ms)", sla.get("sqlite-1000000"), 2000,
          "lower", " ms")
    check("sla scan query, 1M tickets, postgresql (< 2000 ms)", sla.get("postgresql-1000000"),
          2000, "lower", " ms")
    rss = figures.get("memory", {})
    check("peak rss, listener receiving a 25 MB attachment (< 200 MB)",
          rss.get("listener"), 200, "lower", " MB")
    check("peak rss, worker processing that mail (< 200 MB)",
          rss.get("worker"), 200, "lower", " MB")
    return out


class Stopwatch:
    """Prints how long each section took, so a slow run shows where its time went."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()

    def lap(self, what: str) -> None:
        now = time.perf_counter()
        print(f"  [{what}: {now - self.last:.0f} s; {now - self.started:.0f} s so far]",
              flush=True)
        self.last = now


def main(argv: list[str]) -> int:
    chosen = argv or list(DEFAULT)
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        print(__doc__)
        print(f"unknown section(s): {', '.join(sorted(unknown))}")
        return 2
    n = _env("BENCH_N", 500)
    if os.environ.get("BENCH_PEERS", "1") == "0" and "peers" in chosen:
        chosen.remove("peers")
    if "peers" in chosen and not common.peers_available():
        # The peers and the floor are not part of the repo; everything else runs.
        print(common.PEERS_MISSING, flush=True)
        chosen.remove("peers")
    tmp = Path(tempfile.mkdtemp(prefix="mailticket-bench-"))
    res = Results()
    figures: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    watch = Stopwatch()
    print(f"mailticket benchmarks: {platform.node()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}, "
          f"sections {' '.join(chosen)}", flush=True)
    try:
        corpus = corpus_dir(tmp, n)
        watch.lap("corpus")
        mails = load_corpus(corpus)
        domains = sender_domains(mails)
        manifest = json.loads((corpus / "manifest.json").read_text())
        print(f"corpus: {n} mails from {common.GENERATOR}: "
              f"{manifest['new']} new, {manifest['replies']} replies, {manifest['non_ascii']} "
              f"non-ASCII, shapes {manifest['shapes']}, senders in {len(domains)} domains",
              flush=True)
        if "pipeline" in chosen:
            print("\n(b) pipeline: spool -> tickets + outbox, worker processes", flush=True)
            figures["pipeline"] = throughput.run(
                res, database, tmp, mails, domains, float(_env("BENCH_PIPELINE_SECONDS", 25)))
            watch.lap("pipeline")
        if "peers" in chosen:
            print(f"\n(e) peers: bash {common.PEERS / 'peers.sh'} {n}", flush=True)
            differs = peers.corpus_difference(corpus, tmp, n)
            print(f"  peers' corpus: same {n} mails as ours" if differs is None else
                  f"  WARNING: {common.PEERS / 'gen_corpus.py'} no longer writes our corpus "
                  f"(first difference: {differs}); the ratios compare different mail",
                  flush=True)
            figures["peers"] = peers.run(res, n)
            for key in ("sqlite-1", "postgresql-2"):
                if key in figures.get("pipeline", {}):
                    peers.ratios(res, figures["pipeline"][key], f"mailticket {key}",
                                 figures["peers"])
            watch.lap("peers")
        if "accept" in chosen:
            print("\n(a) smtp accept into the durable spool", flush=True)
            figures["accept"] = accept.run(res, database, tmp, corpus)
            watch.lap("accept")
        if "sla" in chosen:
            print("\n(c) sla scan: the indexed due-ticket query (the whole scan over 100k "
                  "tickets: bench/sla_scan_100k.py)", flush=True)
            sizes = tuple(s for s in sla_scan.SIZES if s <= _env("BENCH_SLA_MAX", 1_000_000))
            figures["sla"] = sla_scan.run(res, database, tmp, sizes)
            watch.lap("sla")
        if "memory" in chosen:
            print("\n(d) peak rss (VmHWM of a child process)", flush=True)
            figures["memory"] = memory.attachment(res, database, tmp, domains)
            memory.queue(res, database, tmp, mails, domains, _env("BENCH_RSS_MAILS", 10_000),
                         float(_env("BENCH_RSS_SECONDS", 20)))
            watch.lap("memory")
        if "profile" in chosen:
            throughput.profile(database, tmp, mails[:300], domains)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n=== summary ({time.perf_counter() - started:.0f} s, load average now "
          f"{os.getloadavg()[0]:.2f}) ===")
    print(res.table())
    print("\ntargets (issue 9):")
    print("\n".join(_targets(res, figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
