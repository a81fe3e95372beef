"""The pure middle of a dispatch batch: raw rows in, rows to write out. No database.

``postsale.store.dispatch`` reads a batch's rows as the DBAPI returns them (``Job``), hands
them to ``decide`` (in this process, or part of them in a worker process:
``postsale.store.dispatch_workers``), and writes what comes back, in order. Everything between
is here: converting the rows (JSON, datetimes), running the engine and the renderer for each
customer, and turning each decision into the DBAPI parameters of its run update, timeline row
and outbox row. A worker and the dispatcher run this same code on the same catalogue,
templates and secret, so the rows do not depend on who decided them.

What the batch must do with the database in between (``enroll`` for a ``start`` step) and what
goes into the report come back as ordered records, replayed by the dispatcher.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, NamedTuple, Sequence

from sqlalchemy.engine import Dialect

from models import Customer as CustomerRow
from models import Event as EventRow
from models import Message, Run, Timeline
from postsale.engine import advance_customer, message_id_for, program_for
from postsale.engine.types import (Alerted, CustomerState, Exited, Held, RunState, Sent, SentRecord, Skipped,
                                   StartJourney, Suppressed)
from postsale.events import Customer
from postsale.render.types import Renderer
from postsale.spec.catalog import Catalog
from postsale.spec.model import Category, Journey, WaitFor
from postsale.store.dbapi import Columns
from postsale.store.runs import aware, ended_values, outcome_values, state_values, timeline_values, to_state

# what deciding a run reads of it, and of its customer (the SELECTs' column order)
RUN_COLUMNS = ("id", "customer_id", "journey_id", "version_id", "status", "step_index", "step_id",
               "next_run_at", "entered_at", "waiting_for", "trigger_event_id", "context")
CUSTOMER_COLUMNS = ("id", "email", "name", "timezone", "locale", "attributes", "open_tickets")
TIMELINE_COLUMNS = ("at", "customer_id", "journey_id", "run_id", "step_id", "action", "template",
                    "subject", "reason")
OUTBOX_COLUMNS = ("id", "run_id", "step_id", "customer_id", "journey_id", "touchpoint", "category",
                  "is_survey", "survey_id", "template", "to_email", "to_name", "from_email", "reply_to",
                  "subject", "html", "text_body", "headers", "status", "created_at")
RUN_ID_KEY = "run_id_"   # the WHERE parameter of a run update (not a column it sets)


class RunRow(NamedTuple):
    """A run as read, converted: what ``to_state`` and ``state_values`` read by attribute."""
    id: str
    customer_id: str
    journey_id: str
    version_id: int
    status: str
    step_index: int
    step_id: str | None
    next_run_at: datetime | None
    entered_at: datetime | None
    waiting_for: str | None
    trigger_event_id: str | None
    context: dict


class Job(NamedTuple):
    """One customer of a batch, as read: DBAPI rows, picklable as they are."""
    customer_id: str
    customer: tuple | None           # CUSTOMER_COLUMNS; None if the row is gone
    runs: list[tuple]                # RUN_COLUMNS, the customer's due runs in read order
    history: list[tuple]             # (created_at, journey_id, category, is_survey)
    suppression: tuple | None        # (reason, scope) of the address, if suppressed
    exits: list[tuple]               # (event type, occurred_at)


class Enroll(NamedTuple):
    """A ``start`` step: the dispatcher enrolls, after writing what was decided before it."""
    journey_id: str
    customer_id: str
    trigger: dict
    answers: dict
    key: str
    trigger_event_id: str | None


@dataclass
class Decided:
    """What deciding some customers produced, in decision order: DBAPI parameter tuples.

    ``runs`` holds (the columns set + ``run_id_``, their values); ``enrolls`` holds
    (timeline rows before it, run updates before it, the enrolment); ``report`` holds
    ``("count", journey, action)``, ``("skip", reason)``, ``("notice", level, line)`` and
    ``("alert", journey, customer, message)`` in the order the decisions were taken.
    """
    timeline: list[tuple] = field(default_factory=list)
    runs: list[tuple[tuple[str, ...], tuple]] = field(default_factory=list)
    outbox: list[tuple] = field(default_factory=list)
    enrolls: list[tuple[int, int, Enroll]] = field(default_factory=list)
    report: list[tuple] = field(default_factory=list)
    customers: int = 0
    runs_advanced: int = 0


class Codec:
    """Rows of one dialect ⇄ Python values, for the columns dispatch reads and writes."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        runs, messages = Run.__table__, Message.__table__
        self.runs = Columns(runs, RUN_COLUMNS, dialect)
        self.customers = Columns(CustomerRow.__table__, CUSTOMER_COLUMNS, dialect)
        self.timeline = Columns(Timeline.__table__, TIMELINE_COLUMNS, dialect)
        self.outbox = Columns(messages, OUTBOX_COLUMNS, dialect)
        updatable = [c.name for c in runs.columns if c.name != "id"]
        run_columns = Columns(runs, updatable, dialect)
        self.run_update = {name: run_columns.bind_one(name) for name in updatable}
        self.message_time = Columns(messages, ("created_at",), dialect).result_one("created_at")
        self.event_time = Columns(EventRow.__table__, ("occurred_at",), dialect).result_one("occurred_at")


