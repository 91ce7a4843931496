"""Config keys of the lists by mail (issue 16): read, defaulted and checked."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

from mailticket import config
from mailticket.config import EngineerDigest

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
TODAY = date(2025, 10, 1)


def _example_with(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "mt.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    # Paths are relative to the file: the knowledge base directory must exist beside it.
    (tmp_path / "kb").mkdir(exist_ok=True)
    return path


def test_status_all_tickets_defaults_to_own_tickets_and_reads_true(tmp_path: Path) -> None:
    shipped = config.load(EXAMPLE, today=TODAY)
    assert not any(c.status_all_tickets for c in shipped.contracts.values())
    path = _example_with(tmp_path, "allow_subject_priority = true\n",
                         "allow_subject_priority = true\nstatus_all_tickets = true\n")
    assert config.check(path, today=TODAY) == []
    loaded = config.load(path, today=TODAY)
    assert [c.id for c in loaded.contracts.values() if c.status_all_tickets] == ["acme"]


def test_status_all_tickets_must_be_a_boolean(tmp_path: Path) -> None:
    path = _example_with(tmp_path, "allow_subject_priority = true\n",
                         "allow_subject_priority = true\nstatus_all_tickets = \"yes\"\n")
    assert any("status_all_tickets" in p.key for p in config.check(path, today=TODAY))


def test_digest_section_reads_and_checks(tmp_path: Path) -> None:
    shipped = config.load(EXAMPLE, today=TODAY)
    assert shipped.digest.enabled and shipped.digest.calendar == "business"
    assert shipped.digest.at is None and shipped.digest.waiting_days == 3
    path = _example_with(tmp_path, "weekly = true\n",
                         'weekly = false\nat = "08:30"\n'
                         '[digest.engineers."anna@example.com"]\nenabled = false\ncalendar = "24x7"\n')
    loaded = config.load(path, today=TODAY)
    assert loaded.digest.at == time(8, 30) and not loaded.digest.weekly
    assert loaded.digest.engineers == {
        "anna@example.com": EngineerDigest(enabled=False, calendar="24x7")}
    bad = _example_with(tmp_path, "waiting_days = 3\n",
                        'waiting_days = 3\nat_risk = 1\nat = "25:00"\n')
    keys = [p.key for p in config.check(bad, today=TODAY)]
    assert "digest.at" in keys and "digest.at_risk" in keys
    bad = _example_with(tmp_path, 'calendar = "business"\n# Local', 'calendar = "nope"\n# Local')
    keys = [p.key for p in config.check(bad, today=TODAY)]
    assert "digest.calendar" in keys
