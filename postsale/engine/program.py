"""A journey's step tree flattened into a linear program with forward jumps.

A run stores one integer, ``step_index``, instead of a path through nested ``if`` blocks, so
that a run row stays a pointer and ``next_run_at``. ``If`` becomes a ``Branch`` that falls
through into its then-block or jumps to its else-block; the end of a non-empty then-block is a
``Jump`` past the else-block::

    if c then [A, B] else [C]      0 Branch(if, orelse=4, end=5)
                                   1 Do(A)
                                   2 Do(B)
                                   3 Jump(if, to=5)
                                   4 Do(C)
                                   5 ...

Every jump goes forward, so one pass over a program always terminates. ``len(program)`` is
the "finished" pointer. A run keeps the journey version it entered with, so its pointer stays
meaningful for the life of the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from postsale.spec.model import If, Journey, Step


@dataclass(frozen=True)
class Do:
    """Execute a leaf step (anything but ``If``)."""
    step: Step


@dataclass(frozen=True)
class Branch:
    """Evaluate ``step.condition``: true falls through, false goes to ``orelse``; an expression
    error skips the whole ``If`` by going to ``end``."""
    step: If
    orelse: int
    end: int


@dataclass(frozen=True)
class Jump:
    """The end of a then-block: skip the else-block."""
    step: If
    to: int


Instruction = Union[Do, Branch, Jump]


@dataclass(frozen=True)
class Program:
    journey_id: str
    instructions: tuple[Instruction, ...]

    def __len__(self) -> int:
        return len(self.instructions)

    def __getitem__(self, index: int) -> Instruction:
        return self.instructions[index]

    def step_at(self, index: int) -> Step | None:
        """The step the pointer is on (None at the end or beyond)."""
        if 0 <= index < len(self.instructions):
            return self.instructions[index].step
        return None


def compile_program(journey: Journey) -> Program:
    out: list[Instruction | None] = []
    _emit(journey.steps, out)
    assert all(ins is not None for ins in out)
    return Program(journey.id, tuple(out))  # type: ignore[arg-type]


def _emit(steps: tuple[Step, ...], out: list[Instruction | None]) -> None:
    for step in steps:
        if not isinstance(step, If):
            out.append(Do(step))
            continue
        branch_at = len(out)
        out.append(None)                      # patched once the block sizes are known
        _emit(step.then, out)
        if step.otherwise:
            jump_at = len(out)
            out.append(None)
            orelse = len(out)
            _emit(step.otherwise, out)
            out[jump_at] = Jump(step, len(out))
        else:
            orelse = len(out)
        out[branch_at] = Branch(step, orelse, len(out))


_cache: dict[tuple, Program] = {}


def program_for(journey: Journey) -> Program:
    """The program of this journey version, compiled once per (id, content_hash).

    Journeys built in code (tests) may have no content hash: they are keyed by their steps,
    so that two different journeys sharing an id never share a program.
    """
    key = (journey.id, journey.content_hash) if journey.content_hash else (journey.id, journey.steps)
    program = _cache.get(key)
    if program is None:
        program = _cache[key] = compile_program(journey)
    return program
