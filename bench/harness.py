"""The parent side: run scenarios, show progress, print the table, write the results.

A scenario module has ``NAME``, ``TITLE`` and ``run(runner) -> None``; it asks the runner for
databases (``runner.backends``), runs measured work in child processes (``runner.child``)
and records figures (``runner.figure``). The runner owns the Rich progress display, the log
file children write their stderr to, and the JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench.backends import Backend

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


class ChildFailed(RuntimeError):
    pass


@dataclass
class Figure:
    scenario: str
    case: str
    backend: str
    metric: str
    value: float | None
    unit: str = ""
    target: str | None = None            # "≥ 5000", "≤ 1.0": shown, and checked when ok is None
    ok: bool | None = None
    samples: list[float] = field(default_factory=list)
    note: str = ""


@dataclass
class Options:
    quick: bool = False
    only: list[str] = field(default_factory=list)
    repeats: int | None = None            # default: 3, or 1 with --quick
    pg_url: str | None = None
    update_readme: bool = False
    profile: bool = False
    results: Path = RESULTS


def check(value: float | None, target: str | None) -> bool | None:
    if value is None or not target:
        return None
    op, _, number = target.partition(" ")
    limit = float(number.replace(",", "").rstrip("×%s"))
    return value >= limit if op == "≥" else value <= limit if op == "≤" else None


class Runner:
    def __init__(self, options: Options, backends: list[Backend], console: Console, log_path: Path) -> None:
        self.options = options
        self.backends = backends
        self.console = console
        self.log_path = log_path
        self.figures: list[Figure] = []
        self.notes: dict[str, list[str]] = {}
        self.raw: dict[str, list[dict[str, Any]]] = {}
        self.scenario = ""
        self._progress: Progress | None = None

    @property
    def quick(self) -> bool:
        return self.options.quick

    @property
    def repeats(self) -> int:
        if self.options.repeats:
            return self.options.repeats
        return 1 if self.options.quick else 3

    # ------------------------------------------------------------ recording

    def figure(self, case: str, backend: str, metric: str, value: float | None, unit: str = "", *,
               target: str | None = None, samples: list[float] | None = None, note: str = "") -> Figure:
        fig = Figure(self.scenario, case, backend, metric,
                     None if value is None else round(float(value), 4), unit, target, check(value, target),
                     [round(float(s), 4) for s in samples or [] if s is not None], note)
        self.figures.append(fig)
        return fig

    def note(self, text: str) -> None:
        self.notes.setdefault(self.scenario, []).append(text)
        self.console.print(f"  [dim]{self.scenario}: {text}[/dim]")

    # ------------------------------------------------------------ children

    def child(self, label: str, target: str, params: dict[str, Any], *, timeout: float | None = None,
              env: dict[str, str] | None = None) -> dict[str, Any] | None:
        """Run ``target`` in a fresh process; its result, or None when it skipped (noted)."""
        assert self._progress is not None
        task = self._progress.add_task(label, total=None)
        command = [sys.executable, "-m", "bench.child", target, json.dumps(params)]
        result: dict[str, Any] | None = None
        skipped: str | None = None
        started = time.monotonic()
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"\n=== {label}: {' '.join(command[:4])} {command[4][:300]}\n")
            log.flush()
            proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
                                    env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"})
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("@@progress "):
                    info = json.loads(line[11:])
                    self._progress.update(task, completed=info["done"], total=info.get("total"),
                                          description=f"{label} · {info['phase']}" if info.get("phase") else label)
                elif line.startswith("@@result "):
                    result = json.loads(line[9:])
                elif line.startswith("@@skip "):
                    skipped = line[7:].strip()
                else:
                    log.write(line)
                if timeout and time.monotonic() - started > timeout:
                    proc.kill()
                    break
            code = proc.wait()
        self._progress.remove_task(task)
        if skipped is not None:
            self.note(f"{label}: skipped — {skipped}")
            return None
        if code != 0 or result is None:
            raise ChildFailed(f"{label} failed (exit {code}); see {self.log_path}")
        result["_label"] = label
        self.raw.setdefault(self.scenario, []).append(result)
        return result

    def run_scenario(self, module: Any) -> float:
        self.scenario = module.NAME
        started = time.monotonic()
        columns = (TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as progress:
            self._progress = progress
            try:
                module.run(self)
            except Exception as exc:   # one broken scenario must not cost the others their figures
                self.note(f"FAILED: {type(exc).__name__}: {exc}")
                self.figure("-", "-", "error", None, note=f"{type(exc).__name__}: {exc}")
            finally:
                self._progress = None
        return time.monotonic() - started


# ---------------------------------------------------------------- output

def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("×", "ratio") or abs(value) < 10:
        text = f"{value:,.2f}"
    else:
        text = f"{value:,.0f}"
    return f"{text} {unit}".strip() if unit not in ("×",) else f"{text}×"


def table(figures: list[Figure], title: str) -> Table:
    out = Table(title=title, title_justify="left", show_lines=False)
    for name, justify in (("scenario", "left"), ("case", "left"), ("db", "left"), ("metric", "left"),
                          ("value", "right"), ("target", "right"), ("", "center")):
        out.add_column(name, justify=justify)  # type: ignore[arg-type]
    last = None
    for f in figures:
        mark = {True: "[green]✓[/green]", False: "[red]✗[/red]", None: ""}[f.ok]
        out.add_row(f.scenario if f.scenario != last else "", f.case, f.backend, f.metric,
                    _fmt(f.value, f.unit), f.target or "", mark)
        last = f.scenario
    return out


def markdown(figures: list[Figure], header: str) -> str:
    lines = [header, "", "| scenario | case | db | metric | value | target | |", "|---|---|---|---|---:|---:|:-:|"]
    for f in figures:
        mark = {True: "✓", False: "✗", None: ""}[f.ok]
        lines.append(f"| {f.scenario} | {f.case} | {f.backend} | {f.metric} | {_fmt(f.value, f.unit)} | "
                     f"{f.target or ''} | {mark} |")
    return "\n".join(lines) + "\n"


def write_results(runner: Runner, info: dict[str, Any], durations: dict[str, float], modules: list[Any],
                  path: Path = RESULTS / "latest.json") -> dict[str, Any]:
    """Merge this run's scenarios into ``latest.json`` (a scenario not run keeps its last figures)."""
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    scenarios = previous.get("scenarios", {}) if isinstance(previous.get("scenarios"), dict) else {}
    for module in modules:
        name = module.NAME
        scenarios[name] = {
            "title": module.TITLE, "date": info["date"], "quick": runner.quick, "repeats": runner.repeats,
            "duration_s": round(durations.get(name, 0.0), 1),
            "figures": [asdict(f) for f in runner.figures if f.scenario == name],
            "notes": runner.notes.get(name, []),
            "raw": runner.raw.get(name, []),
        }
    from bench import SCENARIOS
    order = list(SCENARIOS)
    data = {"machine": info, "scenarios": {k: scenarios[k] for k in sorted(scenarios, key=lambda n: (
        order.index(n) if n in order else 99, n))}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return data


def figures_of(data: dict[str, Any]) -> list[Figure]:
    out = []
    for scenario in data["scenarios"].values():
        out += [Figure(**f) for f in scenario["figures"]]
    return out


def update_readme(readme: Path, text: str) -> bool:
    start, end = "<!-- bench:latest -->", "<!-- /bench:latest -->"
    try:
        content = readme.read_text(encoding="utf-8")
    except OSError:
        return False
    if start not in content or end not in content:
        return False
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{text}{end}{tail}", encoding="utf-8")
    return True


def load_modules(names: list[str]) -> list[Any]:
    """The scenario modules, in run order (only ``names`` when given)."""
    import importlib

    from bench import SCENARIOS
    return [importlib.import_module(f"bench.{name}") for name in SCENARIOS if not names or name in names]


Callback = Callable[[int, int | None, str], None]
