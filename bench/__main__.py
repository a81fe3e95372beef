"""``python -m bench [--quick] [--only NAME[,NAME]] [--pg URL] [--repeats N] [--results DIR] [--update-readme]``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rich.console import Console

from bench import SCENARIOS
from bench.backends import PG_ENV, POSTGRES, SQLITE, Backend, make_workdir, pg_unavailable
from bench.harness import (RESULTS, Options, Runner, figures_of, markdown, table, update_readme,
                           load_modules, write_results)
from bench.machine import describe, one_line


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat: about a minute (CI)")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios: {', '.join(SCENARIOS)}")
    parser.add_argument("--pg", default=None, help=f"PostgreSQL URL (default: ${PG_ENV}); 'none' skips it")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats of each measurement, median reported (default 3; 1 with --quick)")
    parser.add_argument("--profile", action="store_true",
                        help="profile the first dispatch pass (pyinstrument) into bench/results/")
    parser.add_argument("--update-readme", action="store_true",
                        help="write the figures table into bench/README.md")
    parser.add_argument("--results", default=str(RESULTS), metavar="DIR",
                        help="where latest.json, the log and profiles go (default: bench/results)")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in only if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}")
    pg = args.pg if args.pg is not None else os.environ.get(PG_ENV)
    return Options(quick=args.quick, only=only, repeats=max(1, args.repeats) if args.repeats else None,
                   pg_url=None if pg in (None, "", "none") else pg, update_readme=args.update_readme,
                   profile=args.profile, results=Path(args.results))


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    console = Console() if sys.stdout.isatty() else Console(width=150)
    info = describe()
    info["options"] = {"quick": options.quick, "repeats": options.repeats or (1 if options.quick else 3)}
    console.print(f"[bold]postsale benchmarks[/bold]  {one_line(info)}")
    workdir = make_workdir()
    backends = [Backend(SQLITE, workdir)]
    reason = pg_unavailable(options.pg_url)
    if reason is None:
        backends.append(Backend(POSTGRES, workdir, options.pg_url))
        console.print("  databases: SQLite, PostgreSQL (an isolated schema per run)")
    else:
        console.print(f"  databases: SQLite only ({reason})")
    info["databases"] = [b.name for b in backends]
    results = options.results
    results.mkdir(parents=True, exist_ok=True)
    log_path = results / "last-run.log"
    log_path.write_text("", encoding="utf-8")
    runner = Runner(options, backends, console, log_path)
    modules = load_modules(options.only)
    durations: dict[str, float] = {}
    started = time.monotonic()
    try:
        for module in modules:
            console.print(f"[bold]{module.NAME}[/bold] — {module.TITLE}")
            durations[module.NAME] = runner.run_scenario(module)
    except KeyboardInterrupt:
        console.print("[red]interrupted: writing what was measured[/red]")
    finally:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    ran = [m for m in modules if m.NAME in durations]
    data = write_results(runner, info, durations, ran, results / "latest.json")
    header = f"{'Quick run' if options.quick else 'Run'} of {info['date']} — {one_line(info)}"
    console.print(table(runner.figures, f"this run ({time.monotonic() - started:.0f} s)"))
    if options.update_readme:
        everything = markdown(figures_of(data), f"_{header}_")
        done = update_readme(Path(__file__).resolve().parent / "README.md", everything)
        console.print("README updated" if done else "[yellow]README has no bench:latest markers[/yellow]")
    console.print(f"figures: {results / 'latest.json'} (log: {log_path})")
    return 1 if any(f.metric == "error" for f in runner.figures) else 0


if __name__ == "__main__":
    sys.exit(main())
