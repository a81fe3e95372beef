"""Signed links: tampering, one-click unsubscribe (RFC 8058) and the preferences page."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from models import Event as EventRow
from models import Suppression
from postsale.links import Links
from postsale.store.sql import email_hash
from tests.api.conftest import Live, event, order, survey_path, unsubscribe_path

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def suppression(live: Live, email: str) -> Suppression | None:
    with Session(live.ctx.engine) as session:
        return session.exec(select(Suppression).where(Suppression.email_hash == email_hash(email))).first()


def thank_you(live: Live, cid: str):
    live.post_events(order(f"{cid}-order", cid))
    live.settle()
    [mail] = live.mail_to(f"{cid}@example.com")
    return mail


# ---------------------------------------------------------------- tokens

def test_tampered_and_foreign_tokens_get_404_and_change_nothing(live: Live):
    mail = thank_you(live, "c-tamper")
    path = unsubscribe_path(mail)
    token = path.removeprefix("/u/")
    claims = live.ctx.links.read(token, "unsubscribe")
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    other_secret = Links("another-shops-secret-0123456789", "https://mail.acme.example").token(
        "unsubscribe", claims.customer_id, claims.message_id)
    as_survey = live.ctx.links.token("survey", claims.customer_id, claims.message_id, "csat")
    someone_elses = live.ctx.links.token("unsubscribe", "c-someone-else", claims.message_id)

    for bad in (tampered, other_secret, as_survey, someone_elses, "not-a-token"):
        for method, url in (("GET", f"/u/{bad}"), ("POST", f"/u/{bad}"), ("GET", f"/u/{bad}/preferences"),
                            ("POST", f"/u/{bad}/preferences")):
            response = live.client.request(method, url, data={**ONE_CLICK, "marketing": "no"})
            assert response.status_code == 404, (method, url)
            assert "This link is not valid" in response.text
    for bad in (tampered, token):   # an unsubscribe token is no survey token either
        assert live.client.get(f"/s/{bad}?a=1").status_code == 404

    assert suppression(live, "c-tamper@example.com") is None


# ---------------------------------------------------------------- unsubscribe

def test_get_only_asks_and_changes_nothing(live: Live):
    mail = thank_you(live, "c-ask")

    page = live.client.get(unsubscribe_path(mail))

    assert page.status_code == 200
    assert "Unsubscribe c•••@example.com?" in page.text
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert "<script" not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert suppression(live, "c-ask@example.com") is None


def test_one_click_unsubscribe_is_honoured_on_the_next_dispatch(live: Live):
    mail = thank_you(live, "c-oneclick")
    assert mail.subject == "Thanks for your order, C-ONECLICK"

    # What Gmail or Yahoo send: a POST with the RFC 8058 body, no cookies, no page.
    response = live.client.post(unsubscribe_path(mail), content=b"List-Unsubscribe=One-Click",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    row = suppression(live, "c-oneclick@example.com")
    assert row.reason == "unsubscribed" and row.scope == "marketing"
    with Session(live.ctx.engine) as session:
        recorded = session.get(EventRow, f"unsubscribe-{mail.message_id}")
    assert recorded.type == "email.unsubscribed" and recorded.data["method"] == "one-click"

    live.clock.advance(days=2, minutes=1)
    live.tick()

    assert live.subjects("c-oneclick@example.com") == ["Thanks for your order, C-ONECLICK"]
    [decision] = [t for t in live.timeline("c-oneclick") if t.step_id == "tips"]
    assert decision.action == "suppressed" and decision.reason == "unsubscribed"


def test_one_click_in_a_multipart_body_works_and_repeating_it_is_harmless(live: Live):
    mail = thank_you(live, "c-multipart")
    path = unsubscribe_path(mail)

    first = live.client.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    again = live.client.post(path, files={"List-Unsubscribe": (None, "One-Click")})

    assert first.status_code == again.status_code == 200
    assert suppression(live, "c-multipart@example.com").reason == "unsubscribed"


def test_a_post_without_the_one_click_body_changes_nothing(live: Live):
    mail = thank_you(live, "c-nobody")

    response = live.client.post(unsubscribe_path(mail), data={"List-Unsubscribe": "Yes-Please"})

    assert response.status_code == 400
    assert suppression(live, "c-nobody@example.com") is None


# ---------------------------------------------------------------- preferences

def test_preferences_leave_marketing_but_keep_order_mail(live: Live):
    mail = thank_you(live, "c-prefs")
    prefs_url = [u for u in mail.html.split('"') if "prefs=1" in u][0]
    prefs_path = prefs_url.removeprefix("https://mail.acme.example").replace("&amp;", "&")

    page = live.client.get(prefs_path)
    assert page.status_code == 200
    assert "Order, delivery and support emails" in page.text and "always come" in page.text
    assert 'value="yes" checked' in page.text

    token = prefs_path.split("/u/")[1].split("?")[0]
    saved = live.client.post(f"/u/{token}/preferences", data={"marketing": "no"})
    assert saved.status_code == 200 and "Saved." in saved.text and 'value="no" checked' in saved.text
    assert suppression(live, "c-prefs@example.com").scope == "marketing"

    # order mail still goes; marketing does not
    live.post_events(event("c-prefs-ship", "order.shipped", "c-prefs", order_id="c-prefs-order"))
    live.settle()
    live.clock.advance(days=2, minutes=1)
    live.tick()
    assert live.subjects("c-prefs@example.com") == ["Thanks for your order, C-PREFS",
                                                     "Order c-prefs-order is on its way"]

    back = live.client.post(f"/u/{token}/preferences", data={"marketing": "yes"})
    assert back.status_code == 200 and 'value="yes" checked' in back.text
    assert suppression(live, "c-prefs@example.com") is None


def test_preferences_never_undo_a_bounce(live: Live):
    mail = thank_you(live, "c-bounced")
    live.post_events(event("c-bounced-bounce", "email.bounced", "c-bounced", reason="550 no such user"))
    live.settle()
    token = unsubscribe_path(mail).removeprefix("/u/")

    page = live.client.get(f"/u/{token}?prefs=1")
    response = live.client.post(f"/u/{token}/preferences", data={"marketing": "yes"})

    assert "mail to this address bounced" in page.text and "<form" not in page.text
    assert response.status_code == 200
    assert suppression(live, "c-bounced@example.com").reason == "bounced"


@pytest.mark.parametrize("choice", ["", "maybe"])
def test_preferences_need_a_yes_or_no(live: Live, choice: str):
    mail = thank_you(live, f"c-choice{len(choice)}")
    token = unsubscribe_path(mail).removeprefix("/u/")

    response = live.client.post(f"/u/{token}/preferences", data={"marketing": choice})

    assert response.status_code == 400 and "Choose yes or no" in response.text


def test_survey_links_in_a_marketing_email_are_not_unsubscribe_links(live: Live):
    live.post_events(event("c-links-delivered", "order.delivered", "c-links", order_id="L1"))
    live.settle()
    [survey] = live.mail_to("c-links@example.com")
    token = survey_path(survey, 3).split("/s/")[1].split("?")[0]

    assert live.client.get(f"/u/{token}").status_code == 404
    assert live.client.post(f"/u/{token}", data=ONE_CLICK).status_code == 404
