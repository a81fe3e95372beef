"""`simulate`: whole journeys on a virtual clock, through the same path as production."""

from __future__ import annotations

import json
from datetime import timedelta

from typer.testing import CliRunner

from postsale.cli import app
from postsale.store.simulate import simulate
from tests.store.conftest import FIXTURE, T0
from tests.store.events import customer, event, order, raw

DIRS = dict(journeys=FIXTURE / "journeys", templates=FIXTURE / "templates")


def rows(timeline, **match):
    return [e for e in timeline if all(e.get(k) == v for k, v in match.items())]


def test_post_purchase_unhappy_path_branches_alerts_and_starts_issue_resolution():
    c = customer()
    events = [order("o-1", T0, c)]
    first = simulate(events, **DIRS, until=T0 + timedelta(days=13)).timeline
    (survey,) = rows(first, action="sent", step="csat")
    answered_at = T0 + timedelta(days=13)
    events.append(event("ans", "survey.answered", answered_at, c, survey="csat", journey="post-purchase",
                        answers={"score": 1}))
    timeline = simulate(events, **DIRS).timeline
    sent = [(e["journey"], e["step"]) for e in rows(timeline, action="sent")]
    assert sent == [("post-purchase", "thank_you"), ("post-purchase", "tips"), ("post-purchase", "csat"),
                    ("post-purchase", "sorry"), ("issue-resolution", "on_it")]
    (alert,) = rows(timeline, action="alert", journey="post-purchase")
    assert alert["reason"] == "Unhappy customer c-42@example.com after order o-1"
    assert rows(timeline, action="entered", journey="issue-resolution")
    # the tips wait 2 days and then go at the next 10:00 on the customer's wall clock (Rome, UTC+1)
    (tips,) = rows(timeline, action="sent", step="tips")
    assert tips["at"] == "2026-11-04T09:00:00Z"
    assert survey["at"] == "2026-11-14T09:00:00Z"


def test_happy_answer_leads_to_the_review_invitation():
    c = customer()
    events = [order("o-1", T0, c),
              event("ans", "survey.answered", T0 + timedelta(days=14), c, survey="csat",
                    journey="post-purchase", answers={"score": 5})]
    timeline = simulate(events, **DIRS).timeline
    assert [e["step"] for e in rows(timeline, action="sent")][-1] == "review"
    assert rows(timeline, action="exited", journey="post-purchase")[-1]["reason"] == "completed"


def test_no_answer_times_out_and_the_journey_completes_without_branch_mail():
    timeline = simulate([order("o-1", T0, customer())], **DIRS).timeline
    steps = [e["step"] for e in rows(timeline, action="sent")]
    assert steps == ["thank_you", "tips", "csat"]
    (done,) = rows(timeline, action="exited")
    assert done["reason"] == "completed" and done["at"] == "2026-11-19T09:00:00Z"  # csat + 5d timeout


def test_timeline_entries_have_the_spec_shape_and_time_order():
    timeline = simulate([order("o-1", T0, customer())], **DIRS).timeline
    assert timeline == sorted(timeline, key=lambda e: e["at"])
    for e in timeline:
        assert {"at", "customer", "journey", "step", "action"} <= set(e)
        assert e["at"].endswith("Z")
        if e["action"] == "sent":
            assert e["template"] and e["subject"] and "reason" not in e
        elif e["action"] != "entered":
            assert "reason" in e


def test_until_stops_the_clock():
    timeline = simulate([order("o-1", T0, customer())], **DIRS, until=T0 + timedelta(days=1)).timeline
    assert [e["action"] for e in timeline] == ["entered", "sent"]


def test_caps_are_never_exceeded_over_a_month_of_events():
    c = customer(tz="America/New_York")
    events = []
    for day in range(0, 30, 2):
        at = T0 + timedelta(days=day, hours=day % 5)
        events.append(event(f"cart-{day}", "cart.abandoned", at, customer(f"p-{day}", tz="Asia/Tokyo"), items=[]))
        events.append(event(f"ship-{day}", "order.shipped", at, c))
    events.append(order("o-1", T0, c))
    timeline = simulate(events, **DIRS).timeline
    sent = [e for e in timeline if e["action"] == "sent" and e["customer"] == "c-42"]
    times = sorted(e["at"] for e in sent)
    assert len([e for e in sent if e["step"] == "shipped"]) == 15   # transactional: never capped
    marketing = sorted(e["at"] for e in sent if e["step"] != "shipped")
    from datetime import datetime
    parsed = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times]
    for m in marketing:
        at = datetime.fromisoformat(m.replace("Z", "+00:00"))
        window = [t for t in parsed if at - timedelta(days=7) < t < at]
        assert len(window) < 3, "marketing cap 3 per 7d counts every email"
        earlier = [t for t in parsed if t < at]
        assert not earlier or at - max(earlier) >= timedelta(hours=20), "min_gap 20h"


def test_cli_simulate_json_prints_one_object_a_line(tmp_path):
    events = tmp_path / "events.ndjson"
    good = raw("o-1", "order.placed", T0, customer(), total=5, order_id="1", items=[])
    bad = raw("bad", "order.placed", T0, customer(email="nope"))
    events.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    result = CliRunner().invoke(app, ["simulate", "--events", str(events), "--json",
                                      "--journeys", str(FIXTURE / "journeys"),
                                      "--templates", str(FIXTURE / "templates")])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip().startswith("{")]
    assert lines[0]["action"] == "entered" and lines[1]["action"] == "sent"
    assert lines[1]["template"] == "thank_you"
    assert "customer.email" in result.stderr


def test_incident_resolution_reaches_every_affected_customer_waiting_for_it(tmp_path):
    root = FIXTURE.parents[2]
    buyers = [order(f"o-{i}", T0 - timedelta(days=3), customer(f"b-{i}"), skus=[("KETTLE-1", "kitchen")])
              for i in range(3)]
    other = order("o-x", T0 - timedelta(days=3), customer("x-1"), skus=[("LAMP-3", "home")])
    declared = event("inc", "incident.declared", T0, None, skus=["KETTLE-1"], incident_id="inc-7",
                     product="Steel kettle", title="the lid seal can loosen", description="Seals can loosen.",
                     action="We post new seals.", advice="Fill to MAX.")
    resolved = event("inc-ok", "incident.resolved", T0 + timedelta(days=2), None, skus=["KETTLE-1"],
                     incident_id="inc-7", product="Steel kettle", title="the lid seal can loosen",
                     resolution="New seals are on their way.")
    timeline = simulate(buyers + [other, declared, resolved], journeys=root / "journeys",
                        templates=root / "templates").timeline
    notices = rows(timeline, journey="incident-notice", action="sent")
    assert sorted(e["customer"] for e in notices if e["step"] == "incident_notice") == ["b-0", "b-1", "b-2"]
    assert sorted(e["customer"] for e in notices if e["step"] == "incident_resolved") == ["b-0", "b-1", "b-2"]
