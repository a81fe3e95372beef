"""Where and on what the figures were taken: machine, load, versions, commit, date."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("postsale", "sqlalchemy", "sqlmodel", "jinja2", "css-inline", "itsdangerous", "fastapi",
            "uvicorn", "httpx", "prefect", "sendgrid", "psycopg", "apscheduler", "rich")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def describe() -> dict[str, Any]:
    """Everything a reader needs to compare two runs (or to distrust one)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "machine": {"cores": os.cpu_count(), "ram_gb": _ram_gb(), "cpu": _cpu_model(),
                    "platform": platform.platform(),
                    "load_avg_at_start": [round(x, 2) for x in load] if load else None},
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in PACKAGES},
        "git": {"commit": _git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None},
    }


def one_line(info: dict[str, Any]) -> str:
    m = info["machine"]
    commit = (info["git"]["commit"] or "?")[:10] + ("+dirty" if info["git"]["dirty"] else "")
    return (f"{info['date']} · {m['cores']} cores · {m['ram_gb']} GB · {m['cpu']} · Python {info['python']} · "
            f"commit {commit}")
