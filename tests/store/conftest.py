"""Storage tests run the real engine on a real SQLite file (and PostgreSQL where marked)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest

from postsale.clock import VirtualClock
from postsale.settings import DEV_SECRET
from postsale.store.context import Context

FIXTURE = Path(__file__).parent / "fixture"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)   # a Monday, 10:00 in Rome


@pytest.fixture
def make_ctx(tmp_path: Path) -> Callable[..., Context]:
    made: list[Context] = []

    def build(*, journeys: Path = FIXTURE / "journeys", templates: Path = FIXTURE / "templates",
              start: datetime = T0, url: str | None = None) -> Context:
        ctx = Context.build(database_url=url or f"sqlite:///{tmp_path}/test-{len(made)}.db",
                            journeys=journeys, templates=templates, secret=DEV_SECRET,
                            clock=VirtualClock(start))
        made.append(ctx)
        return ctx

    yield build
    for ctx in made:
        ctx.engine.dispose()


@pytest.fixture
def ctx(make_ctx) -> Context:
    return make_ctx()
