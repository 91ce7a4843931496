"""``mailticket backup`` / ``restore``: a consistent copy of a live SQLite database, and back.

Backup uses SQLite's online backup API while the daemon keeps running. The
copy is taken inside one read transaction on the source, so in WAL mode it
is a single consistent snapshot (every spool row, ticket and outbox row of
one committed transaction, or none of it) and the daemon's writers are never
blocked; pages are copied in steps so long copies can report progress.

Restore refuses to touch a database a daemon holds: the daemon keeps an
exclusive ``flock`` on ``<database file>.lock`` (``daemon.InstanceLock``) and
restore takes the same lock for the whole swap, so a daemon cannot start
halfway either. The source must be a mailticket database at a schema revision
this version knows; the current file is moved aside, never deleted.

PostgreSQL is backed up with its own tools (see :data:`PG_HINT`): a logical
dump is consistent by itself, and shared instances need no lock of ours.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, make_url

from mailticket.errors import MailticketError
from mailticket.store.migrate import MIGRATIONS, head_revision

PG_HINT = (
    "PostgreSQL databases are backed up with pg_dump, not by mailticket: "
    "`pg_dump --format=custom --file=BACKUP.dump 'postgresql://USER@HOST:PORT/DBNAME'` "
    "(consistent while the daemons run); restore with the daemons stopped: "
    "`pg_restore --clean --if-exists --no-owner --dbname='postgresql://USER@HOST:PORT/DBNAME' "
    "BACKUP.dump`, then `mailticket db upgrade`"
)
SQLITE_MAGIC = b"SQLite format 3\x00"
# 1024 pages of 4 KiB: a progress line every 4 MiB.
PAGES_PER_STEP = 1024

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BackupResult:
    """What ``backup`` wrote: the file, its schema revision, size in bytes and pages."""

    path: Path
    revision: str
    size: int
    pages: int


@dataclass(frozen=True)
class RestoreResult:
    """What ``restore`` did; ``needs_upgrade`` means run ``mailticket db upgrade`` next."""

    path: Path
    revision: str
    moved_aside: Path | None
    needs_upgrade: bool


def sqlite_path(db_url: str) -> Path:
    """The database file of a SQLite URL; PostgreSQL gets the pg_dump advice as an error."""
    url = make_url(db_url)
    if url.get_backend_name() == "postgresql":
        raise MailticketError(PG_HINT.replace("postgresql://USER@HOST:PORT/DBNAME", _libpq(db_url)))
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise MailticketError(f"backup and restore need a SQLite database file, not {db_url!r}")
    return Path(url.database)


def _libpq(db_url: str) -> str:
    """The URL as pg_dump wants it: no SQLAlchemy driver suffix, no password."""
    url = make_url(db_url)
    clean = URL.create(
        "postgresql", username=url.username, host=url.host, port=url.port, database=url.database
    )
    return clean.render_as_string(hide_password=False)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _revision(conn: sqlite3.Connection, what: Path) -> str:
    """The alembic revision stored in a database, or a MailticketError saying what it is not."""
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise MailticketError(
            f"{what} is not a mailticket database (no schema revision: {exc})"
        ) from None
    if row is None:
        raise MailticketError(f"{what} is not a mailticket database (empty schema revision)")
    return str(row[0])


def _known_revisions() -> set[str]:
    scripts = ScriptDirectory(str(MIGRATIONS))
    return {rev.revision for rev in scripts.walk_revisions()}


def _copy(
    source: sqlite3.Connection, dest: Path, progress: Progress | None, pages_per_step: int
) -> int:
    """Copy ``source`` into a new file ``dest`` page by page; returns the page count."""
    pages = 0

    def report(status: int, remaining: int, total: int) -> None:
        nonlocal pages
        pages = total
        if progress is not None:
            progress(total - remaining, total)

    with closing(sqlite3.connect(dest)) as target:
        source.backup(target, pages=pages_per_step, progress=report)
        result = target.execute("PRAGMA quick_check").fetchone()
        if result is None or result[0] != "ok":
            raise MailticketError(f"the copy in {dest} failed its integrity check: {result}")
    with open(dest, "rb") as handle:
        os.fsync(handle.fileno())
    return pages


def backup(
    db_url: str,
    dest: Path,
    *,
    progress: Progress | None = None,
    pages_per_step: int = PAGES_PER_STEP,
) -> BackupResult:
    """Write a consistent copy of the live SQLite database at ``db_url`` to ``dest``.

    Safe while the daemon runs. ``dest`` must not exist; the copy appears
    there only when complete and checked (written beside it, then renamed).
    ``progress(done_pages, total_pages)`` is called after every step.
    For PostgreSQL this raises :class:`MailticketError` with the exact pg_dump
    and pg_restore commands (see :data:`PG_HINT`).
    """
    source_path = sqlite_path(db_url)
    if not source_path.is_file():
        raise MailticketError(f"no database at {source_path}")
    if dest.exists():
        raise MailticketError(f"{dest} already exists; choose a new file name")
    tmp = dest.with_name(f".{dest.name}.partial")
    tmp.unlink(missing_ok=True)
    with closing(sqlite3.connect(source_path, timeout=30, isolation_level=None)) as source:
        # One read transaction for the whole copy: in WAL mode it pins a
        # snapshot, so writers carry on and the copy never restarts.
        source.execute("BEGIN")
        revision = _revision(source, source_path)
        try:
            pages = _copy(source, tmp, progress, pages_per_step)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            source.execute("COMMIT")
    os.chmod(tmp, 0o600)
    os.rename(tmp, dest)
    _fsync_dir(dest.parent)
    return BackupResult(dest, revision, dest.stat().st_size, pages)


@contextmanager
def _instance_lock(db_path: Path) -> Iterator[None]:
    """Hold the daemon's instance lock (``<db>.lock``, see ``daemon.InstanceLock``) or refuse."""
    lock_path = Path(f"{db_path}.lock")
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            raise MailticketError(
                f"a mailticket daemon (pid {pid}) is using {db_path}: "
                "stop it before restoring over its database"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_source(src: Path) -> str:
    """The schema revision of a backup file, after checking it is a mailticket database."""
    if not src.is_file():
        raise MailticketError(f"no backup file at {src}")
    with open(src, "rb") as handle:
        if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise MailticketError(f"{src} is not a SQLite database")
    with closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as conn:
        revision = _revision(conn, src)
    if revision not in _known_revisions():
        raise MailticketError(
            f"{src} is at schema revision {revision}, which this mailticket version does "
            "not know (a backup from a newer version?)"
        )
    return revision


def _move_aside(db_path: Path) -> Path | None:
    """Rename the current database with its -wal/-shm, keeping them a valid pair."""
    if not db_path.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = db_path.with_name(f"{db_path.name}.pre-restore-{stamp}")
    # The -wal file must travel with its database: left behind, SQLite would
    # replay the old WAL into the restored file.
    for suffix in ("-wal", "-shm", ""):
        old = Path(f"{db_path}{suffix}")
        if old.exists():
            os.rename(old, Path(f"{aside}{suffix}"))
    return aside


def restore(
    src: Path,
    db_url: str,
    *,
    progress: Progress | None = None,
    pages_per_step: int = PAGES_PER_STEP,
) -> RestoreResult:
    """Replace the SQLite database at ``db_url`` with the backup ``src``.

    Refused while a daemon holds the database. ``src`` must be a mailticket
    database at a known schema revision; an older one restores fine and
    ``needs_upgrade`` says to run ``mailticket db upgrade``. The current
    database, if any, is kept as ``<db>.pre-restore-<UTC time>``.
    """
    db_path = sqlite_path(db_url)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    revision = _check_source(src)
    with _instance_lock(db_path):
        tmp = db_path.with_name(f".{db_path.name}.restoring")
        tmp.unlink(missing_ok=True)
        try:
            with closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as source:
                _copy(source, tmp, progress, pages_per_step)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.chmod(tmp, 0o600)
        aside = _move_aside(db_path)
        os.rename(tmp, db_path)
        _fsync_dir(db_path.parent)
    return RestoreResult(db_path, revision, aside, revision != head_revision())
