"""Flow tests: ONE Prefect test server for the whole session, started only if a test asks.

Only ``tests/flows`` uses the ``prefect_server`` fixture, so the rest of the suite never pays Prefect's
start-up (20–30 s). Each test still gets its own SQLite file, the shipped journeys and
templates, a virtual clock and a memory transport, injected with ``flows.runtime.use_runtime``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from postsale.clock import VirtualClock
from postsale.delivery.memory import MemoryTransport
from postsale.settings import DEV_SECRET
from postsale.store.context import Context
from tests.flows.support import T0

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (ROOT / "journeys", ROOT / "templates")
FIXTURE = (ROOT / "tests/store/fixture/journeys", ROOT / "tests/store/fixture/templates")


def _journeys() -> tuple[Path, Path]:
    """The shipped catalogue when it loads cleanly, else the storage tests' fixture."""
    from postsale.spec.catalog import load_catalog
    try:
        catalog = load_catalog(*SHIPPED)
    except Exception:
        return FIXTURE
    return FIXTURE if any(p.is_error for p in catalog.problems) or not catalog.journeys else SHIPPED


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server for the session, with run logs shipped to it."""
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        # tests/conftest.py turns log shipping off for the rest of the suite; these tests read logs
        with temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: True}):
            yield


@pytest.fixture
def runtime(prefect_server, tmp_path: Path) -> Iterator[tuple[Context, MemoryTransport]]:
    """Flows in this test run on a fresh SQLite file, a virtual clock and a memory transport."""
    from flows.runtime import use_runtime

    journeys, templates = _journeys()
    ctx = Context.build(database_url=f"sqlite:///{tmp_path}/postsale.db", journeys=journeys,
                        templates=templates, secret=DEV_SECRET, clock=VirtualClock(T0), batch_size=2)
    transport = MemoryTransport()
    with use_runtime(ctx, transport):
        yield ctx, transport
    ctx.engine.dispose()
