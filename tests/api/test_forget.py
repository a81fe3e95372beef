"""DELETE /customers?email= and `postsale forget EMAIL`: erase, keep a hashed suppression, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session, select

from models import Customer, Message, Purchase, Run, Suppression, SurveyResponse, Timeline
from models import Event as EventRow
from postsale.store.sql import email_hash
from tests.api.conftest import FIXTURE, TOKEN, Live, event, order, survey_path


def test_forgetting_needs_the_token(live: Live):
    assert live.client.delete("/customers", params={"email": "x@example.com"}).status_code == 401
    assert live.client.delete("/customers", params={"email": "x@example.com"},
                              headers={"Authorization": "Bearer nope"}).status_code == 401


def test_forget_needs_an_address(live: Live):
    response = live.client.delete("/customers", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400 and "email" in response.json()["detail"]


def test_forget_erases_personal_data_ends_runs_and_keeps_a_hashed_suppression(live: Live):
    email = "Grace.Hopper@Example.com"
    live.post_events([order("gh-order", "c-grace", email=email),
                      event("gh-delivered", "order.delivered", "c-grace", email=email, order_id="gh-order")])
    live.settle()
    survey = [m for m in live.mail_to(email) if m.subject == "How did we do?"][0]
    live.client.post(survey_path(survey, 2).split("?")[0], data={"q-score": "2", "q-comment": "Grace says: too slow"})
    live.settle()
    before = len(live.transport.sent)

    response = live.client.delete("/customers", params={"email": "grace.hopper@example.com"},
                                  headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    report = response.json()
    assert report["customers"] == 1 and report["events"] == 3 and report["messages"] >= 3
    assert report["runs"] == 2 and report["runs_ended"] == 1          # post-purchase was still waiting
    assert report["survey_responses"] == 1 and report["purchases"] == 1
    assert report["suppression"] == "added" and report["email_hash"] == email_hash(email)
    with Session(live.ctx.engine) as session:
        customer = session.get(Customer, "c-grace")
        assert (customer.email, customer.name, customer.attributes) == (None, None, {})
        for row in session.exec(select(EventRow).where(EventRow.customer_id == "c-grace")):
            assert row.customer_snapshot is None and row.data == {}
        for row in session.exec(select(Message).where(Message.customer_id == "c-grace")):
            assert (row.to_email, row.to_name, row.html, row.text_body, row.headers) == (None, None, None, None, {})
        assert all(r.status not in ("active", "waiting", "held")
                   for r in session.exec(select(Run).where(Run.customer_id == "c-grace")))
        [answer] = session.exec(select(SurveyResponse).where(SurveyResponse.customer_id == "c-grace"))
        assert answer.answers == {"score": 2}                            # the score counts, the words go
        assert session.exec(select(Purchase).where(Purchase.customer_id == "c-grace")).first() is None
        assert not [t for t in session.exec(select(Timeline).where(Timeline.customer_id == "c-grace"))
                    if "grace" in f"{t.subject} {t.reason}".lower()]
        kept = session.exec(select(Suppression).where(Suppression.email_hash == email_hash(email))).one()
        assert (kept.reason, kept.scope) == ("forgotten", "all")

    live.clock.advance(days=3)
    live.tick()
    assert len(live.transport.sent) == before                           # nothing more to this person


def test_forgetting_an_unknown_address_still_suppresses_it(live: Live):
    response = live.client.delete("/customers", params={"email": "nobody@example.com"},
                                  headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200 and response.json()["customers"] == 0
    assert response.json()["suppression"] == "added"


def test_a_forgotten_address_is_never_mailed_again_even_when_the_shop_sends_it_again(live: Live):
    live.post_events(order("back-1", "c-back"))
    live.settle()
    live.client.delete("/customers", params={"email": "c-back@example.com"},
                       headers={"Authorization": f"Bearer {TOKEN}"})
    sent = len(live.mail_to("c-back@example.com"))

    live.post_events(event("back-ship", "order.shipped", "c-back", order_id="back-1"))   # transactional
    live.settle()

    assert len(live.mail_to("c-back@example.com")) == sent


def test_the_forget_command_erases_and_reports(tmp_path: Path):
    from typer.testing import CliRunner

    from postsale.cli import app
    from postsale.settings import DEV_SECRET
    from postsale.store.context import Context
    from postsale.store.dispatch import dispatch
    from postsale.store.ingest import ingest_items

    url = f"sqlite:///{tmp_path}/cli.db"
    ctx = Context.build(database_url=url, journeys=FIXTURE / "journeys", templates=FIXTURE / "templates",
                        secret=DEV_SECRET)
    ingest_items(ctx, [order("cli-1", "c-cli", email="ada@example.com")])
    dispatch(ctx)
    ctx.engine.dispose()
    env = {"POSTSALE_DATABASE_URL": url, "POSTSALE_JOURNEYS": str(FIXTURE / "journeys"),
           "POSTSALE_TEMPLATES": str(FIXTURE / "templates")}
    runner = CliRunner()

    dry = runner.invoke(app, ["forget", "ADA@example.com", "--dry-run", "--json"], env=env)
    real = runner.invoke(app, ["forget", "ada@example.com"], env=env)
    again = runner.invoke(app, ["forget", "ada@example.com", "--json"], env=env)
    bad = runner.invoke(app, ["forget", "not-an-address"], env=env)

    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["customers"] == 1 and json.loads(dry.stdout)["dry_run"] is True
    assert real.exit_code == 0 and "erased: ada@example.com" in real.stdout and "suppression added" in real.stdout
    assert json.loads(again.stdout)["customers"] == 0 and json.loads(again.stdout)["suppression"] == "updated"
    assert bad.exit_code == 1 and "not an email address" in bad.output
