"""Shared pieces of the benchmarks: paths, the corpus, a config that knows its senders, databases.

The benchmarks measure the real code on real databases: a SQLite file with
the daemon's durable pragmas, and a fresh PostgreSQL database created for the
run and dropped afterwards. Nothing here is imported by mailticket itself.
"""

from __future__ import annotations

import dataclasses
import os
import re
import statistics
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# The peer systems (Roundup, django-helpdesk) and their copy of the floor live beside
# the repo (BENCH_SHARED for a checkout elsewhere, a git worktree say); without them the
# benchmarks run, the peers are skipped and the floor is bench/floor.py's.
SHARED = Path(os.environ.get("BENCH_SHARED", REPO.parent / "shared"))
PEERS = SHARED / "bench"
PEERS_MISSING = f"peers skipped: {PEERS} not found (set BENCH_SHARED to the shared folder)"
GENERATOR = BENCH / "gen_corpus.py"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402

from mailticket.config import Config  # noqa: E402
from mailticket.model import Contract  # noqa: E402
from mailticket.store import migrate  # noqa: E402
from mailticket.store.db import make_engine  # noqa: E402
from tests.support.configs import make_config  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "MAILTICKET_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SUPPORT = "support@support.test"
MSGID_DOMAIN = re.compile(rb"@mail\.")


@dataclass(frozen=True)
class Mail:
    """One corpus message as the MTA would hand it over: envelope sender and raw bytes."""

    name: str
    sender: str
    raw: bytes
    kind: str = "new"  # the corpus index's kind: new, reply, reply-changed-subject


def peers_available() -> bool:
    """Whether ../shared/bench (peers.sh, the floor, their corpus generator) is beside the repo."""
    return PEERS.is_dir()


def corpus_dir(root: Path, count: int) -> Path:
    """Generate (once per run directory) the deterministic corpus of ``count`` mails.

    The generator is the repo's own (bench/gen_corpus.py), so no benchmark of
    mailticket itself needs anything beside the repo.
    """
    out = root / f"corpus-{count}"
    if not (out / "manifest.json").is_file():
        subprocess.run(
            [sys.executable, str(GENERATOR), str(out), "-n", str(count)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return out


def load_corpus(path: Path) -> list[Mail]:
    """The corpus in file order (replies come after the mail they answer)."""
    rows = (path / "index.tsv").read_text(encoding="utf-8").splitlines()[1:]
    mails = []
    for row in rows:
        cols = row.split("\t")
        mails.append(Mail(cols[0], cols[8], (path / cols[0]).read_bytes(), cols[1]))
    return mails


def copies(mails: list[Mail], total: int) -> Iterator[Mail]:
    """``total`` mails cycling through the corpus; each pass gets its own Message-IDs.

    Every Message-ID in the corpus ends in ``@mail.<company>``, in its own
    header and in replies' In-Reply-To/References alike, so rewriting that
    suffix gives each pass distinct but still correctly threaded mail.
    """
    for i in range(total):
        mail = mails[i % len(mails)]
        loop = i // len(mails)
        raw = mail.raw if loop == 0 else MSGID_DOMAIN.sub(b".p%d@mail." % loop, mail.raw)
        yield Mail(mail.name, mail.sender, raw, mail.kind)


def sender_domains(mails: list[Mail]) -> list[str]:
    """Every sender domain in the corpus, so the config can make them all customers."""
    return sorted({m.sender.rpartition("@")[2] for m in mails})


def bench_config(tmp: Path, db_url: str, domains: list[str]) -> Config:
    """The test config with our corpus' support address and one contract per sender domain."""
    cfg = make_config(tmp, db_url, mail={"support_addresses": (SUPPORT,)})
    contracts = {
        d.split(".")[0]: Contract(
            id=d.split(".")[0],
            name=d,
            sla_plan="standard",
            domains=(d,),
            locale="ru" if d.split(".")[0] in ("acme", "romashka", "vektor", "sever") else "en",
        )
        for d in domains
    }
    return dataclasses.replace(cfg, contracts=contracts)


def _admin_engine() -> Engine:
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


@contextmanager
def database(kind: str, tmp: Path, migrated: bool = True) -> Iterator[str]:
    """A fresh database URL of ``kind`` (``sqlite`` or ``postgresql``), removed afterwards."""
    if kind == "sqlite":
        folder = tmp / f"db-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        url = f"sqlite:///{folder / 'mailticket.db'}"
        if migrated:
            engine = make_engine(url)
            migrate.upgrade(engine)
            engine.dispose()
        yield url
        return
    name = f"mt_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        if migrated:
            engine = make_engine(url)
            migrate.upgrade(engine)
            engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: list[float]) -> float:
    """The median, 0 for no values."""
    return statistics.median(values) if values else 0.0


def proc_status_kb(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB: ``VmHWM`` is the peak RSS, ``VmRSS`` the current."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class Results:
    """Figures collected during the run, printed as one table at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, section: str, name: str, value: str, note: str = "") -> None:
        """Record one figure and echo it at once, so a long run shows progress."""
        self.rows.append((section, name, value, note))
        print(f"  {name}: {value}" + (f"  ({note})" if note else ""), flush=True)

    def table(self) -> str:
        """The summary table."""
        widths = [max(len(r[i]) for r in self.rows) for i in range(3)] if self.rows else [0] * 3
        lines = []
        for section, name, value, note in self.rows:
            lines.append(
                f"{section:<{widths[0]}}  {name:<{widths[1]}}  {value:>{widths[2]}}  {note}".rstrip()
            )
        return "\n".join(lines)
