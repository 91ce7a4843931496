"""Pipeline vs. floor in one short run, and where the pipeline spends its time.

A quick loop for performance work, not part of ``bench/run``: it measures the
issue-9 ratio (one SQLite worker / the bare floor of ``bench/floor.py``, the
same code as ``../shared/bench/baseline_python.py sqlite --sync FULL``) on the
same corpus, alternating the two ``--rounds`` times so machine load hits both
alike, then optionally runs one more pipeline pass under cProfile and prints
the top functions.

    .venv/bin/python bench/profile_pipeline.py [-n 300] [--rounds 2] [--profile] [--top 30] [--save FILE] [--cpu]
"""

from __future__ import annotations

import argparse
import logging
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput
from common import (
    BENCH,
    bench_config,
    corpus_dir,
    database,
    load_corpus,
    sender_domains,
)


def floor_rate(corpus: Path, tmp: Path) -> float:
    """msg/s of the bare floor (stdlib parse + one durable SQLite insert per message)."""
    out = subprocess.run(
        [sys.executable, str(BENCH / "floor.py"), str(corpus), "--db-dir", str(tmp)],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    return float(out[out.index("msg/s") - 1])


def ours_rate(tmp: Path, mails: list, domains: list[str], profile: Path | None = None) -> dict:
    """One SQLite worker draining the spooled corpus (the real ``SpoolWorker`` loop)."""
    with database("sqlite", tmp) as url:
        throughput.spool_all(url, mails)
        out = throughput.drain(url, tmp, domains, 1, 300, profile)
        out["stored"] = throughput.outcome_counts(url, mails)
    return out


def cpu_per_message(corpus: Path, tmp: Path, mails: list, domains: list[str]) -> tuple[float, float]:
    """CPU ms per message of the floor and of ours, both in this process (less load-sensitive).

    The floor is ``floor.run_sqlite`` itself; ours is a ``SpoolWorker``
    draining the spooled corpus. Only the loops are timed (``time.process_time``).
    """
    import floor as baseline_python

    from mailticket.app import assemble
    from mailticket.runners.worker import SpoolWorker
    from mailticket.store.db import make_engine

    files = sorted(corpus.glob("*.eml"))
    folder = Path(tempfile.mkdtemp(dir=tmp))
    started = time.process_time()
    baseline_python.run_sqlite(files, folder / "floor.db", "FULL")
    floor = (time.process_time() - started) / len(files) * 1000
    logging.disable(logging.CRITICAL)
    with database("sqlite", tmp) as url:
        throughput.spool_all(url, mails)
        config = bench_config(tmp, url, domains)
        engine = make_engine(url)
        worker = SpoolWorker(assemble(config, engine))
        started = time.process_time()
        count = worker.drain()
        ours = (time.process_time() - started) / max(count, 1) * 1000
        engine.dispose()
    logging.disable(logging.NOTSET)
    return floor, ours


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=300, help="corpus size (default 300)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--save", type=Path, default=None, help="keep the profile at this path")
    ap.add_argument("--cpu", action="store_true",
                    help="also CPU ms/msg of floor and ours, in-process, per round")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mailticket-prof-"))
    try:
        corpus = corpus_dir(tmp, args.n)
        mails = load_corpus(corpus)
        domains = sender_domains(mails)
        print(f"{args.n} mails, load average {os.getloadavg()[0]:.2f}", flush=True)
        has_floor = True  # bench/floor.py is in the repo
        floors: list[float] = []
        ours: list[float] = []
        for i in range(args.rounds):
            if has_floor:
                floors.append(floor_rate(corpus, tmp))
            out = ours_rate(tmp, mails, domains)
            ours.append(out["rate"])
            against = (f"floor {floors[-1]:.1f} msg/s, ours {ours[-1]:.1f} msg/s "
                       f"({ours[-1] / floors[-1]:.2f}x)" if has_floor
                       else f"ours {ours[-1]:.1f} msg/s")
            print(f"  round {i + 1}: {against} stored={out['stored']} "
                  f"errors={out['failed']}", flush=True)
            if args.cpu and has_floor:
                floor_cpu, ours_cpu = cpu_per_message(corpus, tmp, mails, domains)
                print(f"           cpu: floor {floor_cpu:.2f} ms/msg, ours {ours_cpu:.2f} ms/msg "
                      f"({floor_cpu / ours_cpu:.2f}x)", flush=True)
        if args.rounds:
            o = statistics.median(ours)
            if has_floor:
                f = statistics.median(floors)
                print(f"median: floor {f:.1f} msg/s, ours {o:.1f} msg/s, ratio {o / f:.2f}x "
                      f"(target >= 0.50); load average {os.getloadavg()[0]:.2f}")
            else:
                print(f"median: ours {o:.1f} msg/s; load average {os.getloadavg()[0]:.2f}")
        if args.profile:
            path = tmp / "pipeline.prof"
            out = ours_rate(tmp, mails, domains, path)
            print(f"\nprofile: {out['count']} msgs at {out['rate']:.1f} msg/s under cProfile")
            if args.save:
                shutil.copy(path, args.save)
            stats = pstats.Stats(str(path))
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(r"mailticket/", args.top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
