"""The in-process stack on SQLite, shared by the hostile-mail modules.

Modules whose tests must run on both databases (conversation, contract
features) define their own ``stack`` on ``db_url``, which takes precedence.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from stack import Stack
from support.smtp_sink import SmtpSink


@pytest.fixture
def stack(sqlite_url: str, tmp_path: Path) -> Iterator[Stack]:
    """Listener → worker → relay → a real SMTP sink, on a SQLite file."""
    with SmtpSink() as sink:
        s = Stack(tmp_path, sqlite_url, sink)
        try:
            yield s
        finally:
            s.close()
