"""Instructions per mail of the pipeline: one SpoolWorker draining a spooled corpus.

    .venv/bin/python bench/pipeline_cost.py prepare DIR [-n N]     # corpus + spooled SQLite db
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/pipeline_cost.py drain DIR [--limit K] [--repo PATH]

Wall time and even CPU time of the pipeline swing by 20-30 % on a shared
machine; instructions do not. ``prepare`` writes the corpus and a SQLite
database with every mail spooled (outside the count); ``drain`` copies that
database and drains at most ``--limit`` mails of it with the real worker loop
(``SpoolWorker.run_once``) in this process. The difference between a run with
``--limit N`` and one with ``--limit 0`` (imports, config, engine: the same in
both), divided by N, is the instructions per mail. ``--repo`` drains with
another checkout's package (a ``git worktree`` of the commit before a change),
so before and after use the same corpus and database. Without valgrind,
``drain`` prints the CPU milliseconds per mail of the drain loop.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def prepare(folder: Path, count: int) -> None:
    """The corpus and a SQLite database with all of it spooled, in ``folder``."""
    sys.path.insert(0, str(BENCH))
    import throughput
    from common import corpus_dir, load_corpus, sender_domains

    from mailticket.store.db import make_engine
    from mailticket.store.schema import Base

    folder.mkdir(parents=True, exist_ok=True)
    mails = load_corpus(corpus_dir(folder, count))
    url = f"sqlite:///{folder / 'spooled.db'}"
    Base.metadata.create_all(make_engine(url))
    throughput.spool_all(url, mails)
    (folder / "domains").write_text(",".join(sender_domains(mails)))
    print(f"{len(mails)} mails spooled in {folder / 'spooled.db'}")


def drain(folder: Path, limit: int, repo: Path | None) -> None:
    """Drain at most ``limit`` mails of a copy of the prepared database."""
    if repo is not None:
        # The venv's editable install answers imports of mailticket before
        # sys.path is searched; drop its finder so the other checkout's is used.
        sys.meta_path[:] = [f for f in sys.meta_path
                            if "__editable__" not in getattr(f, "__module__", "")]
        sys.path.insert(0, str(repo.resolve()))
        # common.py puts this checkout first unless it is on the path already.
        sys.path.append(str(BENCH.parent))
    sys.path.insert(1, str(BENCH))
    from common import bench_config

    from mailticket.app import assemble
    from mailticket.runners.worker import SpoolWorker
    from mailticket.store.db import make_engine

    run = folder / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    shutil.copy(folder / "spooled.db", run / "db")
    url = f"sqlite:///{run / 'db'}"
    domains = (folder / "domains").read_text().split(",")
    logging.disable(logging.CRITICAL)
    worker = SpoolWorker(assemble(bench_config(run, url, domains), make_engine(url)))
    done = 0
    started = time.process_time()
    while done < limit and worker.run_once():
        done += 1
    seconds = time.process_time() - started
    import mailticket

    print(f"{done} mails drained by {Path(mailticket.__file__).parent}: "
          f"{seconds / max(done, 1) * 1000:.2f} ms CPU per mail")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("folder", type=Path)
    p.add_argument("-n", type=int, default=100)
    d = sub.add_parser("drain")
    d.add_argument("folder", type=Path)
    d.add_argument("--limit", type=int, default=1_000_000)
    d.add_argument("--repo", type=Path, default=None)
    args = ap.parse_args()
    if args.command == "prepare":
        prepare(args.folder, args.n)
    else:
        drain(args.folder, args.limit, args.repo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
