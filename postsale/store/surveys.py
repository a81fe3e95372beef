"""One-click survey answers: provisional, final or void (SPEC.md §7).

Mail scanners open every link of a message within seconds of delivery, so a click on a survey
link only records a *provisional* answer to the first question:

    click (GET /s/{token}?a=N)
      no answer yet ......................... provisional {first question: N}
      provisional, same N ................... unchanged (its 10-minute timer keeps running)
      provisional, other N, < 1 min since ... void: several scores within a minute is a bot
      provisional, other N, later ........... provisional {first: N}; the timer restarts
      void, < 1 min since the last click .... void (the burst goes on)
      void, later ........................... provisional {first: N}
      final ................................. unchanged: only the page's form changes it
    the page's form (POST) .................. final, whatever the state before
    tick: provisional, 10 min untouched ..... final

Every final answer goes in as a ``survey.answered`` event through the one ingest path, so that
a journey's ``wait_for: survey.answered`` and ``answers.*`` see it exactly as they would see an
imported one. The event id derives from the message and the answers: the same answers sent
twice are a duplicate (nothing happens twice), different answers update the message's one
response row (unique per customer × survey × message).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from sqlalchemy import select, update
from sqlmodel import Session

from models import Customer as CustomerRow
from models import Message, Run, SurveyResponse
from postsale.errors import PostsaleError
from postsale.links import LinkClaims
from postsale.spec.model import Question, QuestionType, SurveyDef
from postsale.store.context import Context
from postsale.store.ingest import IngestResult, ingest_items
from postsale.store.runs import aware
from postsale.store.sql import insert_ignore

PROVISIONAL_FOR = timedelta(minutes=10)     # an unrivalled click becomes final after this
BOT_WINDOW = timedelta(minutes=1)           # different scores closer than this: a scanner
LINK_TTL = timedelta(days=30)               # a survey link answers for this long after sending
TEXT_MAX = 2000


class SurveyLinkError(PostsaleError, LookupError):
    """A survey link that leads nowhere; ``gone`` when it did once (closed, forgotten)."""

    def __init__(self, message: str, *, gone: bool = False) -> None:
        self.message, self.gone = message, gone
        super().__init__(message)


class InvalidAnswer(PostsaleError, ValueError):
    def __init__(self, question: str, message: str) -> None:
        self.question, self.message = question, message
        super().__init__(f"{question}: {message}")


@dataclass(frozen=True)
class SurveyTarget:
    """What a valid survey token points at."""
    message_id: str
    run_id: str
    journey_id: str
    customer_id: str
    survey: SurveyDef

    @property
    def first(self) -> Question:
        return self.survey.questions[0]


@dataclass(frozen=True)
class SurveyState:
    status: str                 # none | provisional | final | void
    answers: dict[str, Any]


def resolve(ctx: Context, claims: LinkClaims, now: datetime) -> SurveyTarget:
    """The survey message a token names; SurveyLinkError when it is foreign, closed or gone."""
    with Session(ctx.engine) as session:
        message = session.get(Message, claims.message_id)
        if (message is None or message.customer_id != claims.customer_id or not message.is_survey
                or (message.survey_id or "") != claims.extra):
            raise SurveyLinkError("This survey link is not valid.")
        customer = session.get(CustomerRow, message.customer_id)
        run = session.get(Run, message.run_id)
    if customer is None or not customer.email:
        raise SurveyLinkError("This survey is closed: the address it was sent to was removed.", gone=True)
    if now - aware(message.created_at) > LINK_TTL:
        raise SurveyLinkError("This survey has closed. Thank you for following the link all the same.", gone=True)
    journey = ctx.versions.journey(run.version_id) if run is not None else None
    journey = journey or ctx.catalog.journeys.get(message.journey_id)
    survey = journey.surveys.get(message.survey_id or "") if journey else None
    if survey is None or not survey.questions:
        raise SurveyLinkError("This survey is no longer available.", gone=True)
    return SurveyTarget(message_id=message.id, run_id=message.run_id, journey_id=message.journey_id,
                        customer_id=message.customer_id, survey=survey)


# ---------------------------------------------------------------- answers

def parse_answer(question: Question, raw: str | None) -> Any:
    """A form or link value as the journey sees it; None for an empty optional answer."""
    text = (raw or "").strip()
    if not text:
        if question.optional:
            return None
        raise InvalidAnswer(question.id, "Please choose an answer." if question.type is not QuestionType.text
                            else "Please write an answer.")
    bounds = question.scale()
    if bounds is not None:
        try:
            value = int(text)
        except ValueError:
            raise InvalidAnswer(question.id, f"Choose a number from {bounds[0]} to {bounds[1]}.") from None
        if not bounds[0] <= value <= bounds[1]:
            raise InvalidAnswer(question.id, f"Choose a number from {bounds[0]} to {bounds[1]}.")
        return value
    if question.type is QuestionType.choice:   # links and forms carry the choice's position
        try:
            return question.choices[int(text)]
        except (ValueError, IndexError):
            raise InvalidAnswer(question.id, "Choose one of the options.") from None
    if len(text) > TEXT_MAX:
        raise InvalidAnswer(question.id, f"Please keep it under {TEXT_MAX} characters.")
    return text


def parse_answers(survey: SurveyDef, form: Mapping[str, str]) -> dict[str, Any]:
    """Every question's answer from a form keyed ``q-<question id>``; raises on the first bad one
    (``InvalidAnswers`` carries them all)."""
    answers: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for question in survey.questions:
        try:
            value = parse_answer(question, form.get(f"q-{question.id}"))
        except InvalidAnswer as exc:
            problems[question.id] = exc.message
            continue
        if value is not None:
            answers[question.id] = value
    if problems:
        raise InvalidAnswers(problems, answers)
    return answers


class InvalidAnswers(PostsaleError, ValueError):
    def __init__(self, problems: dict[str, str], answers: dict[str, Any]) -> None:
        self.problems, self.answers = problems, answers
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))


def state(ctx: Context, target: SurveyTarget) -> SurveyState:
    with Session(ctx.engine) as session:
        row = _row(session, target)
    return SurveyState("none", {}) if row is None else SurveyState(row.status, dict(row.answers or {}))


def _row(session: Session, target: SurveyTarget) -> SurveyResponse | None:
    return session.scalars(select(SurveyResponse).where(
        SurveyResponse.customer_id == target.customer_id, SurveyResponse.survey == target.survey.id,
        SurveyResponse.message_id == target.message_id)).first()


def record_click(ctx: Context, target: SurveyTarget, value: Any, now: datetime) -> SurveyState:
    """A one-click answer to the first question, under the rules in the module docstring.

    Updates are conditional on the row being as read, so that two clicks racing (a scanner
    opens links in parallel) never both win; the loser re-reads and applies its rule again.
    """
    first = target.first.id
    for _ in range(5):
        with Session(ctx.engine) as session:
            row = _row(session, target)
            if row is None:
                inserted = insert_ignore(session, SurveyResponse, [{
                    "message_id": target.message_id, "run_id": target.run_id, "customer_id": target.customer_id,
                    "journey_id": target.journey_id, "survey": target.survey.id, "answers": {first: value},
                    "status": "provisional", "created_at": now, "updated_at": now}],
                    ["customer_id", "survey", "message_id"])
                session.commit()
                if inserted:
                    return SurveyState("provisional", {first: value})
                continue
            last = aware(row.updated_at) or now
            recent = now - last < BOT_WINDOW
            if row.status == "final" or (row.status == "provisional" and row.answers.get(first) == value):
                return SurveyState(row.status, dict(row.answers))
            if recent:
                values: dict[str, Any] = {"status": "void", "answers": {}, "updated_at": now}
            else:
                values = {"status": "provisional", "answers": {first: value}, "updated_at": now}
            done = session.execute(update(SurveyResponse).where(
                SurveyResponse.id == row.id, SurveyResponse.status == row.status,
                SurveyResponse.updated_at == row.updated_at).values(**values)).rowcount
            session.commit()
            if done:
                return SurveyState(values["status"], dict(values["answers"]))
    raise RuntimeError("survey answer kept changing under us; try again")   # pragma: no cover


def confirm(ctx: Context, target: SurveyTarget, answers: dict[str, Any], now: datetime, *,
            ingest: Callable[[list[Any]], IngestResult] | None = None) -> IngestResult:
    """The page's form: the answers become final and go in as ``survey.answered`` (through
    ``ingest``: the API passes its own, which also dispatches at once and tells Prefect)."""
    with Session(ctx.engine) as session:
        customer = session.get(CustomerRow, target.customer_id)
    if customer is None or not customer.email:
        raise SurveyLinkError("This survey is closed: the address it was sent to was removed.", gone=True)
    raw = answered_event(message_id=target.message_id, run_id=target.run_id, journey_id=target.journey_id,
                         survey=target.survey.id, customer=customer, answers=answers, at=now)
    result = (ingest or (lambda items: ingest_items(ctx, items)))([raw])
    if result.rejected:
        raise InvalidAnswers({"-": result.rejected[0].reason}, answers)
    if result.duplicates:   # these very answers went in before: make sure the row says so
        with Session(ctx.engine) as session:
            session.execute(update(SurveyResponse).where(
                SurveyResponse.customer_id == target.customer_id, SurveyResponse.survey == target.survey.id,
                SurveyResponse.message_id == target.message_id, SurveyResponse.status != "final")
                .values(status="final", answers=answers, updated_at=now))
            session.commit()
    return result


def finalize_provisional(ctx: Context, now: datetime) -> IngestResult:
    """Provisional answers untouched for 10 minutes become final (serve's tick calls this)."""
    raws: list[dict[str, Any]] = []
    with Session(ctx.engine) as session:
        rows = list(session.scalars(select(SurveyResponse).where(
            SurveyResponse.status == "provisional", SurveyResponse.updated_at <= now - PROVISIONAL_FOR)))
        for row in rows:
            customer = session.get(CustomerRow, row.customer_id)
            if customer is None or not customer.email or not row.answers:
                row.status, row.updated_at = "void", now
                continue
            raws.append(answered_event(message_id=row.message_id or "", run_id=row.run_id,
                                       journey_id=row.journey_id, survey=row.survey, customer=customer,
                                       answers=dict(row.answers), at=aware(row.updated_at) or now))
        session.commit()
    return ingest_items(ctx, raws) if raws else IngestResult()


def answered_event(*, message_id: str, run_id: str | None, journey_id: str | None, survey: str,
                   customer: CustomerRow, answers: dict[str, Any], at: datetime) -> dict[str, Any]:
    """The ``survey.answered`` event of SPEC.md §2, with an id fixed by message and answers."""
    digest = hashlib.sha256(json.dumps(answers, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    data: dict[str, Any] = {"survey": survey, "journey": journey_id, "message_id": message_id,
                            "answers": answers}
    if run_id:
        data["run_id"] = run_id
    return {"id": f"survey-{message_id}-{digest}", "type": "survey.answered", "occurred_at": at.isoformat(),
            "customer": {"id": customer.id, "email": customer.email, "name": customer.name,
                         "timezone": customer.timezone or "UTC", "locale": customer.locale},
            "data": data}


__all__ = ["PROVISIONAL_FOR", "BOT_WINDOW", "LINK_TTL", "SurveyLinkError", "InvalidAnswer", "InvalidAnswers",
           "SurveyTarget", "SurveyState", "resolve", "parse_answer", "parse_answers", "state", "record_click",
           "confirm", "finalize_provisional", "answered_event"]
