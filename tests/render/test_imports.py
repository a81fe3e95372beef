"""Rendering stays light: no Prefect, database, SendGrid or HTTP client on import."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("prefect", "sqlmodel", "sqlalchemy", "sendgrid", "httpx")


def test_render_modules_import_nothing_heavy():
    code = ("import sys\n"
            "import postsale.render.templates, postsale.render.mime, postsale.render.lint\n"
            "import postsale.render.checks, postsale.render.text, postsale.samples\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
