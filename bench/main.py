"""Every benchmark of issue 9 in one run, printed as figures; nothing is asserted.

    bench/run [SECTION ...]     sections: pipeline peers accept scale sla memory (default:
                                all), and profile (a cProfile'd one-worker run of 300 mails)

Environment knobs (defaults in brackets):
  BENCH_N [500]                 corpus size for the pipeline and the peers
  BENCH_PIPELINE_SECONDS [25]   time limit per pipeline run (rate over what finished)
  BENCH_RSS_MAILS [10000]       queued mails for the worker RSS figure
  BENCH_RSS_SECONDS [20]        time limit for draining them
  BENCH_SLA_MAX [1000000]       largest ticket count for the SLA scan
  BENCH_PEERS [1]               0 skips ../shared/bench/peers.sh (skipped anyway, with a
                                "peers skipped" line, when ../shared/bench is not beside the repo)
  BENCH_SHARED [../shared]      the shared folder holding bench/peers.sh (for a worktree)
  BENCH_SCALE_TICKETS [200000], BENCH_SCALE_ARTICLES [1000000]   the stored history of (f)
  MAILTICKET_PG_URL             admin URL of the PostgreSQL server (a database is
                                created and dropped for each measurement)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import accept
import common
import memory
import peers
import scale
import sla_scan
import throughput
from common import Results, corpus_dir, database, load_corpus, sender_domains

SECTIONS = ("pipeline", "peers", "accept", "scale", "sla", "memory", "profile")
# In this order by default; "peers" needs ../shared/bench (BENCH_SHARED).
DEFAULT = SECTIONS[:-1]


def _env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _floor(corpus: Path) -> float:
    """msg/s of bench/floor.py on the corpus, in a process of its own (as peers.sh runs it)."""
    out = subprocess.run([sys.executable, str(common.BENCH / "floor.py"), str(corpus)],
                         check=True, capture_output=True, text=True).stdout
    match = peers.LINE.match(out.strip().splitlines()[-1])
    assert match is not None, out
    return float(match["rate"])


def _best(peer: dict[str, float], prefix: str) -> tuple[str, float] | None:
    """The fastest comparable run of a peer family (no probes, no per-process CLI run)."""
    runs = {n: r for n, r in peer.items()
            if n.startswith(prefix) and "[" not in n and "-cli" not in n and "utf8" not in n}
    if not runs:
        return None
    name = max(runs, key=lambda n: runs[n])
    return name, runs[name]


def _targets(figures: dict[str, dict[str, float]]) -> list[str]:
    """Issue 17's table (and issue 9's remaining targets): figure, ratio, target, verdict."""
    rows: list[tuple[str, str, str, str]] = []

    def check(label: str, value: float | None, goal: float, better: str, unit: str,
              shown: str = "") -> None:
        if value is None:
            rows.append((label, "not measured", f"{'>=' if better == 'higher' else '<'} "
                         f"{goal:g}{unit}", ""))
            return
        met = value >= goal if better == "higher" else value < goal
        gap = goal - value if better == "higher" else value - goal
        verdict = "met" if met else f"missed by {gap:.2f}{unit}"
        target = f"{'>=' if better == 'higher' else '<'} {goal:g}{unit}"
        rows.append((label, (shown + " = " if shown else "") + f"{value:.2f}{unit}", target,
                     verdict))

    pipe, peer = figures.get("pipeline", {}), figures.get("peers", {})
    floor = figures.get("floor", {}).get("rate")
    for key, goal, label in (("sqlite-1", 0.5, "pipeline, SQLite, 1 worker / floor"),
                             ("postgresql-2", 0.5, "pipeline, PostgreSQL, 2 workers / floor"),
                             ("postgresql-1", 0.3, "pipeline, PostgreSQL, 1 worker / floor")):
        ours = pipe.get(key)
        check(label, ours / floor if ours and floor else None, goal, "higher", "x",
              f"{ours:.1f} / {floor:.1f} msg/s" if ours and floor else "")
    ours = pipe.get("sqlite-1")
    for family, goal, label in (("roundup", 5.0, "pipeline, SQLite, 1 worker / Roundup mailgw"),
                                ("django-helpdesk", 4.0,
                                 "pipeline, SQLite, 1 worker / django-helpdesk")):
        best = _best(peer, family)
        check(label, ours / best[1] if ours and best else None, goal, "higher", "x",
              f"{ours:.1f} / {best[1]:.1f} msg/s ({best[0]})" if ours and best else "")
    accept = figures.get("accept", {})
    check("SMTP accept p99, 100 clients, SQLite", accept.get("sqlite-100"), 50, "lower", " ms")
    check("SMTP accept p99, 100 clients, PostgreSQL", accept.get("postgresql-100"), 50, "lower",
          " ms")
    scale_ = figures.get("scale", {})
    for backend in ("sqlite", "postgresql"):
        check(f"pipeline with {scale.ARTICLES:,} articles stored / empty, {backend}",
              scale_.get(backend), 0.9, "higher", "x")
        scans = scale_.get(f"{backend}-scans")
        rows.append((f"hot-path statements that SCAN a table, {backend}",
                     "not measured" if scans is None else f"{scans:.0f}", "0",
                     "" if scans is None else "met" if scans == 0 else "see the plans above"))
    sla = figures.get("sla", {})
    check("sla scan query, 1M tickets, SQLite (issue 9)", sla.get("sqlite-1000000"), 2000,
          "lower", " ms")
    check("sla scan query, 1M tickets, PostgreSQL (issue 9)", sla.get("postgresql-1000000"),
          2000, "lower", " ms")
    rss = figures.get("memory", {})
    check("peak rss, listener, 25 MB attachment (issue 9)", rss.get("listener"), 200, "lower",
          " MB")
    check("peak rss, worker, that mail (issue 9)", rss.get("worker"), 200, "lower", " MB")
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    head = ("figure", "this run", "target", "verdict")
    lines = [f"  {head[0]:<{widths[0]}}  {head[1]:>{widths[1]}}  {head[2]:<{widths[2]}}  "
             f"{head[3]}"]
    lines += [f"  {a:<{widths[0]}}  {b:>{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip()
              for a, b, c, d in rows]
    return lines


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
            # The floor (bench/floor.py, the peers' baseline_python.py sqlite FULL) right
            # before and after the pipeline runs, under the same load; the mean is the floor.
            before = _floor(corpus)
            figures["pipeline"] = throughput.run(
                res, database, tmp, mails, domains, float(_env("BENCH_PIPELINE_SECONDS", 25)))
            after = _floor(corpus)
            floor = (before + after) / 2
            figures["floor"] = {"rate": floor}
            res.add("b pipeline", "floor (bench/floor.py)", f"{floor:.1f} msg/s",
                    f"stdlib parse + one durable SQLAlchemy insert per mail; {before:.1f} before "
                    f"the pipeline runs, {after:.1f} after")
            for key in ("sqlite-1", "postgresql-2", "postgresql-1"):
                if key in figures["pipeline"]:
                    res.add("b pipeline", f"{key} / floor",
                            f"{figures['pipeline'][key] / floor:.2f}x",
                            "target >= " + ("0.30" if key == "postgresql-1" else "0.50"))
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
        if "scale" in chosen:
            print(f"\n(f) scale: the pipeline over {scale.ARTICLES:,} stored articles / "
                  f"{scale.TICKETS:,} tickets vs an empty database, and the hot path's plans",
                  flush=True)
            figures["scale"] = scale.run(res, database, tmp, mails, domains,
                                         float(_env("BENCH_PIPELINE_SECONDS", 25)))
            watch.lap("scale")
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
    print("\ntargets (issue 17, and issue 9's others), every figure from this run:")
    print("\n".join(_targets(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
