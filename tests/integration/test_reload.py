"""SIGHUP's reload as the daemon does it: one new immutable App handed over whole.

``daemon.Reloader`` is driven directly (the signal path itself is tested in
``test_systemd``): the workers and the scheduler must end up holding the same new
App, the old one must be untouched (a message in hand finishes with it), the
knowledge base must be read again, and a bad config must change nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from support.configs import REPO
from test_reports import example_config

from mailticket import config as config_mod
from mailticket.daemon import Reloader, build_app
from mailticket.runners.scheduler import Scheduler
from mailticket.runners.worker import SpoolWorker


def test_reload_swaps_one_app_and_reads_the_knowledge_base_again(
    tmp_path: Path, sqlite_url: str
) -> None:
    kb_dir = tmp_path / "kb"
    shutil.copytree(REPO / "kb", kb_dir)
    path = example_config(tmp_path, sqlite_url)
    path.write_text(path.read_text(encoding="utf-8").replace(str(REPO / "kb"), str(kb_dir)),
                    encoding="utf-8")
    old = build_app(config_mod.load(path))
    workers = [SpoolWorker(old, name="w1"), SpoolWorker(old, name="w2")]
    scheduler = Scheduler(old)
    reloader = Reloader(old)
    reloader.attach(workers)
    reloader.scheduler = scheduler
    articles = len(old.knowledge.articles)
    assert articles > 0
    try:
        (kb_dir / "ru" / "new-article.md").write_text(
            "---\nslug: new-article\ntitle: Новая статья\nlocale: ru\n---\nТекст.\n",
            encoding="utf-8")
        path.write_text(path.read_text(encoding="utf-8").replace(
            'name = "Standard"', 'name = "Standard 2027"'), encoding="utf-8")
        assert reloader.reload()
        new = reloader.app
        assert new is not old
        assert [w.app for w in workers] == [new, new] and scheduler.app is new
        assert all(w.app is new for w in workers)
        assert new.config.sla_plans["standard"].name == "Standard 2027"
        assert len(new.knowledge.articles) == articles + 1
        assert new.knowledge.find("new-article", "ru") is not None
        # The old App is immutable and unchanged: a message in hand finishes with it.
        assert old.config.sla_plans["standard"].name == "Standard"
        assert len(old.knowledge.articles) == articles
        assert (new.engine, new.factory) == (old.engine, old.factory)

        # A broken config is refused and nothing changes hands.
        path.write_text("this is = not [toml", encoding="utf-8")
        assert not reloader.reload()
        assert reloader.app is new and all(w.app is new for w in workers)
    finally:
        old.engine.dispose()
