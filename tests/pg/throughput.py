"""Dispatch throughput on PostgreSQL: 1, 2 and 4 dispatcher processes × batch sizes.

    POSTSALE_TEST_PG_URL=postgresql+psycopg://... python -m tests.pg.throughput [--customers 4000]

Seeds the scenario (``tests.pg.scenario``) once, then for every combination copies it into a
fresh schema and starts the dispatchers together on the same ``NOW``. Throughput is customers
advanced per second, from the moment the dispatchers start together (after every process has
loaded) to the last one's end; "dispatcher CPU" is the dispatchers' own CPU time, which a
busy machine does not inflate. Prints a Markdown table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.pg.database import copy_schema, fresh_schema, require_postgres
from tests.pg.scenario import seed, worker


def _peak_connections(names: list[str], stop: threading.Event, peak: dict[str, int]) -> None:
    engine = create_engine(require_postgres(), poolclass=NullPool)
    with engine.connect() as conn:
        while not stop.is_set():
            for name, n in conn.execute(text("SELECT application_name, count(*) FROM pg_stat_activity "
                                             "WHERE application_name = ANY(:names) GROUP BY 1"), {"names": names}):
                peak[name] = max(peak.get(name, 0), n)
            conn.rollback()
            time.sleep(0.05)
    engine.dispose()


def measure(template, processes: int, batch: int) -> dict:
    with fresh_schema("tp") as schema:
        copy_schema(template, schema)
        names = [f"tp{processes}x{batch}-{n}" for n in range(processes)]
        stop, peak = threading.Event(), {}
        watcher = threading.Thread(target=_peak_connections, args=(names, stop, peak))
        watcher.start()
        start_at = str(time.time() + 4 + 2 * processes)   # after every process has loaded its journeys
        procs = [worker("dispatch", "--batch-size", str(batch), "--start-at", start_at, url=schema.url, name=name)
                 for name in names]
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=900)
            assert proc.returncode == 0, err[-2000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
        stop.set()
        watcher.join()
    span = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    customers = sum(r["customers"] for r in reports)
    return {"processes": processes, "batch": batch, "customers": customers,
            "runs": sum(r["runs"] for r in reports), "seconds": round(span, 2),
            "per_second": round(customers / span), "batches": sum(r["batches"] for r in reports),
            "connections": max(peak.values(), default=0), "cpu": round(sum(r["cpu"] for r in reports), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.pg.throughput")
    parser.add_argument("--customers", type=int, default=4000)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--batches", default="100,500,1000")
    args = parser.parse_args()
    with fresh_schema("tpl") as template:
        started = time.monotonic()
        seed(template.url, args.customers)
        print(f"seeded {args.customers} customers in {time.monotonic() - started:.0f}s", flush=True)
        print("| processes | batch | customers | runs | seconds | customers/s | batches | dispatcher CPU s "
              "| peak conns/process |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
        for processes in (int(p) for p in args.processes.split(",")):
            for batch in (int(b) for b in args.batches.split(",")):
                r = measure(template, processes, batch)
                print(f"| {r['processes']} | {r['batch']} | {r['customers']} | {r['runs']} | {r['seconds']} | "
                      f"{r['per_second']} | {r['batches']} | {r['cpu']} | {r['connections']} |", flush=True)


if __name__ == "__main__":
    main()
