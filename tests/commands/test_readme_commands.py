"""Every `postsale ...` command shown in the README runs as written (STYLE.md §12).

They run in a scratch folder holding copies of the shipped journeys, templates and examples,
with a throwaway SQLite database and outbox. `serve` blocks: tests/api starts it as a process.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postsale.cli import app

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("postsale ") and not line.startswith("postsale serve"):
                commands.append(line)
    return commands


# a small demo keeps the suite quick; the flags are the README's command plus sizes
SIZES = {"postsale demo": ["--customers", "4", "--days", "10"]}


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    for folder in ("journeys", "templates", "examples"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POSTSALE_DATABASE_URL", f"sqlite:///{tmp_path}/readme.db")
    monkeypatch.setenv("POSTSALE_OUTBOX", str(tmp_path / "outbox"))
    for name in [k for k in os.environ if k.startswith("POSTSALE_") and k not in
                 ("POSTSALE_DATABASE_URL", "POSTSALE_OUTBOX", "POSTSALE_TEST_PG_URL")]:
        monkeypatch.delenv(name)
    return tmp_path


def test_the_readme_shows_the_main_commands():
    shown = {c.split()[1] for c in readme_commands()}
    assert {"validate", "preview", "simulate", "report"} <= shown


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(scratch, command):
    args = shlex.split(command)[1:]
    args += SIZES.get(" ".join(command.split()[:2]), [])
    runner = CliRunner()
    if args[0] in ("report", "dispatch"):  # they read what ingest left: give them something
        assert runner.invoke(app, ["ingest", "examples/events.ndjson"]).exit_code == 0
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"{command}\n{result.output}\n{result.stderr}"
