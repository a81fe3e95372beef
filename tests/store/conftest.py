"""Storage tests run the real engine on a real database: a SQLite file and PostgreSQL.

``make_ctx`` and ``ctx`` are parametrized over both. The PostgreSQL case gets a schema of its
own per test (``tests.pg.database``) and skips, saying why, where ``POSTSALE_TEST_PG_URL`` is
unset or its server unreachable.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest

from postsale.clock import VirtualClock
from postsale.settings import DEV_SECRET
from postsale.store.context import Context
from tests.pg.database import fresh_schema, require_postgres

FIXTURE = Path(__file__).parent / "fixture"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)   # a Monday, 10:00 in Rome

DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def make_ctx(request, tmp_path: Path) -> Callable[..., Context]:
    """Build a Context on a new empty database of the parametrized kind (or on ``url``)."""
    with ExitStack() as stack:
        def new_url(n: int) -> str:
            if request.param == "sqlite":
                return f"sqlite:///{tmp_path}/test-{n}.db"
            return stack.enter_context(fresh_schema()).url

        made: list[Context] = []

        def build(*, journeys: Path = FIXTURE / "journeys", templates: Path = FIXTURE / "templates",
                  start: datetime = T0, url: str | None = None) -> Context:
            ctx = Context.build(database_url=url or new_url(len(made)), journeys=journeys,
                                templates=templates, secret=DEV_SECRET, clock=VirtualClock(start))
            stack.callback(ctx.engine.dispose)   # before its schema is dropped (LIFO)
            made.append(ctx)
            return ctx

        if request.param == "postgres":
            require_postgres()
        yield build


@pytest.fixture
def ctx(make_ctx) -> Context:
    return make_ctx()
