"""What the storage edge needs to act: database, journeys, renderer, clock, transport.

Built once by the CLI, the API or a flow (``Context.from_settings``) and passed to ingest,
dispatch, delivery and report, so nothing below reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from models import create_db_engine, init_db
from postsale.clock import Clock, SystemClock
from postsale.links import Links
from postsale.render.templates import TemplateRenderer
from postsale.render.types import Renderer
from postsale.settings import Settings
from postsale.spec.catalog import Catalog, load_catalog
from postsale.store.versions import JourneyVersions


@dataclass
class Context:
    engine: Engine
    catalog: Catalog
    renderer: Renderer
    links: Links
    clock: Clock = field(default_factory=SystemClock)
    batch_size: int = 500
    versions: JourneyVersions = field(init=False)

    def __post_init__(self) -> None:
        self.versions = JourneyVersions(self.engine, self.catalog)
        self.versions.register()

    @property
    def policy(self):
        return self.catalog.policy

    @classmethod
    def build(cls, *, database_url: str, journeys: Path, templates: Path, secret: str,
              clock: Clock | None = None, batch_size: int = 500, create: bool = True) -> "Context":
        catalog = load_catalog(Path(journeys), Path(templates))
        engine = create_db_engine(database_url)
        if create:
            init_db(engine)
        links = Links(secret, catalog.policy.public_url)
        renderer = TemplateRenderer(Path(templates), catalog.policy, links)
        return cls(engine=engine, catalog=catalog, renderer=renderer, links=links,
                   clock=clock or SystemClock(), batch_size=batch_size)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> "Context":
        return cls.build(database_url=settings.database_url, journeys=settings.journeys,
                         templates=settings.templates, secret=settings.secret, clock=clock,
                         batch_size=settings.dispatch_batch_size)
