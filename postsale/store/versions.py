"""Journey versions: a run keeps the YAML it entered with.

Each catalog journey is stored once per content hash; runs point at the version row. Editing a
file creates a new version for new entries; old runs keep reading theirs. A run whose journey
file was removed is stopped at its next step (``current_id`` returns None).
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import JourneyVersion, utcnow
from postsale.spec.catalog import Catalog
from postsale.spec.journeys import parse_journey
from postsale.spec.model import Journey
from postsale.store.sql import insert_ignore


class JourneyVersions:
    def __init__(self, engine: Engine, catalog: Catalog) -> None:
        self.engine = engine
        self.catalog = catalog
        self._by_version: dict[int, Journey] = {}
        self._current: dict[str, int] | None = None

    def register(self) -> None:
        """Store the catalog's versions; done once, before any other transaction (SQLite has
        one writer: registering lazily inside an ingest transaction would lock itself)."""
        if self._current is None:
            self._current = self._register()

    def current_id(self, journey_id: str) -> int | None:
        """The version id new entries of this journey use (None: the file is gone)."""
        self.register()
        return self._current.get(journey_id)

    def journey(self, version_id: int) -> Journey | None:
        """The frozen journey of a version; None if its stored YAML no longer parses."""
        if version_id not in self._by_version:
            self.register()
            with Session(self.engine) as session:
                row = session.get(JourneyVersion, version_id)
            if row is None:
                return None
            journey, _problems = parse_journey(row.source, row.file, policy=self._lenient_policy())
            if journey is None:
                return None
            self._by_version[version_id] = journey
        return self._by_version[version_id]

    def _lenient_policy(self):
        """A stored version was valid when customers entered it: a limit tightened since
        (fewer survey questions) must not strand the runs already on it."""
        limits = replace(self.catalog.policy.limits, survey_max_questions=10**6)
        return replace(self.catalog.policy, limits=limits)

    def _register(self) -> dict[str, int]:
        current: dict[str, int] = {}
        with Session(self.engine) as session:
            for journey in self.catalog.journeys.values():
                insert_ignore(session, JourneyVersion, [{
                    "journey_id": journey.id, "content_hash": journey.content_hash,
                    "source": journey.source, "file": self.catalog.files.get(journey.id, ""),
                    "created_at": utcnow()}], ["journey_id", "content_hash"])
            session.commit()
            for journey in self.catalog.journeys.values():
                vid = session.execute(select(JourneyVersion.id).where(
                    JourneyVersion.journey_id == journey.id,
                    JourneyVersion.content_hash == journey.content_hash)).scalar_one()
                current[journey.id] = vid
                self._by_version[vid] = journey
        return current
