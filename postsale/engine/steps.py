"""One small handler per step kind, sharing a mutable ``Ctx`` for the length of one advance.

A handler records outcomes, moves the run (``ctx.next()``, ``ctx.goto()``, ``ctx.update()``)
and returns ``GO`` to carry on with the next instruction at the same ``now``, or ``STOP`` when
the run has to wait (a ``wait``, a hold, a ``wait_for``) or has ended.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from postsale.engine.caps import NEVER, describe, earliest_send
from postsale.engine.program import Branch, Instruction, Jump
from postsale.engine.types import (Alerted, CustomerState, Exited, Held, Outcome, RunState, RunStatus,
                                   Sent, SentRecord, Skipped, StartJourney, Suppressed, evolve)
from postsale.errors import ExpressionError, RenderError
from postsale.render.types import Renderer, RenderRequest
from postsale.sandbox import Answers, make_environment, truthy
from postsale.spec.model import (Alert, Category, Exit, Journey, Policy, Send, Start, Survey, SurveyDef,
                                 Wait, WaitFor)
from postsale.timing import in_quiet_hours, next_wall_time, quiet_hours_end, zone

GO, STOP = True, False

# RunState fields that do not appear in the scope: changing only these keeps it.
_POINTER_ONLY = frozenset({"step_index", "status", "next_run_at", "wait_until", "due_since", "wake_event"})

_MESSAGE_NS = uuid.uuid5(uuid.NAMESPACE_URL, "https://postsale.example/message")
_MESSAGE_NS_BYTES = _MESSAGE_NS.bytes


def message_id_for(run_id: str, step_id: str) -> str:
    """The outbox key of a run's step: the same on every retry, so a step sends at most once.

    ``uuid.uuid5(_MESSAGE_NS, f"{run_id}\\x1f{step_id}").hex``, computed without building UUID
    objects (RFC 4122 §4.3: SHA-1 of namespace and name, version 5, variant bits 10).
    """
    digest = bytearray(hashlib.sha1(_MESSAGE_NS_BYTES + f"{run_id}\x1f{step_id}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return digest.hex()


@dataclass
class Ctx:
    run: RunState
    journey: Journey
    customer: CustomerState
    policy: Policy
    now: datetime
    render: Renderer
    history: list[SentRecord]              # grows with this advance's own sends (min_gap)
    outcomes: list[Outcome] = field(default_factory=list)
    _scope: dict[str, Any] | None = field(default=None, repr=False)

    def scope(self) -> dict[str, Any]:
        """Names in scope for expressions and templates (SPEC.md §3 "Expressions").

        Built once per advance and kept until the run's trigger, answers or waited event
        change (a ``wait_for`` waking up). Expressions and templates run in the immutable
        sandbox, so sharing one dict between the steps of an advance is safe.
        """
        if self._scope is None:
            run, journey = self.run, self.journey
            trigger = run.trigger or {}
            self._scope = {
                "customer": self.customer.customer.scope(),
                "event": trigger,
                "data": trigger.get("data") or {},
                "answers": Answers(run.answers),
                "waited": run.waited,
                "journey": {"id": journey.id, "name": journey.name,
                            "touchpoint": journey.touchpoint.value, "category": journey.category.value},
                "now": self.now,
            }
        return self._scope

    def emit(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def update(self, **changes: Any) -> None:
        self.run = evolve(self.run, **changes)
        if not _POINTER_ONLY.issuperset(changes):
            self._scope = None

    def goto(self, index: int) -> None:
        """Move the pointer; whatever the last step was holding is over."""
        self.update(step_index=index, status=RunStatus.active, due_since=None)

    def next(self) -> None:
        self.goto(self.run.step_index + 1)


def execute(ctx: Ctx, ins: Instruction) -> bool:
    if isinstance(ins, Branch):
        return _branch(ctx, ins)
    if isinstance(ins, Jump):
        ctx.goto(ins.to)
        return GO
    return _HANDLERS[type(ins.step)](ctx, ins.step)


# ---------------------------------------------------------------- control flow

def _branch(ctx: Ctx, ins: Branch) -> bool:
    try:
        holds = truthy(ins.step.condition, ctx.scope())
    except ExpressionError as exc:
        ctx.emit(Skipped(ins.step.id, str(exc)))
        ctx.goto(ins.end)
        return GO
    ctx.goto(ctx.run.step_index + 1 if holds else ins.orelse)
    return GO


def _wait(ctx: Ctx, step: Wait) -> bool:
    wake = ctx.now + step.duration
    if step.at is not None:
        wake = next_wall_time(wake, step.at, zone(ctx.customer.customer.timezone))
    ctx.next()
    ctx.update(next_run_at=wake)
    return STOP


def _wait_for(ctx: Ctx, step: WaitFor) -> bool:
    run = ctx.run
    if run.wake_event is not None:
        ctx.update(waited=run.wake_event, wake_event=None, wait_until=None,
                   answers=_with_answers(ctx.journey, run.answers, run.wake_event))
        ctx.next()
        return GO
    if run.wait_until is not None and ctx.now >= run.wait_until:
        ctx.update(waited=None, wait_until=None)
        ctx.next()
        return GO
    # A spurious wake-up must not restart the timeout.
    if run.wait_until is None and run.status is not RunStatus.waiting:
        ctx.update(wait_until=ctx.now + step.timeout if step.timeout else None)
    ctx.update(status=RunStatus.waiting, next_run_at=ctx.run.wait_until)
    return STOP


def _with_answers(journey: Journey, answers: dict, event: dict) -> dict:
    """Fold a ``survey.answered`` wake event into ``answers`` so the next ``if`` sees it even
    when the edge has not stored it on the run yet (merging twice changes nothing)."""
    data = event.get("data") or {}
    survey, given = data.get("survey"), data.get("answers")
    if (event.get("type") != "survey.answered" or survey not in journey.surveys
            or not isinstance(given, dict) or data.get("journey") not in (None, journey.id)):
        return answers
    return {**answers, survey: {**answers.get(survey, {}), **given}}


_ALERTS = make_environment()
_alert_templates: dict[str, Any] = {}


def _alert_template(source: str) -> Any:
    """The compiled alert text, once per distinct text (compiling is most of the cost)."""
    template = _alert_templates.get(source)
    if template is None:
        template = _alert_templates[source] = _ALERTS.from_string(source)
    return template


def _alert(ctx: Ctx, step: Alert) -> bool:
    try:
        message = _alert_template(step.message).render(ctx.scope()).strip()
    except Exception as exc:  # noqa: BLE001 - a broken alert text must still reach an operator
        message = f"{step.message} (alert text failed: {exc})"
    ctx.emit(Alerted(step.id, message))
    ctx.next()
    return GO


def _start(ctx: Ctx, step: Start) -> bool:
    ctx.emit(StartJourney(step.id, step.journey))
    ctx.next()
    return GO


def _exit(ctx: Ctx, step: Exit) -> bool:
    ctx.emit(Exited(step.reason, step.id))
    ctx.update(status=RunStatus.exited, next_run_at=None, wait_until=None, due_since=None)
    return STOP


# ---------------------------------------------------------------- sending

def _send(ctx: Ctx, step: Send | Survey) -> bool:
    if not _condition_holds(ctx, step):
        return GO
    survey: SurveyDef | None = None
    if isinstance(step, Survey):
        survey = ctx.journey.surveys.get(step.survey)
        if survey is None:
            return _skip(ctx, step, f"unknown survey {step.survey!r}")
    # Surveys carry the unsubscribe link: marketing even inside a transactional journey.
    category = Category.marketing if survey else ctx.journey.category
    due_since = ctx.run.due_since or ctx.now
    if category is Category.marketing:
        if ctx.customer.suppressed:
            ctx.emit(Suppressed(step.id, ctx.customer.suppressed))
            ctx.next()
            return GO
        if ctx.customer.ticket_open and ctx.policy.hold_marketing_while_ticket_open:
            return _hold_for_ticket(ctx, step, due_since)
    moment, reason, capped = _send_moment(ctx, category, survey is not None)
    if moment > ctx.now:
        if survey is not None and capped:
            return _skip(ctx, step, reason)
        return _hold(ctx, step, due_since, moment, reason)
    return _deliver(ctx, step, category, survey)


def _condition_holds(ctx: Ctx, step: Send | Survey) -> bool:
    if step.condition is None:
        return True
    try:
        if truthy(step.condition, ctx.scope()):
            return True
        _skip(ctx, step, "condition false")
    except ExpressionError as exc:
        _skip(ctx, step, str(exc))
    return False


def _send_moment(ctx: Ctx, category: Category, is_survey: bool) -> tuple[datetime, str, bool]:
    """When the message may go, why not now, and whether a frequency rule (not the clock) is why."""
    moment, reason = earliest_send(ctx.now, ctx.history, journey_id=ctx.journey.id, category=category,
                                   is_survey=is_survey, policy=ctx.policy)
    capped = reason is not None
    quiet = ctx.policy.quiet_hours
    if category is Category.marketing and moment != NEVER and quiet is not None:
        tz = zone(ctx.customer.customer.timezone)
        if in_quiet_hours(moment, tz, quiet):
            moment = quiet_hours_end(moment, tz, quiet)
            reason = reason or f"quiet hours {quiet.start:%H:%M}-{quiet.end:%H:%M}"
    return moment, reason or "", capped


def _hold(ctx: Ctx, step: Send | Survey, due_since: datetime, moment: datetime, reason: str) -> bool:
    if moment == NEVER:
        return _skip(ctx, step, reason)
    if step.expire_after is not None and moment > due_since + step.expire_after:
        return _skip(ctx, step, _expired(step, reason))
    ctx.emit(Held(step.id, moment, reason))
    ctx.update(status=RunStatus.active, next_run_at=moment, due_since=due_since)
    return STOP


def _hold_for_ticket(ctx: Ctx, step: Send | Survey, due_since: datetime) -> bool:
    """Held until the edge sees ``ticket.resolved``, or until ``expire_after`` runs out."""
    deadline = due_since + step.expire_after if step.expire_after is not None else None
    if deadline is not None and ctx.now >= deadline:
        return _skip(ctx, step, _expired(step, "ticket open"))
    ctx.emit(Held(step.id, None, "ticket open"))
    ctx.update(status=RunStatus.held, next_run_at=deadline, due_since=due_since)
    return STOP


def _expired(step: Send | Survey, reason: str) -> str:
    assert step.expire_after is not None
    return f"expired: held longer than {describe(step.expire_after)} ({reason})"


def _deliver(ctx: Ctx, step: Send | Survey, category: Category, survey: SurveyDef | None) -> bool:
    template = survey.template if survey else step.template  # type: ignore[union-attr]
    message_id = message_id_for(ctx.run.run_id, step.id)
    request = RenderRequest(template=template, category=category, scope=ctx.scope(),
                            message_id=message_id, customer_id=ctx.run.customer_id,
                            locale=ctx.customer.customer.locale, survey=survey)
    try:
        email = ctx.render(request)
    except RenderError as exc:
        return _skip(ctx, step, f"render failed: {exc}")
    ctx.emit(Sent(step_id=step.id, template=template, category=category,
                  touchpoint=ctx.journey.touchpoint, email=email, message_id=message_id,
                  is_survey=survey is not None, survey_id=survey.id if survey else None))
    ctx.history.append(SentRecord(ctx.now, ctx.journey.id, category, survey is not None))
    ctx.next()
    return GO


def _skip(ctx: Ctx, step: Send | Survey, reason: str) -> bool:
    ctx.emit(Skipped(step.id, reason))
    ctx.next()
    return GO


_HANDLERS: dict[type, Callable[[Ctx, Any], bool]] = {
    Send: _send, Survey: _send, Wait: _wait, WaitFor: _wait_for,
    Alert: _alert, Start: _start, Exit: _exit,
}
