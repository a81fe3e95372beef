"""The journey language as frozen objects (SPEC.md §3 and §5).

YAML is read at the edge (``postsale.spec.journeys``, ``postsale.spec.policy``, ``postsale.spec.catalog``) into these dataclasses; the engine never
sees a raw dict. Every object remembers the file and line it came from, so that a problem
found later (at validation or at run time) can still say ``file:line: message``.

Steps are a tagged union: ``Step = Send | Survey | Wait | WaitFor | If | Alert | Start | Exit``.
Each has an ``id`` unique within its journey (given, or defaulted as the loader documents),
and the engine handles each kind in its own small function.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Union


class Touchpoint(str, enum.Enum):
    pre_sale = "pre_sale"
    immediate_post_sale = "immediate_post_sale"
    ongoing_care = "ongoing_care"
    issue_resolution = "issue_resolution"

    @property
    def priority(self) -> int:
        """Lower goes first when messages compete (SPEC.md §1)."""
        return _PRIORITY[self]


_PRIORITY = {
    Touchpoint.issue_resolution: 0,
    Touchpoint.immediate_post_sale: 1,
    Touchpoint.ongoing_care: 2,
    Touchpoint.pre_sale: 3,
}


class Category(str, enum.Enum):
    marketing = "marketing"
    transactional = "transactional"


class QuestionType(str, enum.Enum):
    scale = "scale"
    nps = "nps"
    choice = "choice"
    text = "text"


@dataclass(frozen=True)
class Where:
    file: str = ""
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


# ---------------------------------------------------------------- steps

@dataclass(frozen=True)
class Send:
    id: str
    template: str
    condition: str | None = None          # YAML `if`
    expire_after: timedelta | None = None
    where: Where = Where()


@dataclass(frozen=True)
class Survey:
    """Sends the survey email of ``journey.surveys[survey]`` (always marketing)."""
    id: str
    survey: str
    condition: str | None = None
    expire_after: timedelta | None = None
    where: Where = Where()


@dataclass(frozen=True)
class Wait:
    id: str
    duration: timedelta
    at: time | None = None                # then the next HH:MM on the customer's wall clock
    where: Where = Where()


@dataclass(frozen=True)
class WaitFor:
    id: str
    event: str                            # any event type
    timeout: timedelta | None = None      # None: wait as long as it takes
    where: Where = Where()


@dataclass(frozen=True)
class If:
    id: str
    condition: str
    then: tuple["Step", ...] = ()
    otherwise: tuple["Step", ...] = ()    # YAML `else`
    where: Where = Where()


@dataclass(frozen=True)
class Alert:
    id: str
    message: str                          # a template string (sandboxed)
    where: Where = Where()


@dataclass(frozen=True)
class Start:
    id: str
    journey: str
    where: Where = Where()


@dataclass(frozen=True)
class Exit:
    id: str
    reason: str = "exit step"
    where: Where = Where()


Step = Union[Send, Survey, Wait, WaitFor, If, Alert, Start, Exit]
SENDING_STEPS = (Send, Survey)


# ---------------------------------------------------------------- surveys

@dataclass(frozen=True)
class Question:
    id: str
    text: str
    type: QuestionType
    min: int | None = None                # scale: default 1..5; nps: 0..10
    max: int | None = None
    choices: tuple[str, ...] = ()         # choice
    optional: bool = False
    where: Where = Where()

    def scale(self) -> tuple[int, int] | None:
        """The inclusive score range of a scale or nps question; None for choice and text."""
        if self.type is QuestionType.nps:
            return (0 if self.min is None else self.min, 10 if self.max is None else self.max)
        if self.type is QuestionType.scale:
            return (1 if self.min is None else self.min, 5 if self.max is None else self.max)
        return None


@dataclass(frozen=True)
class SurveyDef:
    id: str
    template: str
    questions: tuple[Question, ...]
    where: Where = Where()


# ---------------------------------------------------------------- journey

@dataclass(frozen=True)
class Reentry:
    """``never`` | ``always`` | ``after 30d``."""
    mode: str = "never"                   # never | always | after
    after: timedelta | None = None


@dataclass(frozen=True)
class Trigger:
    event: str
    condition: str | None = None
    where: Where = Where()


@dataclass(frozen=True)
class Journey:
    id: str
    name: str
    touchpoint: Touchpoint
    category: Category
    trigger: Trigger
    steps: tuple[Step, ...]
    reentry: Reentry = Reentry()
    exit_when: tuple[str, ...] = ()       # event types; pre_sale gets order.placed by default
    surveys: dict[str, SurveyDef] = field(default_factory=dict)
    where: Where = Where()
    source: str = ""                      # the YAML text: a run keeps the version it entered with
    content_hash: str = ""                # sha256 of source

    def __hash__(self) -> int:            # dict field: hash by identity of version
        return hash((self.id, self.content_hash))

    def walk(self) -> list[Step]:
        """Every step, nested ones included, in document order."""
        out: list[Step] = []

        def visit(steps: tuple[Step, ...]) -> None:
            for step in steps:
                out.append(step)
                if isinstance(step, If):
                    visit(step.then)
                    visit(step.otherwise)

        visit(self.steps)
        return out

    def templates(self) -> set[str]:
        """Every template this journey can send (sends and survey templates)."""
        names = {s.template for s in self.walk() if isinstance(s, Send)}
        names |= {self.surveys[s.survey].template for s in self.walk()
                  if isinstance(s, Survey) and s.survey in self.surveys}
        return names


# ---------------------------------------------------------------- policy

@dataclass(frozen=True)
class Cap:
    max: int
    per: timedelta
    min_gap: timedelta | None = None


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time


@dataclass(frozen=True)
class Limits:
    subject_max_chars: int = 60
    body_max_words: int = 150
    survey_max_questions: int = 3


@dataclass(frozen=True)
class Sender:
    from_: str = "Postsale <hello@postsale.example>"
    reply_to: str | None = None
    transactional_from: str | None = None


@dataclass(frozen=True)
class Policy:
    sender: Sender = Sender()
    postal_address: str = ""
    ops_email: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    marketing_cap: Cap | None = Cap(max=3, per=timedelta(days=7), min_gap=timedelta(hours=20))
    journey_cap: Cap | None = Cap(max=2, per=timedelta(days=7))
    survey_cap: Cap | None = Cap(max=1, per=timedelta(days=30))
    quiet_hours: QuietHours | None = QuietHours(time(21, 0), time(8, 0))
    hold_marketing_while_ticket_open: bool = True
    limits: Limits = Limits()
    where: Where = Where()
