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
    assert (shipped.digest.handover_to, shipped.digest.weekly_to) == (("oncall",), ("dedicated",))
    path = _example_with(tmp_path, "waiting_days = 3\n",
                         'waiting_days = 3\nat = "08:30"\n'
                         '[digest.lines.l3]\nenabled = false\n'
                         '[digest.engineers."Anna@example.com"]\nenabled = false\nat = "07:45"\n')
    loaded = config.load(path, today=TODAY)
    assert loaded.digest.at == time(8, 30)
    assert loaded.digest.lines == {"L3": EngineerDigest(enabled=False)}
    assert loaded.digest.engineers == {
        "anna@example.com": EngineerDigest(enabled=False, at=time(7, 45))}
    bad = _example_with(tmp_path, "waiting_days = 3\n",
                        'waiting_days = 3\nat_risk = 1\nat = "25:00"\n')
    keys = [p.key for p in config.check(bad, today=TODAY)]
    assert "digest.at" in keys and "digest.at_risk" in keys
    bad = _example_with(tmp_path, 'calendar = "business"\n# Local', 'calendar = "nope"\n# Local')
    keys = [p.key for p in config.check(bad, today=TODAY)]
    assert "digest.calendar" in keys


def test_handover_and_weekly_are_routed_by_to_lists(tmp_path: Path) -> None:
    path = _example_with(tmp_path, 'to = ["oncall"]\n',
                         'to = ["oncall", "Line:l3", "Duty@Example.com", "oncall"]\n')
    path.write_text(path.read_text(encoding="utf-8").replace(
        'to = ["dedicated"]\n', 'to = ["dedicated", "deputy"]\n', 1), encoding="utf-8")
    loaded = config.load(path, today=TODAY)
    assert loaded.digest.handover_to == ("oncall", "line:L3", "duty@example.com")
    assert loaded.digest.weekly_to == ("dedicated", "deputy")
    # The short form still turns one off.
    off = _example_with(tmp_path, "waiting_days = 3\n", "waiting_days = 3\nweekly = false\n")
    text = off.read_text(encoding="utf-8")
    start = text.index("[digest.weekly]\n")
    end = text.index('to = ["dedicated"]\n', start) + len('to = ["dedicated"]\n')
    off.write_text(text[:start] + text[end:], encoding="utf-8")
    assert not config.load(off, today=TODAY).digest.weekly


def test_check_config_names_every_bad_digest_key(tmp_path: Path) -> None:
    path = _example_with(tmp_path, 'to = ["oncall"]\n', 'to = ["deputy", "line:L9", "nobody"]\n')
    path.write_text(path.read_text(encoding="utf-8").replace(
        'to = ["dedicated"]\n', "to = []\n", 1).replace(
        '# [digest.lines.L3]\n# at = "10:00"\n',
        '[digest.lines.L7]\nat = "10:00"\n[digest.engineers."anna@example.com"]\n'
        'calendar = "24x7"\n[digest.engineers."zoe@example.com"]\nat = "10:00"\n', 1),
        encoding="utf-8")
    found = {(p.key, p.reason) for p in config.check(path, today=TODAY)}
    reasons = dict(found)
    assert reasons["digest.handover.to[0]"].startswith('expected "oncall", "line:L1"')
    assert reasons["digest.handover.to[1]"] == (
        "unknown line 'L9' in 'line:L9'; expected line:L1 … line:L4")
    assert "got 'nobody'" in reasons["digest.handover.to[2]"]
    assert reasons["digest.weekly.to"].startswith("lists nobody")
    assert reasons["digest.lines.L7"].startswith("unknown line")
    assert reasons['digest.engineers."anna@example.com".calendar'].startswith(
        "an engineer's calendar is set on the engineer")
    assert reasons['digest.engineers."zoe@example.com"'].startswith("unknown engineer")
    # Every problem carries its line in the file.
    assert all(p.line > 1 for p in config.check(path, today=TODAY) if p.key.startswith("digest"))


def test_an_engineers_calendar_and_time_zone_are_checked(tmp_path: Path) -> None:
    path = _example_with(tmp_path, 'timezone = "Asia/Novosibirsk"\n',
                         'timezone = "Asia/Novosibirk"\ncalendar = "moscow"\n')
    reasons = {p.key: p.reason for p in config.check(path, today=TODAY)}
    assert reasons['engineers."dmitry@example.com".timezone'] == (
        "time zone 'Asia/Novosibirk' not found; did you mean Asia/Novosibirsk?")
    assert reasons['engineers."dmitry@example.com".calendar'].startswith(
        "unknown calendar 'moscow' (calendars are: ")
