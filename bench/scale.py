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

from bench.backends import POSTGRES
from bench.common import median

NAME = "scale"
TITLE = "dispatch pass with 1% due of 1,000,000 customers vs the due customers alone"
TOTAL, DUE = 1_000_000, 10_000
QUICK_TOTAL, QUICK_DUE = 30_000, 300
TARGET_RATIO = "≤ 1.2"


def run(runner: Any) -> None:
    from bench.dispatch import loaded
    total, due = (QUICK_TOTAL, QUICK_DUE) if runner.quick else (TOTAL, DUE)
    for backend in runner.backends:
        passes: dict[int, list[dict]] = {due: [], total: []}
        # PostgreSQL reloads for every repeat (no file to snapshot): a million customers, once.
        repeats = 1 if backend.name == POSTGRES and total >= 500_000 else runner.repeats
        alone = loaded(runner, backend, f"scale-{backend.name}-{due}", total=due, due=due, repeats=repeats)
        big = loaded(runner, backend, f"scale-{backend.name}-{total}", total=total, due=due, repeats=repeats)
        # Interleaved (small, large, small, large...): a change in the machine's load between
        # the two halves would otherwise read as a difference between the databases.
        for n, (small_url, big_url) in enumerate(zip(alone, big)):
            for size, url in ((due, small_url), (total, big_url)):
                passes[size].append(runner.child(f"{due:,} due of {size:,} · {backend.name} · {n + 1}",
                                                 "bench.dispatch:measure", {"url": url, "due": due}))
        alone.close()
        big.close()
        small_s = median([r["seconds"] for r in passes[due]])
        big_s = median([r["seconds"] for r in passes[total]])
        small_cpu = median([r["cpu_s"] for r in passes[due]])
        big_cpu = median([r["cpu_s"] for r in passes[total]])
        runner.figure(f"{due:,} due of {due:,}", backend.name, "dispatch pass", small_s, "s",
                      samples=[r["seconds"] for r in passes[due]])
        runner.figure(f"{due:,} due of {total:,}", backend.name, "dispatch pass", big_s, "s",
                      samples=[r["seconds"] for r in passes[total]], note=f"{passes[total][0]['actions']}")
        runner.figure(f"{total:,} vs {due:,}", backend.name, "pass time ratio",
                      big_s / small_s if small_s and big_s else None, "×", target=TARGET_RATIO)
        runner.figure(f"{total:,} vs {due:,}", backend.name, "CPU time ratio",
                      big_cpu / small_cpu if small_cpu and big_cpu else None, "×",
                      note=f"{big_cpu:.2f} vs {small_cpu:.2f} CPU-seconds")