_timeline_tuple = operator.itemgetter(*TIMELINE_COLUMNS)


@dataclass
class Decider:
    """Everything deciding needs besides the rows: built once per process."""
    catalog: Catalog
    renderer: Renderer
    codec: Codec

    @property
    def policy(self):
        return self.catalog.policy

    def decide(self, jobs: Sequence[Job], journeys: Mapping[int, Journey | None], now: datetime) -> Decided:
        """Decide each customer of ``jobs`` in order. ``journeys``: each run's version, by version
        id (None: the journey was removed, its runs end)."""
        out = _Out(self.codec, now)
        for job in jobs:
            self._customer(job, journeys, now, out)
        return out.decided

    def _customer(self, job: Job, journeys: Mapping[int, Journey | None], now: datetime, out: "_Out") -> None:
        codec = self.codec
        runs = [RunRow._make(codec.runs.result(raw)) for raw in job.runs]
        out.decided.customers += 1
        reason, scope = job.suppression or (None, None)
        row = codec.customers.result(job.customer) if job.customer is not None else None
        if row is None or not row[1] or scope == "all":   # forgotten: nothing more is sent to this person
            for run in runs:
                out.end(run, "customer forgotten")
            return
        items: list[tuple[RunState, Journey]] = []
        rows_by_id: dict[str, tuple[RunRow, Journey]] = {}
        for run in runs:
            journey = journeys.get(run.version_id)
            if journey is None:
                out.end(run, "journey removed")
                continue
            items.append((to_state(run), journey))
            rows_by_id[run.id] = (run, journey)
        cid, email, name, tz, locale, attributes, open_tickets = row
        at = codec.message_time
        state = CustomerState(
            customer=Customer(id=cid, email=email, name=name, timezone=tz or "UTC", locale=locale,
                              attributes=dict(attributes or {})),
            history=tuple(SentRecord(aware(at(created)), journey_id, Category(category), bool(is_survey))
                          for created, journey_id, category, is_survey in job.history),
            suppressed=reason,
            ticket_open=open_tickets > 0,
            exit_events=tuple((etype, aware(codec.event_time(occurred))) for etype, occurred in job.exits))
        results = advance_customer(items, state, self.policy, now, self.renderer)
        for result in results:
            run, journey = rows_by_id[result.run.run_id]
            self._apply(run, journey, result, state.customer, now, out)
        out.decided.runs_advanced += len(results)

    def _apply(self, run: RunRow, journey: Journey, result, customer: Customer, now: datetime,
               out: "_Out") -> None:
        decided = out.decided
        report = decided.report
        exit_reason = None
        for outcome in result.outcomes:
            if isinstance(outcome, StartJourney):
                target = self.catalog.journeys.get(outcome.journey_id)
                if target is not None:
                    # enroll reads the customer's runs (reentry rules) and writes the timeline
                    # itself: the dispatcher writes what was decided so far first, in order.
                    decided.enrolls.append((len(decided.timeline), len(decided.runs), Enroll(
                        target.id, run.customer_id, result.run.trigger, dict(result.run.answers),
                        f"{run.id}/{outcome.step_id}/{target.id}", run.trigger_event_id)))
                    report.append(("count", target.id, "entered"))
                continue
            out.timeline(outcome_values(outcome, at=now, customer_id=run.customer_id,
                                        journey_id=run.journey_id, run_id=run.id))
            report.append(("count", journey.id, outcome.action))
            if isinstance(outcome, Sent):
                out.outbox(self._message(run, journey, outcome, customer, now))
            elif isinstance(outcome, (Skipped, Suppressed)):
                report.append(("skip", outcome.reason))
                report.append(("notice", "info",
                               f"{customer.id} {journey.id}/{outcome.step_id} {outcome.action}: {outcome.reason}"))
            elif isinstance(outcome, Held):
                report.append(("notice", "info", f"{customer.id} {journey.id}/{outcome.step_id} held: {outcome.reason}"))
            elif isinstance(outcome, Alerted):
                report.append(("notice", "warning", f"ALERT {journey.id}: {outcome.message}"))
                report.append(("alert", journey.id, customer.id, outcome.message))
                if self.policy.ops_email:
                    out.outbox(self._ops_alert(run, journey, outcome, now))
            elif isinstance(outcome, Exited):
                exit_reason = outcome.reason
        step = program_for(journey).step_at(result.run.step_index)
        waiting_for = step.event if isinstance(step, WaitFor) else run.waiting_for
        out.run(run.id, state_values(result.run, run, step_id=step.id if step else None, now=now,
                                     waiting_for=waiting_for, exit_reason=exit_reason))

    def _message(self, run: RunRow, journey: Journey, sent: Sent, customer: Customer, now: datetime) -> tuple:
        """The outbox row of a send, keyed (run, step): inserted with the batch, at most once."""
        policy = self.policy
        sender = policy.sender.transactional_from if (sent.category is Category.transactional
                                                      and policy.sender.transactional_from) else policy.sender.from_
        email = sent.email
        return (sent.message_id, run.id, sent.step_id, customer.id, journey.id, journey.touchpoint.value,
                sent.category.value, sent.is_survey, sent.survey_id, sent.template, customer.email,
                customer.name, sender, policy.sender.reply_to, email.subject, email.html, email.text,
                dict(email.headers), "queued", now)

    def _ops_alert(self, run: RunRow, journey: Journey, alert: Alerted, now: datetime) -> tuple:
        """An operator notice to ``policy.ops_email`` (category ``ops``: never counted in caps)."""
        import html
        policy = self.policy
        text = f"Alert from journey {journey.id} ({journey.name}):\n\n{alert.message}\n\nCustomer: {run.customer_id}\n"
        subject = f"[postsale alert] {journey.id}: {alert.message}"[:200].replace("\n", " ").replace("\r", " ")
        return (message_id_for(run.id, f"{alert.step_id}#ops"), run.id, f"{alert.step_id}#ops", run.customer_id,
                journey.id, journey.touchpoint.value, "ops", False, None, "-", policy.ops_email, "Operations",
                policy.sender.transactional_from or policy.sender.from_, None, subject,
                f"<pre>{html.escape(text)}</pre>", text, {}, "queued", now)


class _Out:
    """Collects a ``Decided``, converting each row to DBAPI parameters as it comes."""

    def __init__(self, codec: Codec, now: datetime) -> None:
        self.codec = codec
        self.now = now
        self.decided = Decided()

    def timeline(self, values: dict[str, Any]) -> None:
        self.decided.timeline.append(self.codec.timeline.bind(_timeline_tuple(values)))

    def outbox(self, row: tuple) -> None:
        self.decided.outbox.append(self.codec.outbox.bind(row))

    def run(self, run_id: str, values: dict[str, Any]) -> None:
        convert = self.codec.run_update
        keys = tuple(values) + (RUN_ID_KEY,)
        params = tuple([convert[k](v) for k, v in values.items()]) + (run_id,)
        self.decided.runs.append((keys, params))

    def end(self, run: RunRow, reason: str) -> None:
        """What ``postsale.store.ingest.end_run`` does to a run, as rows of this batch."""
        self.run(run.id, ended_values(self.now, reason))
        self.timeline(timeline_values(at=self.now, customer_id=run.customer_id, journey_id=run.journey_id,
                                      run_id=run.id, step_id=run.step_id, action="exited", reason=reason))
        self.decided.report.append(("count", run.journey_id, "exited"))
