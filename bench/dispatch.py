"""Scenario 2 — dispatch: emails decided, rendered and queued per second, and peak memory.

10,000 and 100,000 customers due at once (``bench.data``: five shipped journeys, twelve time
zones, two locales, a survey, transactional and marketing mail), one ``dispatch(ctx)`` pass
in a fresh process. Figures: emails queued per second (the target), runs advanced per second
(held runs are decisions too), peak RSS of the dispatching process; then the queued mail
handed to the memory transport by ``deliver`` (in another process).

Each repeat starts from the same loaded bytes (a SQLite snapshot; PostgreSQL reloads).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

from bench.backends import SQLITE, restore_sqlite, snapshot_sqlite
from bench.common import DrainingTransport, context, median, rate, timer, warm

NAME = "dispatch"
TITLE = "emails decided + rendered + queued per second, peak RSS"
SIZES, QUICK_SIZES = (10_000, 100_000), (1_000,)
TARGET_RATE, TARGET_RSS = "≥ 5000", "≤ 300"


# ---------------------------------------------------------------- children

def setup(params: dict[str, Any], progress: Callable) -> dict[str, Any]:
    """Load ``total`` customers, ``due`` of them due now; snapshot a SQLite file."""
    from bench.data import Loader
    ctx = context(params["url"])
    with timer() as t:
        dataset = Loader(ctx, tag=params.get("tag", "b")).load(
            total=params["total"], due=params["due"], bought=params.get("bought"),
            progress=lambda d, n: progress(d, n, "loading"))
    ctx.engine.dispose()
    if params.get("snapshot"):
        snapshot_sqlite(params["url"], Path(params["snapshot"]))
    return {"customers": dataset.total, "due": dataset.due, "load_s": round(t["s"], 2),
            "rows_per_s": rate(dataset.total * 5, t["s"])}


def measure(params: dict[str, Any], progress: Callable) -> dict[str, Any]:
    """One dispatch pass over everything due; optionally under pyinstrument."""
    from postsale.store.dispatch import dispatch
    ctx = context(params["url"], batch_size=params.get("batch_size", 500))
    warm(ctx)
    due = params.get("due")
    kwargs: dict[str, Any] = {}
    if "on_batch" in inspect.signature(dispatch).parameters:
        kwargs["on_batch"] = lambda report: progress(report.customers, due, "dispatch")
    if params.get("gc_tuned"):
        import gc
        gc.freeze()                            # catalogue, templates, modules: never garbage
        gc.set_threshold(50_000, 20, 100)
    profiler = None
    if params.get("profile"):
        import pyinstrument
        profiler = pyinstrument.Profiler(interval=0.001)
        profiler.start()
    with timer() as t:
        report = dispatch(ctx, **kwargs)
    if profiler is not None:
        profiler.stop()
        Path(params["profile"]).write_text(profiler.output_text(unicode=True, show_all=False), encoding="utf-8")
    if params.get("sent_list"):
        _write_sent(ctx, Path(params["sent_list"]))
    ctx.engine.dispose()
    sent = report.actions.get("sent", 0)
    return {"seconds": round(t["s"], 3), "cpu_s": round(t["cpu"], 3), "customers": report.customers,
            "runs": report.runs, "batches": report.batches, "actions": dict(report.actions), "sent": sent,
            "emails_per_s": rate(sent, t["s"]), "runs_per_s": rate(report.runs, t["s"]),
            "emails_per_cpu_s": rate(sent, t["cpu"])}


def _write_sent(ctx: Any, path: Path) -> None:
    """What this pass queued, for the limit scenario to render the very same emails."""
    import json

    from sqlalchemy import select

    from models import Message
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(Message.run_id, Message.step_id, Message.template, Message.category,
                                   Message.survey_id).where(Message.status == "queued",
                                                            Message.category != "ops")).all()
    path.write_text(json.dumps([list(r) for r in rows]), encoding="utf-8")


def deliver_measure(params: dict[str, Any], progress: Callable) -> dict[str, Any]:
    """Hand everything queued to the memory transport."""
    from postsale.store.delivery import deliver
    ctx = context(params["url"])
    transport = DrainingTransport()
    with timer() as t:
        report = deliver(ctx, transport)
    ctx.engine.dispose()
    return {"seconds": round(t["s"], 3), "sent": report.sent, "failed": report.failed,
            "emails_per_s": rate(report.sent, t["s"])}


# ---------------------------------------------------------------- parent

def loaded(runner: Any, backend: Any, label: str, *, total: int, due: int, tag: str = "b",
           bought: str | None = None, repeats: int | None = None):
    """A generator of database URLs, each freshly holding the same loaded data (one per repeat)."""
    workdir = backend.workdir
    repeats = repeats or runner.repeats
    params = {"total": total, "due": due, "tag": tag, "bought": bought}
    if backend.name == SQLITE:
        snap = workdir / f"{label}.snapshot.db"
        with backend.database(label) as url:
            runner.child(f"{label} · load", "bench.dispatch:setup", {"url": url, **params, "snapshot": str(snap)})
        try:
            for _ in range(repeats):
                with backend.database(label) as url:
                    restore_sqlite(snap, url)
                    yield url
        finally:
            snap.unlink(missing_ok=True)
        return
    for _ in range(repeats):
        with backend.database(label) as url:
            runner.child(f"{label} · load", "bench.dispatch:setup", {"url": url, **params})
            yield url


def run(runner: Any) -> None:
    sizes = QUICK_SIZES if runner.quick else SIZES
    for backend in runner.backends:
        for due in sizes:
            case = f"{due:,} due"
            results, deliveries = [], []
            for n, url in enumerate(loaded(runner, backend, f"dispatch-{backend.name}-{due}", total=due, due=due)):
                params = {"url": url, "due": due}
                if runner.options.profile and n == 0:
                    name = f"profile-dispatch-{backend.name}-{due}.prof.txt"
                    params["profile"] = str(runner.log_path.parent / name)
                results.append(runner.child(f"{case} · {backend.name} · dispatch {n + 1}", "bench.dispatch:measure",
                                            params))
                deliveries.append(runner.child(f"{case} · {backend.name} · deliver {n + 1}",
                                               "bench.dispatch:deliver_measure", {"url": url}))
            record(runner, case, backend.name, results, deliveries)


def record(runner: Any, case: str, db: str, results: list[dict], deliveries: list[dict]) -> None:
    first = results[0]
    runner.figure(case, db, "emails queued/s", median([r["emails_per_s"] for r in results]), "/s",
                  target=TARGET_RATE, samples=[r["emails_per_s"] for r in results],
                  note=f"{first['sent']:,} sent of {first['runs']:,} runs advanced: {first['actions']}")
    runner.figure(case, db, "emails queued per CPU-second", median([r["emails_per_cpu_s"] for r in results]), "/s",
                  samples=[r["emails_per_cpu_s"] for r in results],
                  note="the dispatching process's own CPU time: steadier than wall time on a shared machine")
    runner.figure(case, db, "runs advanced/s", median([r["runs_per_s"] for r in results]), "/s",
                  samples=[r["runs_per_s"] for r in results])
    runner.figure(case, db, "dispatch pass", median([r["seconds"] for r in results]), "s",
                  samples=[r["seconds"] for r in results])
    runner.figure(case, db, "peak RSS (dispatch)", max(r["rss_peak_mb"] for r in results), "MB",
                  target=TARGET_RSS, samples=[r["rss_peak_mb"] for r in results])
    if deliveries and all(deliveries):
        runner.figure(case, db, "handed to memory transport/s", median([d["emails_per_s"] for d in deliveries]),
                      "/s", samples=[d["emails_per_s"] for d in deliveries])
