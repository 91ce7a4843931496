"""The App: everything the running parts share, built once per (re)load and swapped whole.

``daemon`` builds one :class:`App` at start-up; workers and the scheduler hold a
reference to it and read it once per message or job, so each message sees one
consistent config, notifier and knowledge base. SIGHUP builds a new App from the
new config (:meth:`App.reloaded`) and hands it over by assigning one reference,
instead of changing attributes under a running thread. The engine, the session
factory and the metrics survive a reload; the database and listeners need a
restart (the daemon says so).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailticket.config import Config
from mailticket.metrics import Metrics
from mailticket.outbound.notify import Notifier
from mailticket.outbound.render import Renderer
from mailticket.policy import kb
from mailticket.policy.kb import KnowledgeBase
from mailticket.store.db import make_sessionmaker


@dataclass(frozen=True)
class App:
    """The shared, immutable context of one configuration (no globals)."""

    config: Config
    engine: Engine
    factory: sessionmaker[Session]
    notifier: Notifier
    knowledge: KnowledgeBase
    metrics: Metrics | None = None

    def reloaded(self, config: Config) -> App:
        """A new App for ``config``: templates and the knowledge base read again."""
        return dataclasses.replace(
            self, config=config, notifier=Notifier(config, Renderer(config.templates_dir)),
            knowledge=kb.load(config.kb.dir),
        )


def assemble(config: Config, engine: Engine, metrics: Metrics | None = None) -> App:
    """Build the App on an open engine: session factory, renderer, knowledge base."""
    return App(
        config=config, engine=engine, factory=make_sessionmaker(engine),
        notifier=Notifier(config, Renderer(config.templates_dir)),
        knowledge=kb.load(config.kb.dir), metrics=metrics,
    )
