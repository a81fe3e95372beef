"""One-click survey answers: provisional → confirmed or final after 10 minutes, bots → void,
and the answer reaching the journey's `wait_for` and `answers.*` branch."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, select

from models import Event as EventRow
from models import Message, Run, SurveyResponse
from tests.api.conftest import Live, event, survey_path


def send_survey(live: Live, cid: str):
    live.post_events(event(f"{cid}-delivered", "order.delivered", cid, at=live.clock.now(), order_id=f"{cid}-1"))
    live.settle()
    [mail] = live.mail_to(f"{cid}@example.com")
    assert mail.subject == "How did we do?"
    return mail


def response_of(live: Live, cid: str) -> SurveyResponse | None:
    with Session(live.ctx.engine) as session:
        return session.exec(select(SurveyResponse).where(SurveyResponse.customer_id == cid)).first()


def run_of(live: Live, cid: str) -> Run:
    with Session(live.ctx.engine) as session:
        return session.exec(select(Run).where(Run.customer_id == cid, Run.journey_id == "care")).one()


def answered_events(live: Live, cid: str) -> list[EventRow]:
    with Session(live.ctx.engine) as session:
        return list(session.exec(select(EventRow).where(EventRow.customer_id == cid,
                                                        EventRow.type == "survey.answered")))


def checked(html: str, name: str) -> list[str]:
    return re.findall(rf'name="{name}" value="([^"]+)" checked', html)


def test_a_click_is_provisional_and_the_page_confirms_it_into_the_journeys_branch(live: Live):
    mail = send_survey(live, "c-happy")
    path = survey_path(mail, 4)

    page = live.client.get(path)

    assert page.status_code == 200
    assert "How happy are you with your order?" in page.text
    assert checked(page.text, "q-score") == ["4"]
    assert "we noted <strong>4</strong>" in page.text
    assert "What mattered most?" in page.text and "Anything we could do better?" in page.text
    assert response_of(live, "c-happy").status == "provisional"
    live.tick()
    assert run_of(live, "c-happy").status == "waiting"            # provisional: the journey still waits

    thanks = live.client.post(path.split("?")[0], data={"q-score": "4", "q-reason": "1", "q-comment": "Lovely mug"})
    live.settle()

    assert thanks.status_code == 200 and "Thank you!" in thanks.text
    row = response_of(live, "c-happy")
    assert row.status == "final" and row.answers == {"score": 4, "reason": "Delivery", "comment": "Lovely mug"}
    [answered] = answered_events(live, "c-happy")
    assert answered.id.startswith(f"survey-{mail.message_id}-")
    assert answered.data["journey"] == "care" and answered.data["answers"]["score"] == 4
    assert live.subjects("c-happy@example.com") == ["How did we do?", "Would you share a review?"]
    assert run_of(live, "c-happy").context["answers"]["csat"]["score"] == 4


def test_answering_twice_updates_and_never_duplicates(live: Live):
    mail = send_survey(live, "c-twice")
    action = survey_path(mail, 2).split("?")[0]

    live.client.post(action, data={"q-score": "2"})
    live.client.post(action, data={"q-score": "2"})              # a double submit
    live.settle()
    live.client.post(action, data={"q-score": "3", "q-comment": "Better after a week"})
    live.settle()

    with Session(live.ctx.engine) as session:
        rows = list(session.exec(select(SurveyResponse).where(SurveyResponse.customer_id == "c-twice")))
    assert len(rows) == 1
    assert rows[0].status == "final" and rows[0].answers == {"score": 3, "comment": "Better after a week"}
    assert len(answered_events(live, "c-twice")) == 2             # the double submit was a duplicate
    assert live.subjects("c-twice@example.com") == ["How did we do?", "We are sorry"]   # the first answer woke it


def test_an_unrivalled_click_becomes_final_after_ten_minutes(live: Live):
    mail = send_survey(live, "c-later")
    live.client.get(survey_path(mail, 1))

    live.clock.advance(minutes=9)
    live.tick()
    assert response_of(live, "c-later").status == "provisional"
    assert live.subjects("c-later@example.com") == ["How did we do?"]

    live.clock.advance(minutes=1, seconds=1)
    live.tick()

    row = response_of(live, "c-later")
    assert row.status == "final" and row.answers == {"score": 1}
    assert live.subjects("c-later@example.com") == ["How did we do?", "We are sorry"]


def test_a_scanner_clicking_every_score_counts_as_none(live: Live):
    mail = send_survey(live, "c-bot")
    for answer in (1, 2, 3, 4, 5):          # a link scanner, within a second
        assert live.client.get(survey_path(mail, answer)).status_code == 200

    assert response_of(live, "c-bot").status == "void"
    live.clock.advance(minutes=11)
    live.tick()

    assert response_of(live, "c-bot").status == "void"
    assert answered_events(live, "c-bot") == []
    assert run_of(live, "c-bot").status == "waiting"
    assert live.subjects("c-bot@example.com") == ["How did we do?"]

    # the person, later: a click counts again, and the page confirms it
    page = live.client.get(survey_path(mail, 5))
    assert checked(page.text, "q-score") == ["5"] and response_of(live, "c-bot").status == "provisional"
    live.client.post(survey_path(mail, 5).split("?")[0], data={"q-score": "5"})
    live.settle()
    assert live.subjects("c-bot@example.com") == ["How did we do?", "Would you share a review?"]


def test_a_changed_mind_after_a_minute_replaces_the_provisional_answer(live: Live):
    mail = send_survey(live, "c-mind")
    live.client.get(survey_path(mail, 2))
    live.clock.advance(minutes=2)
    live.client.get(survey_path(mail, 4))

    row = response_of(live, "c-mind")
    assert row.status == "provisional" and row.answers == {"score": 4}


def test_a_click_after_the_answer_is_final_changes_nothing_until_the_form_is_sent(live: Live):
    mail = send_survey(live, "c-final")
    live.client.post(survey_path(mail, 5).split("?")[0], data={"q-score": "5"})
    live.settle()

    page = live.client.get(survey_path(mail, 1))

    assert "Your answer is saved" in page.text
    assert checked(page.text, "q-score") == ["1"]                 # shown chosen, not recorded
    assert response_of(live, "c-final").answers == {"score": 5}


def test_bad_answers_are_refused_and_nothing_is_recorded(live: Live):
    mail = send_survey(live, "c-bad")
    token_path = survey_path(mail, 3).split("?")[0]

    out_of_range = live.client.get(f"{token_path}?a=9")
    not_a_number = live.client.get(f"{token_path}?a=lots")
    missing = live.client.post(token_path, data={"q-comment": "no score"})
    bad_choice = live.client.post(token_path, data={"q-score": "3", "q-reason": "7"})

    assert out_of_range.status_code == not_a_number.status_code == 400
    assert "from 1 to 5" in out_of_range.text
    assert missing.status_code == 422 and "Please choose an answer." in missing.text
    assert 'aria-invalid' in missing.text or 'aria-describedby="q-score-error"' in missing.text
    assert bad_choice.status_code == 422 and "Choose one of the options." in bad_choice.text
    assert response_of(live, "c-bad") is None


def test_tampered_foreign_and_expired_survey_links(live: Live):
    mail = send_survey(live, "c-links2")
    path = survey_path(mail, 4)
    token = path.split("/s/")[1].split("?")[0]
    claims = live.ctx.links.read(token, "survey")
    tampered = "A" + token[1:] if not token.startswith("A") else "B" + token[1:]
    foreign = live.ctx.links.token("survey", "c-happy", claims.message_id, "csat")   # signed, not theirs
    wrong_survey = live.ctx.links.token("survey", claims.customer_id, claims.message_id, "nps")

    for bad in (tampered, foreign, wrong_survey):
        assert live.client.get(f"/s/{bad}?a=4").status_code == 404
        assert live.client.post(f"/s/{bad}", data={"q-score": "4"}).status_code == 404
    assert response_of(live, "c-links2") is None

    with Session(live.ctx.engine) as session:   # sent 31 days ago
        session.exec(update(Message).where(Message.id == mail.message_id)
                     .values(created_at=live.clock.now() - timedelta(days=31)))
        session.commit()
    closed = live.client.get(path)
    assert closed.status_code == 410 and "This survey has closed" in closed.text
    assert response_of(live, "c-links2") is None


def test_parallel_scanner_clicks_leave_one_void_response(live: Live):
    from concurrent.futures import ThreadPoolExecutor

    mail = send_survey(live, "c-swarm")
    with ThreadPoolExecutor(5) as pool:
        codes = list(pool.map(lambda a: live.client.get(survey_path(mail, a)).status_code, [1, 2, 3, 4, 5]))

    assert codes == [200] * 5
    with Session(live.ctx.engine) as session:
        rows = list(session.exec(select(SurveyResponse).where(SurveyResponse.customer_id == "c-swarm")))
    assert [r.status for r in rows] == ["void"]
