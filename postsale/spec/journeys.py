"""One journey file (SPEC.md §3) into a frozen ``Journey``, or the list of what is wrong.

``parse_journey`` is pure: text in, objects and problems out, no file system. Checks that
need other files (templates on disk, the journey a ``start:`` names, duplicate journey ids)
belong to ``postsale.spec.catalog``.

The reading is one pass that keeps going after a mistake, so an author sees every problem of
a file at once; any error means no Journey. Steps are a tagged union: a step mapping has
exactly one *kind* key (``send``, ``survey``, ``wait``, ``wait_for``, ``if``, ``alert``,
``start``, ``exit``); ``if`` beside ``send``/``survey`` is that step's condition, not a kind.

Default step ids: a send is named after its template, a survey step after its survey, any
other step ``{kind}-{n}`` where n counts every step of that kind in document order, nested
ones included and steps with an explicit ``id`` too. Counting those keeps the other defaults
stable when an author names one step, which matters because a running customer's progress
is stored by step id.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Any, Callable

from jinja2 import TemplateSyntaxError

from postsale.errors import ExpressionError
from postsale.sandbox import compile_expression, make_environment
from postsale.spec.model import (
    Alert, Category, Exit, If, Journey, Policy, Question, QuestionType, Reentry, Send, Start,
    Step, Survey, SurveyDef, Touchpoint, Trigger, Wait, WaitFor, Where,
)
from postsale.spec.problems import Problem
from postsale.spec.yaml_lines import LineDict, Reader, did_you_mean, load_yaml

JOURNEY_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
EVENT_TYPE = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+$")
NAME = re.compile(r"^[A-Za-z0-9_-]+$")              # templates, surveys, questions
STEP_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_AFTER = re.compile(r"^after\s+(\S+)$")

_TOP_KEYS = ("journey", "name", "touchpoint", "category", "trigger", "entry", "exit_when",
             "steps", "surveys")
# kind key -> (label in default ids, the other keys it accepts)
_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "send": ("send", ("id", "if", "expire_after")),
    "survey": ("survey", ("id", "if", "expire_after")),
    "wait": ("wait", ("id", "at")),
    "wait_for": ("wait-for", ("id", "timeout")),
    "if": ("if", ("id", "then", "else")),
    "alert": ("alert", ("id",)),
    "start": ("start", ("id",)),
    "exit": ("exit", ("id",)),
}
_QUESTION_KEYS = ("id", "text", "type", "min", "max", "choices", "optional")
_ALERTS = make_environment()

_ID_HINT = "lowercase letters, digits and dashes, like post-purchase"
_EVENT_HINT = "a dotted event type, like order.placed"
_NAME_HINT = "letters, digits, _ and -"


def parse_journey(text: str, file: str, *, policy: Policy) -> tuple[Journey | None, list[Problem]]:
    """Validate one journey file; the Journey is None when there is any error."""
    data, problems = load_yaml(text, file)
    r = Reader(file, problems)
    if data is None and r.failed:       # unreadable YAML; duplicate keys alone read on
        return None, r.problems
    if not isinstance(data, LineDict):
        r.error(getattr(data, "line", 1) or 1, "a journey file is a mapping starting with `journey:`",
                "see SPEC.md §3 for an example")
        return None, r.problems
    journey = _JourneyReader(r, policy).read(data, text)
    return (None if r.failed else journey), sorted(r.problems, key=lambda p: p.line)


class _JourneyReader:
    def __init__(self, r: Reader, policy: Policy) -> None:
        self.r, self.policy = r, policy
        self.counts: Counter[str] = Counter()
        self.ids: dict[str, int] = {}            # step id -> line of its first use
        self.surveys: dict[str, SurveyDef] = {}
        self.used_surveys: set[str] = set()
        self.declared_surveys: set[Any] = set()  # broken ones too: no second error at the step
        self.category = Category.marketing

    def read(self, m: LineDict, text: str) -> Journey | None:
        r = self.r
        r.check_keys(m, _TOP_KEYS, "a journey")
        journey_id = r.text(m, "journey", "journey", required=True, pattern=JOURNEY_ID, hint=_ID_HINT)
        name = r.text(m, "name", "name", required=True)
        touchpoint = self._enum(m, "touchpoint", Touchpoint, required=True)
        self.category = self._enum(m, "category", Category) or Category.marketing
        trigger = self._trigger(m)
        reentry = self._reentry(m)
        exit_when = self._exit_when(m, touchpoint)
        if "surveys" in m and m["surveys"] is not None:
            self._surveys(m)
        steps: tuple[Step, ...] = ()
        if "steps" not in m:
            r.error(m.line, "missing `steps`", "a journey needs at least one step")
        else:
            steps = self._steps(m["steps"], m.line_of("steps"), "steps")
            if not steps and isinstance(m["steps"], list) and not m["steps"]:
                r.error(m.line_of("steps"), "`steps` is empty", "a journey needs at least one step")
        for survey_id, survey in self.surveys.items():
            if survey_id not in self.used_surveys:
                r.warning(survey.where.line, f"survey {survey_id!r} is defined but no step sends it")
        if r.failed:
            return None
        return Journey(
            id=journey_id, name=name, touchpoint=touchpoint, category=self.category,
            trigger=trigger, steps=steps, reentry=reentry, exit_when=exit_when,
            surveys=self.surveys, where=Where(r.file, m.line_of("journey")), source=text,
            content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest())

    # ------------------------------------------------------------ header

    def _enum(self, m: LineDict, key: str, enum: Any, *, required: bool = False) -> Any:
        choices = [e.value for e in enum]
        value = self.r.text(m, key, key, required=required, hint=f"one of: {', '.join(choices)}")
        if value is None:
            return None
        if value not in choices:
            self.r.error(m.line_of(key), f"`{key}` {value!r} is not known",
                         did_you_mean(value, choices, noun="one of"))
            return None
        return enum(value)

    def _trigger(self, m: LineDict) -> Trigger | None:
        if "trigger" not in m:
            self.r.error(m.line, "missing `trigger`", "trigger: {event: order.placed}")
            return None
        t = self.r.mapping(m["trigger"], m.line_of("trigger"), "trigger")
        if t is None:
            return None
        self.r.check_keys(t, ("event", "if"), "trigger")
        event = self.r.text(t, "event", "trigger.event", required=True, pattern=EVENT_TYPE,
                            hint=_EVENT_HINT)
        return Trigger(event=event, condition=self._condition(t, "trigger.if"),
                       where=Where(self.r.file, m.line_of("trigger")))

    def _reentry(self, m: LineDict) -> Reentry:
        if "entry" not in m or m["entry"] is None:
            return Reentry()
        e = self.r.mapping(m["entry"], m.line_of("entry"), "entry")
        if e is None:
            return Reentry()
        self.r.check_keys(e, ("reentry",), "entry")
        if "reentry" not in e:
            return Reentry()
        value = e["reentry"]
        if value in ("never", "always"):
            return Reentry(mode=value)
        match = _AFTER.match(value.strip()) if isinstance(value, str) else None
        if match:
            holder = LineDict(after=match[1])
            holder.key_lines["after"] = e.line_of("reentry")
            after = self.r.duration(holder, "after", "entry.reentry")
            return Reentry(mode="after", after=after)
        self.r.error(e.line_of("reentry"), f"`entry.reentry` {value!r} is not known",
                     "never, always, or after a duration like `after 30d`")
        return Reentry()

    def _exit_when(self, m: LineDict, touchpoint: Touchpoint | None) -> tuple[str, ...]:
        if "exit_when" not in m:
            return ("order.placed",) if touchpoint is Touchpoint.pre_sale else ()
        if m["exit_when"] is None:
            return ()
        items = self.r.sequence(m["exit_when"], m.line_of("exit_when"), "exit_when")
        events: list[str] = []
        for item, line in zip(items or (), getattr(items, "item_lines", ())):
            goal = self.r.mapping(item, line, "exit_when item")
            if goal is None:
                continue
            self.r.check_keys(goal, ("event",), "an exit_when goal")
            event = self.r.text(goal, "event", "exit_when.event", required=True,
                                pattern=EVENT_TYPE, hint=_EVENT_HINT)
            if event is not None:
                events.append(event)
        return tuple(events)

    def _condition(self, m: LineDict, label: str, key: str = "if") -> str | None:
        source = self.r.text(m, key, label, hint='a quoted expression, like "data.total > 0"')
        if source is None:
            return None
        try:
            compile_expression(source)
        except ExpressionError as exc:
            self.r.error(m.line_of(key), f"`{label}`: {exc}",
                         "conditions are Jinja2 expressions, like \"data.total > 0\"")
            return None
        return source

    # ------------------------------------------------------------ surveys

    def _surveys(self, m: LineDict) -> None:
        surveys = self.r.mapping(m["surveys"], m.line_of("surveys"), "surveys")
        for survey_id, value in (surveys or {}).items():
            self.declared_surveys.add(survey_id)
            line = surveys.line_of(survey_id)
            if not isinstance(survey_id, str) or not NAME.match(survey_id):
                self.r.error(line, f"survey id {survey_id!r} is not valid", _NAME_HINT)
                continue
            s = self.r.mapping(value, line, f"surveys.{survey_id}")
            if s is None:
                continue
            label = f"surveys.{survey_id}"
            self.r.check_keys(s, ("template", "questions"), f"survey {survey_id!r}")
            template = self._template_name(s, "template", f"{label}.template", required=True)
            questions = self._questions(s, label)
            if template is not None and questions is not None:
                self.surveys[survey_id] = SurveyDef(survey_id, template, questions,
                                                    Where(self.r.file, line))

    def _questions(self, s: LineDict, label: str) -> tuple[Question, ...] | None:
        if "questions" not in s:
            self.r.error(s.line, f"missing `{label}.questions`")
            return None
        line = s.line_of("questions")
        items = self.r.sequence(s["questions"], line, f"{label}.questions")
        if items is None:
            return None
        limit = self.policy.limits.survey_max_questions
        if not items:
            self.r.error(line, f"`{label}.questions` is empty")
        elif len(items) > limit:
            self.r.error(line, f"survey has {len(items)} questions; the policy allows at most "
                         f"{limit}", "keep surveys concise")
        questions, seen = [], set()
        for item, item_line in zip(items, items.item_lines):
            q = self.r.mapping(item, item_line, f"{label}.questions item")
            question = self._question(q, f"{label}.questions") if q is not None else None
            if question is None:
                continue
            if question.id in seen:
                self.r.error(item_line, f"duplicate question id {question.id!r}")
            seen.add(question.id)
            questions.append(question)
        return tuple(questions)

    def _question(self, q: LineDict, label: str) -> Question | None:
        r = self.r
        r.check_keys(q, _QUESTION_KEYS, "a question")
        qid = r.text(q, "id", f"{label}.id", required=True, pattern=NAME, hint=_NAME_HINT)
        text = r.text(q, "text", f"{label}.text", required=True)
        qtype = self._enum(q, "type", QuestionType, required=True)
        low = r.integer(q, "min", f"{label}.min", minimum=None)
        high = r.integer(q, "max", f"{label}.max", minimum=None)
        choices: tuple[str, ...] = ()
        if qtype in (QuestionType.choice, QuestionType.text) and ("min" in q or "max" in q):
            r.error(q.line_of("min" if "min" in q else "max"),
                    "`min`/`max` apply to scale and nps questions only")
        if qtype is QuestionType.choice:
            choices = self._choices(q, label) or ()
        elif "choices" in q:
            r.error(q.line_of("choices"), "`choices` apply to choice questions only")
        optional = r.flag(q, "optional", f"{label}.optional", False)
        if None in (qid, text, qtype):
            return None
        question = Question(qid, text, qtype, low, high, choices, optional, Where(r.file, q.line))
        bounds = question.scale()
        if bounds is not None and bounds[0] >= bounds[1]:
            r.error(q.line_of("min" if "min" in q else "max"),
                    f"question {qid!r}: min ({bounds[0]}) must be below max ({bounds[1]})")
        return question

    def _choices(self, q: LineDict, label: str) -> tuple[str, ...] | None:
        if "choices" not in q:
            self.r.error(q.line, "a choice question needs `choices`", "list the answers under `choices:`")
            return None
        items = self.r.sequence(q["choices"], q.line_of("choices"), f"{label}.choices")
        if items is None:
            return None
        if len(items) < 2 or not all(isinstance(c, (str, int)) and str(c).strip() for c in items):
            self.r.error(q.line_of("choices"), "`choices` must list at least two non-empty answers")
            return None
        return tuple(str(c) for c in items)

    # ------------------------------------------------------------ steps

    def _steps(self, value: Any, line: int, label: str) -> tuple[Step, ...]:
        items = self.r.sequence(value, line, label)
        steps = []
        for item, item_line in zip(items or (), getattr(items, "item_lines", ())):
            m = self.r.mapping(item, item_line, f"{label} item")
            step = self._step(m) if m is not None else None
            if step is not None:
                steps.append(step)
        return tuple(steps)

    def _step(self, m: LineDict) -> Step | None:
        r = self.r
        kinds = [k for k in _KINDS if k in m and k != "if"]
        if "if" in m and "send" not in m and "survey" not in m:
            kinds.insert(0, "if")
        accepted = ", ".join(_KINDS)
        if len(kinds) != 1:
            found = " and ".join(f"`{k}`" for k in kinds)
            r.error(m.line, f"a step has exactly one kind; this one has {found or 'none'}",
                    f"step kinds: {accepted}; `if:` beside send or survey is its condition, "
                    "other steps go under `if:`/`then:`")
            return None
        kind = kinds[0]
        label, extra = _KINDS[kind]
        allowed = (kind, *extra)
        for key in m:
            if key not in allowed:
                r.error(m.line, f"unknown key `{key}` in a {kind} step",
                        did_you_mean(key, allowed, noun=f"a {kind} step takes"))
        self.counts[label] += 1
        step_id = self._step_id(m, kind, f"{label}-{self.counts[label]}")
        where = Where(r.file, m.line)
        handler: Callable[[LineDict, str, Where], Step | None] = getattr(self, f"_{kind}")
        return handler(m, step_id, where)

    def _step_id(self, m: LineDict, kind: str, numbered: str) -> str:
        if "id" in m:
            step_id = self.r.text(m, "id", "id", pattern=STEP_ID, hint=_NAME_HINT) or numbered
        elif kind in ("send", "survey") and isinstance(m[kind], str):
            step_id = m[kind]
        else:
            step_id = numbered
        if step_id in self.ids:
            self.r.error(m.line, f"duplicate step id {step_id!r} (first at line "
                         f"{self.ids[step_id]})", "give one of them an `id:`")
        else:
            self.ids[step_id] = m.line
        return step_id

    def _template_name(self, m: LineDict, key: str, label: str, *,
                       required: bool = False) -> str | None:
        value = m.get(key)
        hint = _NAME_HINT + ": templates/NAME.html.j2"
        if isinstance(value, str) and value.endswith((".j2", ".html")):
            hint = f"write the name without its extension: {value.split('.')[0]}"
        return self.r.text(m, key, label, required=required, pattern=NAME, hint=hint)

    def _send(self, m: LineDict, step_id: str, where: Where) -> Send | None:
        template = self._template_name(m, "send", "send")
        condition = self._condition(m, "if")
        expire = self.r.duration(m, "expire_after", "expire_after")
        return Send(step_id, template, condition, expire, where) if template else None

    def _survey(self, m: LineDict, step_id: str, where: Where) -> Survey | None:
        survey = self.r.text(m, "survey", "survey", pattern=NAME, hint=_NAME_HINT)
        condition = self._condition(m, "if")
        expire = self.r.duration(m, "expire_after", "expire_after")
        if survey is None:
            return None
        self.used_surveys.add(survey)
        if self.category is Category.transactional:
            self.r.error(where.line, "a transactional journey cannot send a survey",
                         "surveys are marketing: move it to a marketing journey (SPEC §5)")
        if survey not in self.surveys:
            if survey in self.declared_surveys:
                return None
            known = list(self.surveys)
            self.r.error(where.line, f"survey {survey!r} is not defined under `surveys:`",
                         did_you_mean(survey, known, noun="defined") or "define it under `surveys:`")
            return None
        return Survey(step_id, survey, condition, expire, where)

    def _wait(self, m: LineDict, step_id: str, where: Where) -> Wait | None:
        duration = self.r.duration(m, "wait", "wait", required=True)
        at = self.r.clock(m, "at", "at")
        return Wait(step_id, duration, at, where) if duration else None

    def _wait_for(self, m: LineDict, step_id: str, where: Where) -> WaitFor | None:
        event = self.r.text(m, "wait_for", "wait_for", pattern=EVENT_TYPE, hint=_EVENT_HINT)
        timeout = self.r.duration(m, "timeout", "timeout")
        return WaitFor(step_id, event, timeout, where) if event else None

    def _if(self, m: LineDict, step_id: str, where: Where) -> If | None:
        condition = self._condition(m, "if")
        if "if" in m and m["if"] is None:
            self.r.error(where.line, "`if` needs an expression")
        if "then" not in m:
            self.r.error(where.line, "an `if` step needs `then:`", "list the steps to run when it is true under `then:`")
        then = self._steps(m.get("then"), m.line_of("then"), "then") if "then" in m else ()
        otherwise = self._steps(m["else"], m.line_of("else"), "else") if "else" in m else ()
        return If(step_id, condition, then, otherwise, where) if condition else None

    def _alert(self, m: LineDict, step_id: str, where: Where) -> Alert | None:
        message = self.r.text(m, "alert", "alert", hint='a message, like "Unhappy {{ customer.email }}"')
        if message is None:
            return None
        try:
            _ALERTS.from_string(message)
        except TemplateSyntaxError as exc:
            self.r.error(where.line, f"`alert` message does not compile: {exc.message}")
            return None
        return Alert(step_id, message, where)

    def _start(self, m: LineDict, step_id: str, where: Where) -> Start | None:
        target = self.r.text(m, "start", "start", pattern=JOURNEY_ID, hint=_ID_HINT)
        return Start(step_id, target, where) if target else None

    def _exit(self, m: LineDict, step_id: str, where: Where) -> Exit | None:
        value = m["exit"]
        if value is True:
            return Exit(step_id, where=where)
        if isinstance(value, str) and value.strip():
            return Exit(step_id, value.strip(), where)
        self.r.error(where.line, f"`exit` takes a reason or `true`, not {value!r}",
                     'exit: "bought already"')
        return None
