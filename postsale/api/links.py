"""The pages behind an email's links: unsubscribe, preferences and one-click survey answers.

Every token is signed (``postsale.links``) and binds purpose, customer and message; a tampered
or foreign token, or one whose message is not that customer's, gets a 404 page and changes
nothing. GET never changes a subscription (mail scanners follow links): the unsubscribe page
asks, and the change is a POST — the page's button, or a mailbox provider's RFC 8058 one-click
``List-Unsubscribe=One-Click``. A survey GET records only a provisional answer
(``postsale.store.surveys`` explains the rules against scanners).

Pages are small, accessible HTML (Jinja2, autoescaped; ``pages/``), with no JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import delete, select
from sqlmodel import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from models import Customer as CustomerRow
from models import Message, Suppression
from postsale.api.deps import Services, accept_items, emit_to_prefect, page, read_form, services
from postsale.links import LinkClaims
from postsale.store import surveys
from postsale.store.ingest import suppress
from postsale.store.sql import email_hash

router = APIRouter(tags=["links"])

ONE_CLICK = ("List-Unsubscribe", "One-Click")


@dataclass(frozen=True)
class Person:
    customer_id: str
    email: str | None            # None once forgotten
    name: str | None
    timezone: str
    locale: str | None
    journey_id: str
    suppressed: str | None       # the suppression reason, if any

    @property
    def masked(self) -> str:
        local, _, domain = (self.email or "").partition("@")
        return f"{local[:1]}•••@{domain}" if domain else "your address"


def _invalid(svc: Services) -> HTMLResponse:
    return page(svc, "message.html.j2", 404, title="This link is not valid",
                text="It may have been cut short: try copying the whole link from the email. "
                     "Nothing was changed.")


def _gone(svc: Services) -> HTMLResponse:
    return page(svc, "message.html.j2", 410, title="This address was removed",
                text="We erased this address at its owner's request and will not email it again.")


def _person(svc: Services, claims: LinkClaims) -> Person | None:
    """The customer a valid token names, if the message it names is theirs."""
    with Session(svc.ctx.engine) as session:
        message = session.get(Message, claims.message_id)
        customer = session.get(CustomerRow, claims.customer_id)
        if message is None or customer is None or message.customer_id != customer.id:
            return None
        reason = None
        if customer.email:
            reason = session.scalar(select(Suppression.reason).where(
                Suppression.email_hash == email_hash(customer.email)))
    return Person(customer.id, customer.email, customer.name, customer.timezone or "UTC", customer.locale,
                  message.journey_id, reason)


def _unsub_claims(svc: Services, token: str) -> tuple[LinkClaims | None, bool]:
    """Claims of an unsubscribe or preferences token, and whether it is a preferences one."""
    links = svc.ctx.links
    claims = links.read(token, "unsubscribe")
    if claims is not None:
        return claims, False
    return links.read(token, "preferences"), True


# ---------------------------------------------------------------- unsubscribe and preferences

@router.get("/u/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str, prefs: str | None = None) -> HTMLResponse:
    svc = services(request)
    claims, is_prefs = _unsub_claims(svc, token)
    person = _person(svc, claims) if claims else None
    if person is None:
        return _invalid(svc)
    if not person.email:
        return _gone(svc)
    if is_prefs or prefs:
        return _preferences(svc, token, person)
    return page(svc, "unsubscribe.html.j2", token=token, email=person.masked,
                already=person.suppressed is not None)


@router.post("/u/{token}", response_class=HTMLResponse)
async def one_click(request: Request, token: str) -> HTMLResponse:
    """RFC 8058: ``List-Unsubscribe=One-Click`` in an urlencoded or multipart body."""
    svc = services(request)
    claims = svc.ctx.links.read(token, "unsubscribe")
    person = await run_in_threadpool(_person, svc, claims) if claims else None
    if person is None:
        return _invalid(svc)
    form = await read_form(request)
    if form.get(ONE_CLICK[0]) != ONE_CLICK[1]:
        return page(svc, "message.html.j2", 400, title="Nothing was changed",
                    text="This address unsubscribes with a POST whose body is List-Unsubscribe=One-Click.")
    if not person.email:
        return _gone(svc)
    accepted = await run_in_threadpool(_unsubscribe, svc, claims, person)
    task = BackgroundTask(emit_to_prefect, accepted) if svc.emit_prefect and accepted else None
    response = page(svc, "unsubscribed.html.j2", token=token, email=person.masked)
    response.background = task
    return response


@router.get("/u/{token}/preferences", response_class=HTMLResponse)
def preferences_page(request: Request, token: str) -> HTMLResponse:
    svc = services(request)
    claims, _ = _unsub_claims(svc, token)
    person = _person(svc, claims) if claims else None
    if person is None:
        return _invalid(svc)
    return _preferences(svc, token, person) if person.email else _gone(svc)


@router.post("/u/{token}/preferences", response_class=HTMLResponse)
async def save_preferences(request: Request, token: str) -> HTMLResponse:
    svc = services(request)
    claims, _ = _unsub_claims(svc, token)
    person = await run_in_threadpool(_person, svc, claims) if claims else None
    if person is None:
        return _invalid(svc)
    if not person.email:
        return _gone(svc)
    choice = (await read_form(request)).get("marketing")
    if choice not in ("yes", "no"):
        return _preferences(svc, token, person, status=400, error="Choose yes or no, then save.")
    accepted: list[dict[str, Any]] = []
    if choice == "no":
        accepted = await run_in_threadpool(_unsubscribe, svc, claims, person, "preferences")
    else:
        await run_in_threadpool(_resubscribe, svc, person)
    person = await run_in_threadpool(_person, svc, claims)
    response = _preferences(svc, token, person, saved=True)
    if svc.emit_prefect and accepted:
        response.background = BackgroundTask(emit_to_prefect, accepted)
    return response


def _preferences(svc: Services, token: str, person: Person, *, status: int = 200, saved: bool = False,
                 error: str | None = None) -> HTMLResponse:
    blocked = person.suppressed if person.suppressed not in (None, "unsubscribed") else None
    return page(svc, "preferences.html.j2", status, token=token, email=person.masked,
                marketing=person.suppressed is None, blocked=blocked, saved=saved, error=error)


def _unsubscribe(svc: Services, claims: LinkClaims, person: Person, method: str = "one-click") -> list[dict[str, Any]]:
    """Suppress marketing at once, and record it as the engine's ``email.unsubscribed`` event
    (which ends runs that exit on it). Takes effect before the next dispatch."""
    now = svc.ctx.clock.now()
    assert person.email
    with svc.dispatcher.writing():
        with Session(svc.ctx.engine) as session:
            suppress(session, person.email, "unsubscribed", source=f"{method}:{claims.message_id}", now=now)
            session.commit()
        _result, accepted = accept_items(svc, [{
            "id": f"unsubscribe-{claims.message_id}", "type": "email.unsubscribed", "occurred_at": now.isoformat(),
            "customer": {"id": person.customer_id, "email": person.email, "name": person.name,
                         "timezone": person.timezone, "locale": person.locale},
            "data": {"message_id": claims.message_id, "journey": person.journey_id, "method": method}}])
    return accepted


def _resubscribe(svc: Services, person: Person) -> None:
    """Marketing back on: only an unsubscribe is undone here, never a bounce or a complaint."""
    assert person.email
    with svc.dispatcher.writing(), Session(svc.ctx.engine) as session:
        session.execute(delete(Suppression).where(Suppression.email_hash == email_hash(person.email),
                                                  Suppression.reason == "unsubscribed"))
        session.commit()


# ---------------------------------------------------------------- surveys

@router.get("/s/{token}", response_class=HTMLResponse)
def survey_page(request: Request, token: str, a: str | None = None) -> HTMLResponse:
    """A one-click answer: recorded provisionally, shown chosen, with the other questions."""
    svc = services(request)
    claims = svc.ctx.links.read(token, "survey")
    if claims is None:
        return _invalid(svc)
    now = svc.ctx.clock.now()
    try:
        target = surveys.resolve(svc.ctx, claims, now)
    except surveys.SurveyLinkError as exc:
        return _closed(svc, exc)
    chosen: dict[str, Any] = {}
    errors: dict[str, str] = {}
    current = surveys.state(svc.ctx, target)
    if a is not None:
        try:
            value = surveys.parse_answer(target.first, a)
        except surveys.InvalidAnswer as exc:
            errors[exc.question] = f"That link's answer isn't one of the options. {exc.message}"
        else:
            if value is not None:
                with svc.dispatcher.writing():
                    current = surveys.record_click(svc.ctx, target, value, now)
                chosen = {target.first.id: value}
    return _survey(svc, token, target, current, {**current.answers, **chosen}, errors,
                   status=400 if errors else 200, clicked=bool(chosen))


@router.post("/s/{token}", response_class=HTMLResponse)
async def survey_confirm(request: Request, token: str) -> HTMLResponse:
    """The page's form: the answers become final and reach the journey as survey.answered."""
    svc = services(request)
    claims = svc.ctx.links.read(token, "survey")
    if claims is None:
        return _invalid(svc)
    now = svc.ctx.clock.now()
    try:
        target = await run_in_threadpool(surveys.resolve, svc.ctx, claims, now)
    except surveys.SurveyLinkError as exc:
        return _closed(svc, exc)
    form = await read_form(request)
    try:
        answers = surveys.parse_answers(target.survey, form)
    except surveys.InvalidAnswers as exc:
        current = await run_in_threadpool(surveys.state, svc.ctx, target)
        return _survey(svc, token, target, current, exc.answers, exc.problems, status=422)
    accepted: list[dict[str, Any]] = []

    def ingest(items: list[Any]):
        result, fresh = accept_items(svc, items)
        accepted.extend(fresh)
        return result

    def run_confirm() -> None:
        with svc.dispatcher.writing():
            surveys.confirm(svc.ctx, target, answers, now, ingest=ingest)

    try:
        await run_in_threadpool(run_confirm)
    except surveys.SurveyLinkError as exc:
        return _closed(svc, exc)
    response = page(svc, "survey_thanks.html.j2")
    if svc.emit_prefect and accepted:
        response.background = BackgroundTask(emit_to_prefect, accepted)
    return response


