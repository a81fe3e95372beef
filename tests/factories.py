"""Builders with sensible defaults for the values tests need; override only what a test is about.

Times: ``T0`` is a Monday noon UTC well clear of any DST change; ``at(...)`` builds aware UTC
instants. Steps: ``send("thanks")``, ``wait("2d", at="10:00")``, ``if_("cond", then=[...])``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, time, timedelta, timezone
from typing import Any

from postsale.durations import parse_duration
from postsale.engine.types import CustomerState, RunState, RunStatus, SentRecord
from postsale.events import Customer, Event
from postsale.spec.model import (Alert, Cap, Category, Exit, If, Journey, Policy, Question, QuestionType,
                                 QuietHours, Reentry, Send, Start, Step, Survey, SurveyDef, Touchpoint,
                                 Trigger, Wait, WaitFor)

UTC = timezone.utc
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def _duration(value: str | timedelta | None) -> timedelta | None:
    return parse_duration(value) if isinstance(value, str) else value


def _clock(value: str | time | None) -> time | None:
    return time.fromisoformat(value) if isinstance(value, str) else value


# ---------------------------------------------------------------- steps

def send(template: str, *, id: str | None = None, condition: str | None = None,
         expire_after: str | timedelta | None = None) -> Send:
    return Send(id=id or template, template=template, condition=condition,
                expire_after=_duration(expire_after))


def survey(survey_id: str = "csat", *, id: str | None = None, condition: str | None = None,
           expire_after: str | timedelta | None = None) -> Survey:
    return Survey(id=id or survey_id, survey=survey_id, condition=condition,
                  expire_after=_duration(expire_after))


def wait(duration: str | timedelta, *, at: str | time | None = None, id: str | None = None) -> Wait:
    return Wait(id=id or f"wait-{duration}", duration=_duration(duration), at=_clock(at))


def wait_for(event: str, *, timeout: str | timedelta | None = None, id: str | None = None) -> WaitFor:
    return WaitFor(id=id or f"wait-for-{event}", event=event, timeout=_duration(timeout))


def if_(condition: str, *, then: list[Step] | tuple[Step, ...] = (),
        otherwise: list[Step] | tuple[Step, ...] = (), id: str = "if") -> If:
    return If(id=id, condition=condition, then=tuple(then), otherwise=tuple(otherwise))


def alert(message: str, *, id: str = "alert") -> Alert:
    return Alert(id=id, message=message)


def start(journey_id: str, *, id: str | None = None) -> Start:
    return Start(id=id or f"start-{journey_id}", journey=journey_id)


def exit_(reason: str = "exit step", *, id: str = "exit") -> Exit:
    return Exit(id=id, reason=reason)


def csat_survey(survey_id: str = "csat", template: str = "survey_csat") -> SurveyDef:
    return SurveyDef(id=survey_id, template=template, questions=(
        Question(id="score", text="How happy are you with your order?", type=QuestionType.scale,
                 min=1, max=5),
        Question(id="comment", text="Anything we could do better?", type=QuestionType.text,
                 optional=True),
    ))


# ---------------------------------------------------------------- journeys and policy

def make_journey(*steps: Step, id: str = "post-purchase", name: str | None = None,
                 touchpoint: Touchpoint = Touchpoint.immediate_post_sale,
                 category: Category = Category.marketing, trigger: str = "order.placed",
                 exit_when: tuple[str, ...] = (), surveys: dict[str, SurveyDef] | None = None,
                 reentry: Reentry = Reentry()) -> Journey:
    """A journey as the loader would hand it over; surveys default to ``csat`` when a survey
    step needs one. ``content_hash`` is derived from the definition, as a real version's is."""
    steps = steps or (send("thank_you"),)
    if surveys is None:
        surveys = {"csat": csat_survey()}
    fields: dict[str, Any] = dict(id=id, name=name or id.replace("-", " ").title(), touchpoint=touchpoint,
                                  category=category, trigger=Trigger(event=trigger), steps=tuple(steps),
                                  reentry=reentry, exit_when=tuple(exit_when), surveys=surveys)
    digest = hashlib.sha256(repr(sorted(fields.items())).encode()).hexdigest()
    return Journey(**fields, content_hash=digest)


def make_policy(**overrides: Any) -> Policy:
    """The SPEC.md §5 defaults (3/7d with 20h gap, 2/7d per journey, 1 survey/30d, 21:00-08:00)."""
    return Policy(**overrides)


def no_limits_policy(**overrides: Any) -> Policy:
    """No caps, no quiet hours, no ticket hold: for tests about something else."""
    fields: dict[str, Any] = dict(marketing_cap=None, journey_cap=None, survey_cap=None,
                                  quiet_hours=None, hold_marketing_while_ticket_open=False)
    fields.update(overrides)
    return Policy(**fields)


def cap(max: int, per: str | timedelta, min_gap: str | timedelta | None = None) -> Cap:
    return Cap(max=max, per=_duration(per), min_gap=_duration(min_gap))


def quiet(start: str, end: str) -> QuietHours:
    return QuietHours(time.fromisoformat(start), time.fromisoformat(end))


# ---------------------------------------------------------------- customers, events, runs

def make_customer(id: str = "c-42", *, email: str | None = None, timezone: str = "UTC",
                  locale: str | None = None, name: str | None = "Ada", **attributes: Any) -> Customer:
    return Customer(id=id, email=email or f"{id}@example.com", name=name, timezone=timezone,
                    locale=locale, attributes=attributes)


def make_event(type: str = "order.placed", *, id: str = "evt-1", occurred_at: datetime = T0,
               customer: Customer | None = None, **data: Any) -> Event:
    if not data and type == "order.placed":
        data = {"order_id": "1001", "total": 129.0, "currency": "EUR",
                "items": [{"sku": "KETTLE-1", "name": "Steel kettle", "category": "kitchen",
                           "quantity": 1, "price": 129.0}]}
    return Event(id=id, type=type, occurred_at=occurred_at, customer=customer or make_customer(),
                 data=data)


def make_customer_state(customer: Customer | None = None, *, history: list[SentRecord] | tuple = (),
                        suppressed: str | None = None, ticket_open: bool = False,
                        exit_events: list[tuple[str, datetime]] | tuple = ()) -> CustomerState:
    return CustomerState(customer=customer or make_customer(), history=tuple(history),
                         suppressed=suppressed, ticket_open=ticket_open, exit_events=tuple(exit_events))


def make_run(journey: Journey | None = None, *, run_id: str = "run-1", customer_id: str = "c-42",
             entered_at: datetime = T0, trigger: Event | dict | None = None,
             status: RunStatus = RunStatus.active, **fields: Any) -> RunState:
    """A fresh run of ``journey`` (default id ``post-purchase``), due at ``entered_at``."""
    if trigger is None:
        trigger = make_event(occurred_at=entered_at)
    scope = trigger.scope() if isinstance(trigger, Event) else trigger
    fields.setdefault("next_run_at", entered_at)
    return RunState(run_id=run_id, journey_id=journey.id if journey else "post-purchase",
                    customer_id=customer_id, entered_at=entered_at, status=status, trigger=scope,
                    **fields)


def sent_record(at: datetime, journey_id: str = "post-purchase", *,
                category: Category = Category.marketing, is_survey: bool = False) -> SentRecord:
    return SentRecord(at=at, journey_id=journey_id, category=category, is_survey=is_survey)
