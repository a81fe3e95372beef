"""POST /events and GET /healthz over a real uvicorn."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine
from sqlmodel import Session, select

from models import Event as EventRow
from tests.api.conftest import MAX_BODY, TOKEN, Live, event, order


# ---------------------------------------------------------------- auth

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"}],
                         ids=["none", "wrong", "no-scheme", "basic", "empty"])
def test_events_without_the_right_token_are_refused_and_nothing_is_stored(live: Live, headers):
    response = live.client.post("/events", json=order("auth-1", "c-auth"), headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "POSTSALE_API_TOKEN" in response.json()["detail"]
    with Session(live.ctx.engine) as session:
        assert session.get(EventRow, "auth-1") is None


def test_a_server_without_a_token_refuses_with_503_and_says_what_to_set(live: Live):
    configured = live.services.settings
    live.services.settings = configured.model_copy(update={"api_token": None})
    try:
        response = live.post_events(order("auth-2", "c-auth"), token="anything")
    finally:
        live.services.settings = configured

    assert response.status_code == 503
    assert "set POSTSALE_API_TOKEN" in response.json()["detail"]


# ---------------------------------------------------------------- bodies

def test_a_body_over_the_limit_is_413_by_its_declared_length(live: Live):
    big = json.dumps([order(f"big-{i}", "c-big") for i in range(400)])
    assert len(big) > MAX_BODY

    response = live.post_events(big)

    assert response.status_code == 413
    assert str(MAX_BODY) in response.json()["detail"]


def test_a_chunked_body_over_the_limit_is_413_without_reading_it_all(live: Live):
    sent = []

    def chunks():
        for i in range(64):   # 64 × 8 KiB = 512 KiB, eight times the limit
            sent.append(i)
            yield b" " * 8192

    response = live.client.post("/events", content=chunks(), headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 413
    with Session(live.ctx.engine) as session:
        assert session.exec(select(EventRow).where(EventRow.id.like("big-%"))).first() is None


@pytest.mark.parametrize("body", ["garbage", "{not json", "\n\n{]\n", "\xff".encode("latin-1")],
                         ids=["word", "broken-object", "broken-lines", "not-utf8"])
def test_a_body_with_no_json_in_it_is_400_with_a_clear_message(live: Live, body):
    response = live.post_events(body)

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "one event object, an array of events, or NDJSON" in detail


def test_an_empty_body_is_400(live: Live):
    response = live.post_events("")
    assert response.status_code == 400
    assert "empty" in response.json()["detail"]


def test_a_mixed_batch_takes_the_good_events_and_names_each_bad_field(live: Live):
    bad_email = event("mix-2", "order.placed", "c-mix2", email="not-an-address", total=1)
    bad_time = {**order("mix-3", "c-mix3"), "occurred_at": "yesterday"}
    bad_zone = order("mix-4", "c-mix4")
    bad_zone["customer"]["timezone"] = "Mars/Olympus"
    no_id = {k: v for k, v in order("x", "c-mix5").items() if k != "id"}
    batch = [order("mix-1", "c-mix1"), bad_email, bad_time, bad_zone, no_id, 42]

    response = live.post_events(batch)

    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1 and body["duplicate"] == 0
    rejected = {r["index"]: r for r in body["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 4, 5]
    assert rejected[1]["id"] == "mix-2" and rejected[1]["field"] == "customer.email"
    assert rejected[2]["field"] == "occurred_at" and "RFC 3339" in rejected[2]["reason"]
    assert rejected[3]["field"] == "customer.timezone" and "Mars/Olympus" in rejected[3]["reason"]
    assert rejected[4]["id"] is None and rejected[4]["field"] == "id"
    assert rejected[5]["field"] == "event"


def test_ndjson_with_a_broken_line_rejects_only_that_line(live: Live):
    lines = [json.dumps(order("nd-1", "c-nd1")), '{"id": "nd-2", "type": ', json.dumps(order("nd-3", "c-nd3"))]

    response = live.post_events("\n".join(lines) + "\n", headers={"Content-Type": "application/x-ndjson"})

    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2
    assert body["rejected"] == [{"index": 1, "id": None, "field": "json", "reason": body["rejected"][0]["reason"]}]
    assert body["rejected"][0]["reason"].startswith("line 2:")


def test_duplicates_are_accepted_reported_and_ignored(live: Live):
    first = live.post_events(order("dup-1", "c-dup"))
    live.settle()
    again = live.post_events([order("dup-1", "c-dup"), order("dup-1", "c-dup")])
    live.settle()

    assert first.json()["accepted"] == 1
    assert again.status_code == 202
    assert again.json()["accepted"] == 0 and again.json()["duplicate"] == 2
    assert again.json()["duplicates"] == ["dup-1", "dup-1"]
    assert live.subjects("c-dup@example.com") == ["Thanks for your order, C-DUP"]


def test_one_object_reaches_its_first_email_without_waiting_for_a_tick(live: Live):
    response = live.post_events(order("now-1", "c-now"))
    live.settle()   # the dispatcher's worker, not a tick

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicate": 0, "rejected": [], "duplicates": [], "entered": 1}
    assert live.dispatcher.ticks == 0
    [mail] = live.mail_to("c-now@example.com")
    assert mail.subject == "Thanks for your order, C-NOW"
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# ---------------------------------------------------------------- health

def test_healthz_checks_the_database(live: Live):
    ok = live.client.get("/healthz")
    assert ok.status_code == 200
    assert ok.json()["status"] == "ok" and ok.json()["database"] == "ok"

    real = live.services.ctx
    live.services.ctx = SimpleNamespace(engine=create_engine("sqlite:////nonexistent/dir/postsale.db"))
    try:
        down = live.client.get("/healthz")
    finally:
        live.services.ctx = real

    assert down.status_code == 503
    assert down.json()["status"] == "unavailable"
    assert down.json()["database"].startswith("unreachable: OperationalError")


def test_an_event_posted_as_a_custom_type_is_stored(live: Live):
    response = live.post_events(event("custom-1", "loyalty.tier_changed", "c-custom", tier="gold"))
    assert response.status_code == 202 and response.json()["accepted"] == 1


# ---------------------------------------------------------------- Prefect

def test_accepted_events_go_to_prefect_after_the_response_and_a_failing_emit_is_only_logged(
        live: Live, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    import sys
    import time
    import types

    emitted: list[dict] = []

    def emit_postsale_event(ev: dict) -> None:
        emitted.append(ev)
        if ev["id"] == "pf-2":
            raise ConnectionError("Prefect API unreachable")

    fake = types.ModuleType("flows.events")
    fake.emit_postsale_event = emit_postsale_event
    monkeypatch.setitem(sys.modules, "flows.events", fake)
    monkeypatch.setattr(live.services, "emit_prefect", True)

    response = live.post_events([order("pf-1", "c-pf"), order("pf-2", "c-pf2"), order("pf-1", "c-pf")])
    deadline = time.monotonic() + 5
    while len(emitted) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)

    assert response.status_code == 202 and response.json()["accepted"] == 2
    assert [e["id"] for e in emitted] == ["pf-1", "pf-2"]            # the duplicate is not re-emitted
    assert emitted[0]["type"] == "order.placed" and emitted[0]["customer"]["id"] == "c-pf"
    deadline = time.monotonic() + 5
    while "could not emit event pf-2" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "could not emit event pf-2 to Prefect" in caplog.text