def _closed(svc: Services, exc: surveys.SurveyLinkError) -> HTMLResponse:
    if exc.gone:
        return page(svc, "message.html.j2", 410, title="This survey is closed", text=exc.message)
    return _invalid(svc)


def _survey(svc: Services, token: str, target: surveys.SurveyTarget, current: surveys.SurveyState,
            values: dict[str, Any], errors: dict[str, str], *, status: int = 200, clicked: bool = False
            ) -> HTMLResponse:
    questions = []
    for q in target.survey.questions:
        bounds = q.scale()
        options: list[dict[str, Any]] = []
        if bounds is not None:
            options = [{"value": str(v), "label": str(v), "checked": values.get(q.id) == v}
                       for v in range(bounds[0], bounds[1] + 1)]
        elif q.choices:
            options = [{"value": str(i), "label": c, "checked": values.get(q.id) == c} for i, c in enumerate(q.choices)]
        questions.append({"id": q.id, "text": q.text, "type": q.type.value, "optional": q.optional,
                          "options": options, "bounds": bounds, "value": values.get(q.id),
                          "error": errors.get(q.id)})
    return page(svc, "survey.html.j2", status, token=token, questions=questions, state=current.status,
                clicked=clicked, first_value=values.get(target.first.id))


__all__ = ["router"]
