"""Scenario 6 — scale: 1,000,000 customers in the database, 1% due.

A dispatch pass must cost what its due customers cost, not what the database holds. Two
databases, the same 10,000 due customers (``bench.data``'s mix): one holding only them, one
holding 990,000 more who finished their journeys or wait for a survey answer later this week,
each with an order, its purchase lines and an email in their history. The rows are written
with Core ``executemany`` inserts (five tables, ~5 million rows), not through the ORM.
Target: the pass over the large database within 20% of the small one.
"""

from __future__ import annotations

from typing import Any

from bench.common import median

NAME = "scale"
TITLE = "dispatch pass with 1% due of 1,000,000 customers vs the due customers alone"
TOTAL, DUE = 1_000_000, 10_000
QUICK_TOTAL, QUICK_DUE = 100_000, 1_000
TARGET_RATIO = "≤ 1.2"


def run(runner: Any) -> None:
    from bench.dispatch import loaded
    total, due = (QUICK_TOTAL, QUICK_DUE) if runner.quick else (TOTAL, DUE)
    for backend in runner.backends:
        passes: dict[int, list[dict]] = {}
        for size in (due, total):
            passes[size] = []
            for n, url in enumerate(loaded(runner, backend, f"scale-{backend.name}-{size}", total=size, due=due)):
                passes[size].append(runner.child(f"{due:,} due of {size:,} · {backend.name} · {n + 1}",
                                                 "bench.dispatch:measure", {"url": url, "due": due}))
        alone = median([r["seconds"] for r in passes[due]])
        big = median([r["seconds"] for r in passes[total]])
        runner.figure(f"{due:,} due of {due:,}", backend.name, "dispatch pass", alone, "s",
                      samples=[r["seconds"] for r in passes[due]])
        runner.figure(f"{due:,} due of {total:,}", backend.name, "dispatch pass", big, "s",
                      samples=[r["seconds"] for r in passes[total]],
                      note=f"{passes[total][0]['actions']}")
        runner.figure(f"{total:,} vs {due:,}", backend.name, "pass time ratio",
                      big / alone if alone and big else None, "×", target=TARGET_RATIO)
