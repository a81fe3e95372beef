"""`postsale validate` as a user runs it: every problem as file:line, exit 1 on errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from postsale.cli import app

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str):
    return CliRunner().invoke(app, ["validate", *args])


def test_the_shipped_journeys_validate_cleanly():
    result = run(str(ROOT / "journeys"), "--templates", str(ROOT / "templates"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["problems"] == []
    touchpoints = {"cart-reminder", "post-purchase", "care-check-in", "issue-resolution"}
    assert touchpoints <= set(report["journeys"])


def test_a_broken_folder_reports_each_problem_with_file_and_line(tmp_path):
    journeys, templates = tmp_path / "journeys", tmp_path / "templates"
    shutil.copytree(ROOT / "journeys", journeys)
    shutil.copytree(ROOT / "templates", templates)
    # a broken journey (bad YAML), an unknown template, a 4-question survey, a shouting subject
    (journeys / "broken.yaml").write_text("journey: broken\nname: [unclosed\n")
    (journeys / "unknown-template.yaml").write_text(
        "journey: unknown-template\nname: x\ntouchpoint: ongoing_care\ntrigger: {event: order.delivered}\n"
        "steps:\n  - send: no_such_template\n")
    (journeys / "long-survey.yaml").write_text(
        "journey: long-survey\nname: x\ntouchpoint: ongoing_care\ntrigger: {event: order.delivered}\n"
        "steps:\n  - survey: big\nsurveys:\n  big:\n    template: survey_csat\n    questions:\n"
        + "".join(f"      - {{id: q{i}, text: \"Question {i}?\", type: scale}}\n" for i in range(4)))
    thank_you = templates / "thank_you.html.j2"
    thank_you.write_text(thank_you.read_text().replace("{% block subject %}", "{% block subject %}BUY NOW!!! ", 1))
    result = run(str(journeys), "--templates", str(templates))
    assert result.exit_code == 1
    out = result.stderr
    assert f"{journeys / 'broken.yaml'}:3: YAML syntax error" in out
    assert f"{journeys / 'unknown-template.yaml'}:6: unknown template 'no_such_template'" in out
    assert f"{journeys / 'long-survey.yaml'}:" in out and "question" in out
    assert f"{thank_you}:" in out and "warning" in out
    assert "errors" in out and "fix the lines above" in out
    # the good journeys are still checked: a broken file hides nothing else
    report = json.loads(run(str(journeys), "--templates", str(templates), "--json").stdout)
    assert "post-purchase" in report["journeys"]
    files = {Path(p["file"]).name for p in report["problems"]}
    assert {"broken.yaml", "unknown-template.yaml", "long-survey.yaml", "thank_you.html.j2"} <= files


def test_strict_turns_warnings_into_failure(tmp_path):
    journeys, templates = tmp_path / "journeys", tmp_path / "templates"
    shutil.copytree(ROOT / "journeys", journeys)
    shutil.copytree(ROOT / "templates", templates)
    thank_you = templates / "thank_you.html.j2"
    thank_you.write_text(thank_you.read_text().replace("{% block subject %}", "{% block subject %}ACT NOW ", 1))
    assert run(str(journeys), "--templates", str(templates)).exit_code == 0
    assert run(str(journeys), "--templates", str(templates), "--strict").exit_code == 1
