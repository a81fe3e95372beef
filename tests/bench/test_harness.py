"""The benchmark harness: targets are checked, results merge and render, data is seeded, and
one quick run end to end writes the figures it prints.

No test here asserts a speed: benchmarks print figures, tests check behaviour.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from sqlalchemy import select

from bench.common import context, percentile
from bench.data import NOW, Loader
from bench.harness import (Figure, Options, Runner, check, figures_of, markdown, update_readme,
                           write_results)
from models import Customer, Message, Run

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value, target, ok", [
    (5200.0, "≥ 5000", True), (4999.9, "≥ 5000", False), (0.9, "≤ 1.0", True), (1.3, "≤ 1.2", False),
    (1.2, "≤ 1.2×", True), (12_000, "≥ 10,000", True), (None, "≥ 5000", None), (3.0, None, None),
])
def test_check_reads_the_target_it_prints(value, target, ok):
    assert check(value, target) is ok


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile([0.3], 99) == 0.3
    assert percentile([], 50) is None


def _runner(tmp_path: Path) -> Runner:
    return Runner(Options(results=tmp_path), [], Console(file=open(Path(tmp_path) / "console.txt", "w")),
                  tmp_path / "last-run.log")


def test_results_merge_keeps_scenarios_not_run(tmp_path):
    path = tmp_path / "latest.json"
    info = {"date": "2026-11-23T10:00:00+00:00"}
    first = _runner(tmp_path)
    first.scenario = "dispatch"
    first.figure("10,000 due", "sqlite", "emails queued/s", 1500.0, "/s", target="≥ 5000", samples=[1400, 1500])
    write_results(first, info, {"dispatch": 12.0}, [SimpleNamespace(NAME="dispatch", TITLE="d")], path)

    second = _runner(tmp_path)
    second.scenario = "latency"
    second.figure("1,000 purchases", "sqlite", "p95", 0.09, "s", target="≤ 1.0")
    data = write_results(second, {"date": "2026-11-23T11:00:00+00:00"}, {"latency": 3.0},
                         [SimpleNamespace(NAME="latency", TITLE="l")], path)

    stored = json.loads(path.read_text(encoding="utf-8"))
    assert list(stored["scenarios"]) == ["dispatch", "latency"]          # run order, not write order
    assert stored == json.loads(json.dumps(data, default=str))
    dispatch, latency = figures_of(stored)
    assert (dispatch.value, dispatch.ok, dispatch.samples) == (1500.0, False, [1400, 1500])
    assert (latency.value, latency.ok) == (0.09, True)
    assert stored["scenarios"]["dispatch"]["date"] == "2026-11-23T10:00:00+00:00"


def test_readme_table_is_replaced_between_its_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:latest -->\nold table\n<!-- /bench:latest -->\nafter\n", encoding="utf-8")
    table = markdown([Figure("scale", "1,000,000 vs 10,000", "sqlite", "pass time ratio", 1.75, "×",
                             "≤ 1.2", False)], "_header_")
    assert update_readme(readme, table)
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("intro\n<!-- bench:latest -->\n_header_")
    assert "| scale | 1,000,000 vs 10,000 | sqlite | pass time ratio | 1.75× | ≤ 1.2 | ✗ |" in text
    assert "old table" not in text and text.endswith("<!-- /bench:latest -->\nafter\n")
    unmarked = tmp_path / "OTHER.md"
    unmarked.write_text("no markers\n", encoding="utf-8")
    assert not update_readme(unmarked, table)
    assert unmarked.read_text(encoding="utf-8") == "no markers\n"


def _dump(url: str) -> list[tuple]:
    ctx = context(url)
    try:
        with ctx.engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(select(Customer.__table__).order_by(Customer.id))]
            rows += [tuple(r) for r in conn.execute(select(Run.__table__).order_by(Run.id))]
        return rows
    finally:
        ctx.engine.dispose()


def test_bench_data_is_seeded_varied_and_due_as_documented(tmp_path):
    urls = [f"sqlite:///{tmp_path / name}.db" for name in ("a", "b")]
    for url in urls:
        ctx = context(url)
        dataset = Loader(ctx, tag="t").load(total=1_200, due=400)
        ctx.engine.dispose()
    assert dataset.total == 1_200 and dataset.due == 400
    assert _dump(urls[0]) == _dump(urls[1])                    # same seed, same bytes

    ctx = context(urls[0])
    with ctx.engine.connect() as conn:
        zones = {z for (z,) in conn.execute(select(Customer.timezone))}
        due_journeys = Counter(j for (j,) in conn.execute(select(Run.journey_id).where(Run.next_run_at <= NOW)))
        orders = [len(d["items"]) for (d,) in conn.execute(
            select(Run.context["trigger"]["data"]).where(Run.journey_id == "post-purchase"))
            if isinstance(d, dict) and "items" in d]
        history = conn.scalar(select(Message.id).limit(1))
    ctx.engine.dispose()
    assert len(zones) >= 10
    assert sum(due_journeys.values()) == 400
    assert due_journeys["post-purchase"] > due_journeys["care-check-in"] > 0
    assert due_journeys["support-ack"] > 0 and due_journeys["issue-resolution"] > 0
    assert orders and set(orders) <= {1, 2, 3} and len(set(orders)) > 1
    assert history is not None                                  # earlier sends for caps to read


def test_a_quick_run_writes_the_figures_it_prints(tmp_path):
    """`python -m bench --quick` end to end on SQLite: children run, figures land in the JSON."""
    out = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "dispatch,limit", "--pg", "none",
                          "--results", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr + (tmp_path / "last-run.log").read_text()
    data = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    assert data["machine"]["databases"] == ["sqlite"]
    assert data["machine"]["options"] == {"quick": True, "repeats": 1}
    assert set(data["scenarios"]) == {"dispatch", "limit"}
    figures = {(f.scenario, f.metric): f for f in figures_of(data)}
    queued = figures[("dispatch", "emails queued/s")]
    assert queued.value and queued.value > 0 and queued.target == "≥ 5000" and queued.ok == check(queued.value, "≥ 5000")
    assert 0 < figures[("dispatch", "peak RSS (dispatch)")].value < 2_000
    assert 0 < figures[("limit", "ours / limit")].value
    raw = data["scenarios"]["dispatch"]["raw"]
    passes = [r for r in raw if "runs_per_s" in r]
    assert passes and all(r["customers"] == 1_000 and 0 < r["sent"] <= r["runs"] for r in passes)
    delivered = [r for r in raw if r["_label"].endswith("deliver 1")]
    assert delivered and delivered[0]["sent"] == passes[0]["sent"] and delivered[0]["failed"] == 0
    assert "emails queued/s" in out.stdout and str(tmp_path / "latest.json") in out.stdout.replace("\n", "")
