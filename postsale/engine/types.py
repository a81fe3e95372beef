"""The engine's inputs and outputs: plain frozen values, no I/O.

``advance(run, journey, customer, policy, now, render)`` (``postsale.engine.advance``) takes a
``RunState``, the frozen ``Journey`` version the run entered with, a ``CustomerState`` (recent
sends, suppression, open ticket) and ``now``; it returns an ``AdvanceResult``: the outcomes to
record and act on, and where the run stands afterwards. Storage and delivery apply results;
``simulate`` and production share this one path.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Union

from postsale.events import Customer
from postsale.render.types import RenderedEmail
from postsale.spec.model import Category, Touchpoint


class RunStatus(str, enum.Enum):
    active = "active"          # due at next_run_at
    waiting = "waiting"        # at a wait_for: woken by the event, or at next_run_at (timeout)
    held = "held"              # marketing held while a ticket is open: woken by ticket.resolved,
                               # or at next_run_at when expire_after runs out
    completed = "completed"
    exited = "exited"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.completed, RunStatus.exited)


@dataclass(frozen=True)
class SentRecord:
    """One email already sent (queued for delivery) to this customer: what caps count."""
    at: datetime
    journey_id: str
    category: Category
    is_survey: bool = False


@dataclass(frozen=True)
class CustomerState:
    customer: Customer
    history: tuple[SentRecord, ...] = ()              # at least the longest cap window
    suppressed: str | None = None                     # reason: unsubscribed | bounced | complained
    ticket_open: bool = False
    # (event type, occurred_at) of this customer's events whose type some journey exits on:
    # `exit_when` is checked again before every step.
    exit_events: tuple[tuple[str, datetime], ...] = ()


@dataclass(frozen=True)
class RunState:
    run_id: str
    journey_id: str
    customer_id: str
    entered_at: datetime
    step_index: int = 0                    # pointer into postsale.engine.program.Program
    status: RunStatus = RunStatus.active
    next_run_at: datetime | None = None
    trigger: dict[str, Any] = field(default_factory=dict)    # Event.scope() of the trigger
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    waited: dict[str, Any] | None = None   # the event that ended the last wait_for (scope form)
    wake_event: dict[str, Any] | None = None   # set by the edge when a wait_for's event arrives
    wait_until: datetime | None = None     # deadline of the current wait_for
    due_since: datetime | None = None      # when the current send first became due (expire_after)
    last_event_at: datetime | None = None  # latest event applied (exit checks ignore older)


# ---------------------------------------------------------------- outcomes (timeline rows)

@dataclass(frozen=True)
class Sent:
    step_id: str
    template: str
    category: Category
    touchpoint: Touchpoint
    email: RenderedEmail
    message_id: str
    is_survey: bool = False
    survey_id: str | None = None
    action: str = "sent"


@dataclass(frozen=True)
class Held:
    step_id: str
    until: datetime | None                 # None: until an event (ticket.resolved)
    reason: str
    action: str = "held"


@dataclass(frozen=True)
class Skipped:
    step_id: str
    reason: str
    action: str = "skipped"


@dataclass(frozen=True)
class Suppressed:
    step_id: str
    reason: str
    action: str = "suppressed"


@dataclass(frozen=True)
class Alerted:
    step_id: str
    message: str
    action: str = "alert"

    @property
    def reason(self) -> str:
        return self.message


@dataclass(frozen=True)
class StartJourney:
    """The edge enrolls the customer in ``journey_id`` carrying this run's context."""
    step_id: str
    journey_id: str
    action: str = "start"


@dataclass(frozen=True)
class Exited:
    reason: str                            # "completed", "exit_when order.refunded", "exit step", ...
    step_id: str = ""
    action: str = "exited"


Outcome = Union[Sent, Held, Skipped, Suppressed, Alerted, StartJourney, Exited]


@dataclass(frozen=True)
class AdvanceResult:
    run: RunState                          # the run after this advance (pointer, status, times)
    outcomes: tuple[Outcome, ...] = ()


_FIELD_NAMES: dict[type, frozenset[str] | None] = {}


def _plain_fields(cls: type) -> frozenset[str] | None:
    """The field names of a dataclass whose ``__init__`` only stores them; None otherwise."""
    if cls not in _FIELD_NAMES:
        plain = not hasattr(cls, "__post_init__") and all(f.init for f in fields(cls))
        _FIELD_NAMES[cls] = frozenset(f.name for f in fields(cls)) if plain else None
    return _FIELD_NAMES[cls]


def make(cls: type, **values: Any) -> Any:
    """``cls(**values)`` for the frozen values above, without calling ``__init__`` when every
    field is given (a frozen ``__init__`` sets each field through ``object.__setattr__``)."""
    names = _plain_fields(cls)
    if names is None or len(values) != len(names) or not names.issuperset(values):
        return cls(**values)
    new = object.__new__(cls)
    new.__dict__.update(values)
    return new


def evolve(value: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` for the frozen values above, without calling ``__init__``.

    It runs a few times a step, and ``__init__`` with every field is most of its cost. For a
    dataclass with no ``__post_init__`` and no ``init=False`` field, copying the fields is all
    ``replace`` does; any other goes through ``replace``. An unknown field is still an error.
    """
    cls = type(value)
    names = _plain_fields(cls)
    if names is None:
        return replace(value, **changes)
    if not names.issuperset(changes):
        raise TypeError(f"{cls.__name__} has no field {sorted(set(changes) - names)[0]!r}")
    new = object.__new__(cls)
    state = new.__dict__
    state.update(value.__dict__)
    state.update(changes)
    return new
