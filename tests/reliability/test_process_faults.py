"""Process faults (issue 9, SPEC §9.2-9.3): SIGKILL a dispatcher over and over at random
points of a run over ~1,000 customers, then let a clean run finish. The outcome must equal
what one uninterrupted dispatcher decides from the same state (a copy), every (run, step) is
queued once, nothing due is left behind, and no cap, gap, quiet hour or hold is broken
(recomputed from the outbox). The scenario, worker and checks are the PostgreSQL suite's
(``tests/pg``); here they run on SQLite, and on PostgreSQL when ``POSTSALE_TEST_PG_URL`` is set.

``POSTSALE_LONG=1`` (marker ``reliability_long``): several hundred kills over thousands of customers.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from tests.pg.database import copy_schema, fresh_schema, require_postgres
from tests.pg.scenario import NOW, context, seed, worker
import tests.pg.test_concurrent_dispatch as concurrent
from tests.pg.test_concurrent_dispatch import (_assert_caps_and_holds, _assert_exactly_once,
                                               _assert_nothing_due, _assert_same_outcome, _finish)

LONG = os.environ.get("POSTSALE_LONG") == "1"


def kill_repeatedly(url: str, kills: int, rng: random.Random, batch: int) -> tuple[int, int]:
    """Start a dispatcher and SIGKILL it at a random moment after it started committing, ``kills``
    times (fewer if it finishes first); returns (kills done, batches committed by the victims)."""
    done = committed = 0
    while done < kills:
        proc = worker("dispatch", "--batch-size", str(batch), url=url, name=f"k{done}")
        try:
            line = proc.stdout.readline()                  # its first commit (or its end)
            if not line or json.loads(line).get("done"):
                proc.communicate(timeout=60)
                return done, committed
            time.sleep(rng.uniform(0.0, 0.4))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            lines = [line] + proc.stdout.read().splitlines()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        finished = [json.loads(x) for x in lines if x.strip()]
        if proc.returncode != -signal.SIGKILL or any(x.get("done") for x in finished):
            return done, committed                         # it finished before the kill landed
        committed += sum(1 for x in finished if "batch" in x)
        done += 1
    return done, committed


def run_scenario(shared: str, reference: str, *, customers: int, kills: int, seed_value: int,
                 copy) -> None:
    rng = random.Random(seed_value)
    t0 = time.monotonic()
    seed(shared, customers)
    copy()
    expected = _finish(worker("dispatch", "--batch-size", "50", url=reference, name="ref"))
    t1 = time.monotonic()
    done, committed = kill_repeatedly(shared, kills, rng, batch=rng.choice([10, 20]))
    final = _finish(worker("dispatch", "--batch-size", "50", url=shared, name="final"))
    t2 = time.monotonic()
    print(f"\n{customers} customers: seed+reference {t1 - t0:.1f}s; {done} kills "
          f"({committed} batches committed by killed dispatchers), clean finish advanced "
          f"{final['customers']} of {expected['customers']} customers, in {t2 - t1:.1f}s")
    assert done >= min(kills, 5), "the dispatcher finished before it could be killed enough"
    engine = create_engine(shared, poolclass=NullPool)
    ref_engine = create_engine(reference, poolclass=NullPool)
    try:
        _assert_same_outcome(engine, ref_engine)
        _assert_exactly_once(engine)
        _assert_nothing_due(engine)
        saved, concurrent.CUSTOMERS = concurrent.CUSTOMERS, customers   # its sanity floor scales
        try:
            _assert_caps_and_holds(engine, context(shared, NOW))
        finally:
            concurrent.CUSTOMERS = saved
    finally:
        engine.dispose()
        ref_engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_repeated_sigkill_of_the_dispatcher_loses_and_repeats_nothing(tmp_path, backend):
    customers, kills = (1_000, 20)
    _run(tmp_path, backend, customers, kills)


@pytest.mark.reliability_long
@pytest.mark.skipif(not LONG, reason="long variant: set POSTSALE_LONG=1")
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_hundreds_of_sigkills_over_thousands_of_customers(tmp_path, backend):
    _run(tmp_path, backend, int(os.environ.get("POSTSALE_LONG_CUSTOMERS", "5000")),
         int(os.environ.get("POSTSALE_LONG_KILLS", "300")))


def _run(tmp_path, backend: str, customers: int, kills: int) -> None:
    if backend == "sqlite":
        def copy() -> None:
            shutil.copyfile(tmp_path / "shared.db", tmp_path / "reference.db")
        run_scenario(f"sqlite:///{tmp_path}/shared.db", f"sqlite:///{tmp_path}/reference.db",
                     customers=customers, kills=kills, seed_value=7, copy=copy)
    else:
        require_postgres()
        with fresh_schema("kill") as shared, fresh_schema("kref") as reference:
            run_scenario(shared.url, reference.url, customers=customers, kills=kills, seed_value=7,
                         copy=lambda: copy_schema(shared, reference))
