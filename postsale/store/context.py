"""What the storage edge needs to act: database, journeys, renderer, clock, transport.

Built once by the CLI, the API or a flow (``Context.from_settings``) and passed to ingest,
dispatch, delivery and report, so nothing below reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from models import create_db_engine, init_db
from postsale.clock import Clock, SystemClock
from postsale.links import Links
from postsale.render.templates import TemplateRenderer
from postsale.render.types import Renderer
from postsale.settings import Settings
from postsale.spec.catalog import Catalog, load_catalog
from postsale.store.versions import JourneyVersions
from postsale.store.workers import WorkerSpec, resolve_workers


@dataclass
class Context:
    engine: Engine
    catalog: Catalog
    renderer: Renderer
    links: Links
    clock: Clock = field(default_factory=SystemClock)
    batch_size: int = 500
    # processes that decide a large dispatch batch (``postsale.store.workers``); 1: this one only
    dispatch_workers: int = 1
    # how a worker process builds the same catalogue and renderer (set by ``build``; without
    # it every batch is decided in this process)
    worker_spec: WorkerSpec | None = None
    versions: JourneyVersions = field(init=False)
    _dispatch_state: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.versions = JourneyVersions(self.engine, self.catalog)
        self.versions.register()

    @property
    def policy(self):
        return self.catalog.policy

    @classmethod
    def build(cls, *, database_url: str, journeys: Path, templates: Path, secret: str,
              clock: Clock | None = None, batch_size: int = 500, create: bool = True,
              dispatch_workers: int = 0) -> "Context":
        """``dispatch_workers``: 0 is one per core (``postsale.store.workers.auto_workers``)."""
        catalog = load_catalog(Path(journeys), Path(templates))
        engine = create_db_engine(database_url)
        if create:
            init_db(engine)
        links = Links(secret, catalog.policy.public_url)
        renderer = TemplateRenderer(Path(templates), catalog.policy, links)
        spec = WorkerSpec(url=database_url, catalog=catalog, templates=Path(templates), secret=secret,
                          renderer=renderer)
        return cls(engine=engine, catalog=catalog, renderer=renderer, links=links,
                   clock=clock or SystemClock(), batch_size=batch_size,
                   dispatch_workers=resolve_workers(dispatch_workers), worker_spec=spec)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> "Context":
        return cls.build(database_url=settings.database_url, journeys=settings.journeys,
                         templates=settings.templates, secret=settings.secret, clock=clock,
                         batch_size=settings.dispatch_batch_size, dispatch_workers=settings.dispatch_workers)
