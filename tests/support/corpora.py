"""Where test mail comes from: the project's own regression mails, and the optional RT corpus.

``tests/mails/*.eml`` belong to the repo, so every test that needs real-looking
mail can run on a clone with nothing beside it. The Request Tracker corpus in
``../shared/corpus/rt`` (60 mails from RT's test suite) is an extra set: tests
over it run when the directory is there and are skipped, with a reason that
names the missing directory, when it is not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REGRESSION_MAILS = REPO / "tests" / "mails"
SHARED_CORPUS = REPO.parent / "shared" / "corpus"
RT_CORPUS = SHARED_CORPUS / "rt"
RT_MISSING = (
    f"{RT_CORPUS} not found: the RT corpus is an extra set kept in ../shared beside the repo"
)


def regression_mails() -> list[Path]:
    """The project's own regression mails, sorted by name."""
    return sorted(REGRESSION_MAILS.glob("*.eml"))


def rt_corpus_files() -> list[Path]:
    """Every mail of the RT corpus (sorted), or none when ../shared is not beside the repo."""
    if not RT_CORPUS.is_dir():
        return []
    return sorted(p for p in RT_CORPUS.rglob("*") if p.is_file() and p.name != "README.md")


def rt_corpus_params() -> list[object]:
    """RT corpus names for ``parametrize``; one skipped placeholder (with the reason) if absent.

    An empty parameter list would be skipped as "got empty parameter set",
    which does not say what is missing.
    """
    files = rt_corpus_files()
    if not files:
        return [pytest.param("", id="rt-corpus-absent", marks=pytest.mark.skip(reason=RT_MISSING))]
    return [p.relative_to(RT_CORPUS).as_posix() for p in files]

