"""Flattening nested ``if`` blocks into a program with forward jumps."""

from __future__ import annotations

from dataclasses import replace

from postsale.engine import program_for
from postsale.engine.program import Branch, Do, Jump
from tests.factories import if_, make_journey, send, wait


def shape(program):
    out = []
    for ins in program.instructions:
        if isinstance(ins, Do):
            out.append(ins.step.id)
        elif isinstance(ins, Branch):
            out.append(("branch", ins.step.id, ins.orelse, ins.end))
        else:
            assert isinstance(ins, Jump)
            out.append(("jump", ins.step.id, ins.to))
    return out


def test_a_flat_journey_is_one_instruction_per_step():
    journey = make_journey(send("a"), wait("1d", id="w"), send("b"))
    assert shape(program_for(journey)) == ["a", "w", "b"]


def test_then_jumps_past_else():
    journey = make_journey(send("a"), if_("x", then=[send("b"), send("c")], otherwise=[send("d")]),
                           send("e"))
    assert shape(program_for(journey)) == ["a", ("branch", "if", 5, 6), "b", "c", ("jump", "if", 6),
                                           "d", "e"]


def test_if_without_else_needs_no_jump():
    journey = make_journey(if_("x", then=[send("b")]), send("e"))
    assert shape(program_for(journey)) == [("branch", "if", 2, 2), "b", "e"]


def test_nested_ifs_as_in_the_spec_example():
    journey = make_journey(
        if_("low", id="low", then=[send("sorry")],
            otherwise=[if_("high", id="high", then=[send("review")])]))
    assert shape(program_for(journey)) == [("branch", "low", 3, 5), "sorry", ("jump", "low", 5),
                                           ("branch", "high", 5, 5), "review"]


def test_empty_then_block():
    journey = make_journey(if_("x", then=[], otherwise=[send("d")]), send("e"))
    assert shape(program_for(journey)) == [("branch", "if", 2, 3), ("jump", "if", 3), "d", "e"]


def test_every_jump_goes_forward():
    journey = make_journey(if_("a", id="a", then=[if_("b", id="b", then=[send("x")], otherwise=[send("y")])],
                               otherwise=[send("z")]), send("w"))
    for index, ins in enumerate(program_for(journey).instructions):
        if isinstance(ins, Branch):
            assert index < ins.orelse <= ins.end
        if isinstance(ins, Jump):
            assert ins.to > index


def test_step_at_and_the_end_pointer():
    program = program_for(make_journey(send("a"), send("b")))
    assert len(program) == 2
    assert program.step_at(1).id == "b"
    assert program.step_at(2) is None


def test_programs_are_cached_per_version():
    journey = make_journey(send("a"))
    assert program_for(journey) is program_for(replace(journey))
    edited = make_journey(send("a"), send("b"))
    assert edited.content_hash != journey.content_hash
    assert len(program_for(edited)) == 2


def test_journeys_without_a_hash_never_share_a_program():
    one = replace(make_journey(send("a")), content_hash="")
    two = replace(make_journey(send("a"), send("b")), content_hash="")
    assert len(program_for(one)) == 1 and len(program_for(two)) == 2
