"""The entry points that load one config file: ``load``, ``check`` and ``format_problems``.

Kept apart from :mod:`mailticket.config.settings` (the dataclasses) so that the
readers in ``validate`` can import the dataclasses without a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path

from mailticket.config.settings import Config
from mailticket.config.validate import validate_file
from mailticket.errors import ConfigError, ConfigProblem


def load(path: Path | str, *, today: date | None = None) -> Config:
    """Read and validate the config file; raise ``ConfigError`` listing every problem.

    :param today: picks the years whose national decrees must be known, else
        ``Config.warnings`` says so; the caller passes it so tests are stable.
    """
    config, problems = _validate(Path(path), today or date.today())
    if problems or config is None:
        raise ConfigError(problems)
    return config


def check(path: Path | str, *, today: date | None = None) -> list[ConfigProblem]:
    """Every problem in the config file, in file order; an empty list means it loads."""
    return _validate(Path(path), today or date.today())[1]


def _validate(path: Path, today: date) -> tuple[Config | None, list[ConfigProblem]]:
    """Read, type and validate the file (``config.validate``)."""
    return validate_file(path, today)


def format_problems(problems: Iterable[ConfigProblem]) -> str:
    """One ``file:line: key: reason`` per problem, for the CLI and logs."""
    lines = []
    for problem in problems:
        where = f"{problem.file}:{problem.line}" if problem.line > 0 else problem.file
        lines.append(
            f"{where}: {problem.key}: {problem.reason}"
            if problem.key
            else f"{where}: {problem.reason}"
        )
    return "\n".join(lines)
