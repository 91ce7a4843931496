"""Shared fixtures: databases (SQLite and real PostgreSQL), configs, the corpus, an SMTP sink."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import databases
from support.corpora import SHARED_CORPUS


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The shared real-world mail corpus: an extra set, skipped when ../shared is not beside us."""
    if not SHARED_CORPUS.is_dir():
        pytest.skip(f"{SHARED_CORPUS} not found: the shared corpus is an extra set kept in "
                    "../shared beside the repo")
    return SHARED_CORPUS


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        with databases.sqlite_database(tmp_path) as url:
            yield url
    else:
        with databases.postgres_database() as url:
            yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """A migrated SQLite database URL (tests whose behaviour does not depend on the backend)."""
    with databases.sqlite_database(tmp_path) as url:
        yield url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    databases.drop_template()
