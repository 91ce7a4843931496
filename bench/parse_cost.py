"""Parse cost per mail: ``mailticket.mail.parse.parse`` alone, no database.

    .venv/bin/python bench/parse_cost.py [--repo PATH] [--repeat N] [--n N]

Issue 14 asked that decoding fidelity not make the common mail slower: the slow
paths (charset detection, header repair, uudecode, per-line charsets) must run
only when the cheap path found a problem. This prints the median and the 90th
percentile of the per-mail parse time (each mail's best of ``--repeat``
runs, so a busy machine skews less) over two sets:

* the benchmark corpus (``bench/gen_corpus.py``, the same mail the pipeline
  figures use: mostly well-formed, ~40 % non-ASCII), and
* the project's regression mails (``tests/mails/*.eml``: every hard case).

``--repo`` measures another checkout's parser on the same mail (for example a
``git worktree`` of the commit before a change), so before and after come from
one command on one machine. Timings on a shared machine are noisy; for a
figure that does not depend on load, count instructions instead: ``--passes K``
parses the corpus K times and prints nothing, and the difference between
``valgrind --tool=callgrind … --passes 2`` and ``--passes 0``, halved and
divided by the corpus size, is the instructions per mail.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def _corpus(n: int) -> list[bytes]:
    with tempfile.TemporaryDirectory(prefix="mailticket-parse-") as tmp:
        subprocess.run([sys.executable, str(BENCH / "gen_corpus.py"), tmp, "-n", str(n)],
                       check=True, stdout=subprocess.DEVNULL)
        return [p.read_bytes() for p in sorted(Path(tmp).rglob("*.eml"))]


def _parse_quietly(parse: Callable[[bytes], object], raw: bytes) -> None:
    # An unparseable mail still costs its attempt.
    with contextlib.suppress(Exception):
        parse(raw)


def _per_mail(parse: Callable[[bytes], object], mails: list[bytes], repeat: int) -> list[float]:
    """Each mail's best time of ``repeat`` parses, in microseconds."""
    times = []
    for raw in mails:
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            _parse_quietly(parse, raw)
            best = min(best, time.perf_counter() - started)
        times.append(best * 1e6)
    return times


def _line(label: str, times: list[float]) -> str:
    p90 = statistics.quantiles(times, n=10)[-1] if len(times) >= 10 else max(times)
    return (f"  {label:<28} {len(times):>4} mails  median {statistics.median(times):7.1f} µs  "
            f"p90 {p90:7.1f} µs  total {sum(times) / 1000:7.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO,
                        help="checkout whose mailticket package is measured")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--n", type=int, default=500, help="corpus size")
    parser.add_argument("--passes", type=int, default=None,
                        help="untimed: parse the corpus this many times (for callgrind)")
    args = parser.parse_args()
    sys.path.insert(0, str(args.repo.resolve()))
    module = importlib.import_module("mailticket.mail.parse")
    if args.passes is not None:
        mails = _corpus(args.n)
        for _ in range(args.passes):
            for raw in mails:
                _parse_quietly(module.parse, raw)
        return 0
    print(f"parse cost: {Path(module.__file__ or '').resolve()}, best of {args.repeat} "
          f"per mail", flush=True)
    corpus = _corpus(args.n)
    regression = [p.read_bytes() for p in sorted((REPO / "tests" / "mails").glob("*.eml"))]
    for label, mails in (("bench corpus", corpus), ("tests/mails regression set", regression)):
        print(_line(label, _per_mail(module.parse, mails, args.repeat)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
