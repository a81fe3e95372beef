"""Move runs forward at ``now``: the one decision path shared by production and ``simulate``.

``advance`` executes a run's program from its pointer as far as it can at ``now`` (sends,
skips, branches, alerts) and stops at the first thing that needs time or an event: a ``wait``,
a hold (caps, quiet hours, an open ticket), a ``wait_for``, or the end. It returns every
outcome in order and the new ``RunState``; it never reads a clock, a database or the network.

``advance_customer`` advances one customer's due runs one after another in SPEC.md §5 order,
each seeing what the previous ones sent, so that caps and ``min_gap`` hold across journeys.
"""

from __future__ import annotations

from datetime import datetime

from postsale.engine.program import Program, program_for
from postsale.engine.steps import Ctx, execute, message_id_for
from postsale.engine.types import (AdvanceResult, CustomerState, Exited, RunState, RunStatus, Sent,
                                   SentRecord, evolve)
from postsale.render.types import Renderer
from postsale.spec.model import Category, Journey, Policy

__all__ = ["MAX_INSTRUCTIONS", "advance", "advance_customer", "message_id_for"]

# Jumps only go forward, so a program cannot loop; this bounds a pathological journey anyway.
MAX_INSTRUCTIONS = 10_000


def advance(run: RunState, journey: Journey, customer: CustomerState, policy: Policy, now: datetime,
            render: Renderer) -> AdvanceResult:
    """Execute ``run`` from its pointer as far as it can go at ``now``."""
    if now.tzinfo is None:
        raise ValueError("advance needs an aware `now`")
    if run.status.finished:
        return AdvanceResult(run)
    program = program_for(journey)
    ctx = Ctx(run=run, journey=journey, customer=customer, policy=policy, now=now, render=render,
              history=list(customer.history))
    # A goal reached ends the run even if it was not due yet (SPEC.md §3 exit_when).
    if not _exited_on_goal(ctx, program) and not _sleeping(run, now):
        _run(ctx, program)
    return AdvanceResult(ctx.run, tuple(ctx.outcomes))


def _run(ctx: Ctx, program: Program) -> None:
    for _ in range(MAX_INSTRUCTIONS):
        if ctx.run.step_index >= len(program):
            ctx.emit(Exited("completed"))
            ctx.update(step_index=len(program), status=RunStatus.completed, next_run_at=None,
                       wait_until=None, due_since=None)
            return
        if not execute(ctx, program[ctx.run.step_index]):
            return
        if _exited_on_goal(ctx, program):
            return
    ctx.update(status=RunStatus.active, next_run_at=ctx.now)   # carry on at the next tick


def _sleeping(run: RunState, now: datetime) -> bool:
    """An active run asked for before its time (a ``wait`` already moved its pointer on)."""
    return run.status is RunStatus.active and run.next_run_at is not None and now < run.next_run_at


def _exited_on_goal(ctx: Ctx, program: Program) -> bool:
    goals = ctx.journey.exit_when
    if not goals:
        return False
    hits = sorted((at, kind) for kind, at in ctx.customer.exit_events
                  if kind in goals and ctx.run.entered_at <= at <= ctx.now)
    if not hits:
        return False
    step = program.step_at(ctx.run.step_index)
    ctx.emit(Exited(f"exit_when {hits[0][1]}", step.id if step else ""))
    ctx.update(status=RunStatus.exited, next_run_at=None, wait_until=None, due_since=None)
    return True


def advance_customer(items: list[tuple[RunState, Journey]], customer: CustomerState, policy: Policy,
                     now: datetime, render: Renderer) -> list[AdvanceResult]:
    """Advance one customer's due runs in priority order; results come back in that order."""
    history = list(customer.history)
    results: list[AdvanceResult] = []
    for run, journey in sorted(items, key=lambda item: _priority(item, now)):
        result = advance(run, journey, evolve(customer, history=tuple(history)), policy, now, render)
        history += [SentRecord(now, journey.id, o.category, o.is_survey)
                    for o in result.outcomes if isinstance(o, Sent)]
        results.append(result)
    return results


def _priority(item: tuple[RunState, Journey], now: datetime) -> tuple:
    """SPEC.md §5: touchpoint, transactional first, earliest due, journey id (run id: stable)."""
    run, journey = item
    return (journey.touchpoint.priority, journey.category is not Category.transactional,
            run.next_run_at or now, journey.id, run.run_id)
