"""The pure core imports none of the edges' heavy dependencies (DESIGN.md "Layers")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("prefect", "sqlmodel", "sqlalchemy", "sendgrid", "httpx")


def test_importing_the_engine_and_timing_pulls_in_no_io_libraries():
    code = (
        "import sys, postsale.engine, postsale.engine.advance, postsale.timing\n"
        f"print(','.join(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
