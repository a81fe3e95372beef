"""One worker process for the concurrency tests and measurements.

    python -m tests.pg.worker dispatch --url URL [--now 2026-11-23T14:00:00Z] [--batch-size 100]
    python -m tests.pg.worker ingest --url URL --events FILE.ndjson [--now ...] [--chunk 50]

``dispatch`` builds a Context on the scenario's journeys with a clock stopped at ``--now``
(every process shares it), dispatches until nothing it can claim is due, and prints one JSON
line per committed batch (``{"batch": 3, ...}``) and a last one (``{"done": true, ...}``).
``ingest`` ingests the file's events in chunks, one transaction each, and prints the result.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from postsale.events import parse_event, parse_timestamp
from postsale.store.dispatch import DispatchReport, dispatch
from postsale.store.ingest import IngestResult, ingest_events
from tests.pg.scenario import NOW, chunks, context


def _print(**fields) -> None:
    print(json.dumps(fields), flush=True)


def run_dispatch(args: argparse.Namespace) -> None:
    ctx = context(args.url, parse_timestamp(args.now), batch_size=args.batch_size)
    if args.start_at:   # measurements: start together, after every process has loaded
        time.sleep(max(0.0, args.start_at - time.time()))
    started, cpu = time.time(), time.process_time()

    def committed(report: DispatchReport) -> None:
        _print(batch=report.batches, customers=report.customers, runs=report.runs)

    report = dispatch(ctx, on_batch=committed)
    ended = time.time()
    _print(done=True, started=started, ended=ended, seconds=round(ended - started, 3),
           cpu=round(time.process_time() - cpu, 3), **report.to_json())


def run_ingest(args: argparse.Namespace) -> None:
    ctx = context(args.url, parse_timestamp(args.now))
    lines = Path(args.events).read_text(encoding="utf-8").splitlines()
    events = [parse_event(json.loads(line)) for line in lines if line.strip()]
    total = IngestResult()
    started = time.perf_counter()
    for part in chunks(events, args.chunk):
        total.merge(ingest_events(ctx, part))
    _print(done=True, seconds=round(time.perf_counter() - started, 3), accepted=len(total.accepted),
           duplicates=len(total.duplicates), entered=len(total.entered))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.pg.worker")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dispatch")
    d.add_argument("--batch-size", type=int, default=100)
    d.add_argument("--start-at", type=float, default=None, help="epoch seconds to begin dispatching at")
    i = sub.add_parser("ingest")
    i.add_argument("--events", required=True)
    i.add_argument("--chunk", type=int, default=50)
    for p in (d, i):
        p.add_argument("--url", required=True)
        p.add_argument("--now", default=NOW.isoformat())
    args = parser.parse_args(argv)
    {"dispatch": run_dispatch, "ingest": run_ingest}[args.command](args)


if __name__ == "__main__":
    main()
