"""`postsale preview JOURNEY STEP`, run in process on the shipped journeys."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from postsale.commands.preview import preview

from .conftest import SHIPPED_JOURNEYS, SHIPPED_TEMPLATES

# Only this command, as a group (so `preview` is a subcommand, as in the real CLI).
APP = typer.Typer()
APP.command()(preview)
APP.callback()(lambda: None)
DIRS = ["--journeys", str(SHIPPED_JOURNEYS), "--templates", str(SHIPPED_TEMPLATES)]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POSTSALE_OUTBOX", str(tmp_path / "outbox"))
    monkeypatch.setenv("COLUMNS", "200")


def invoke(*args: str):
    return CliRunner().invoke(APP, ["preview", *args, *DIRS])


def test_preview_prints_subject_text_and_html_path(tmp_path):
    result = invoke("post-purchase", "thank_you")
    assert result.exit_code == 0, result.output
    assert "Subject: Thanks for your order, Ada" in result.output
    assert "Preheader: Order 1001 is confirmed" in result.output
    assert "Steel kettle" in result.output
    html = tmp_path / "outbox" / "preview" / "post-purchase-thank_you.html"
    assert str(html) in result.output.replace("\n", "") and "<html" in html.read_text()


def test_preview_json_for_a_survey_step():
    result = invoke("care-check-in", "csat", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["template"] == "survey_csat" and out["category"] == "marketing"
    assert out["warnings"] == [] and "/s/" in out["text"]
    assert out["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_preview_with_an_event_file_and_locale(tmp_path):
    event = {"id": "e-9", "type": "order.placed", "occurred_at": "2026-11-20T10:15:00+01:00",
             "customer": {"id": "c-7", "email": "bea@example.com", "name": "Bea", "locale": "it"},
             "data": {"order_id": "2002", "total": 10, "items": [{"name": "Tazza", "category": "kitchen"}]}}
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    result = invoke("post-purchase", "thank_you", "--event", str(path), "--json")
    out = json.loads(result.output)
    assert out["subject"] == "Grazie per il tuo ordine, Bea" and "Tazza" in out["text"]
    english = json.loads(invoke("post-purchase", "thank_you", "--event", str(path), "--locale", "en", "--json").output)
    assert english["subject"] == "Thanks for your order, Bea"


def test_unknown_journey_lists_the_valid_ones():
    result = invoke("nope", "thank_you")
    assert result.exit_code == 1
    assert "no journey 'nope'" in result.output and "post-purchase" in result.output


def test_unknown_or_silent_step_lists_the_sending_steps():
    result = invoke("post-purchase", "nope")
    assert result.exit_code == 1 and "kitchen-tips" in result.output
    result = invoke("post-purchase", "wait-1")
    assert result.exit_code == 1 and "wait step" in result.output


def test_bad_event_file_says_which_field(tmp_path):
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"id": "e-1", "type": "order.placed", "occurred_at": "yesterday"}))
    result = invoke("post-purchase", "thank_you", "--event", str(path))
    assert result.exit_code == 1 and "occurred_at" in result.output
    path.write_text("{not json")
    assert invoke("post-purchase", "thank_you", "--event", str(path)).exit_code == 1


def test_event_missing_what_the_template_needs(tmp_path):
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"id": "e-1", "type": "order.placed", "occurred_at": "2026-11-20T10:15:00Z",
                                "customer": {"id": "c-1", "email": "a@example.com"}, "data": {"total": 5}}))
    result = invoke("post-purchase", "thank_you", "--event", str(path))
    assert result.exit_code == 1 and "thank_you.html.j2" in result.output and "order_id" in result.output


def test_preview_of_a_broadcast_event_without_customer(tmp_path):
    event = {"id": "inc-1", "type": "incident.declared", "occurred_at": "2026-11-20T10:15:00Z",
             "data": {"skus": ["KETTLE-1"], "title": "the lid seal can loosen",
                      "description": "Steam can escape at the side."}}
    path = tmp_path / "incident.json"
    path.write_text(json.dumps(event))
    out = json.loads(invoke("incident-notice", "incident_notice", "--event", str(path), "--json").output)
    assert out["subject"] == "About your order: the lid seal can loosen"
    assert "Steam can escape" in out["text"] and out["warnings"] == []
