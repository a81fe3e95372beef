from __future__ import annotations

import hashlib
import textwrap
from datetime import time, timedelta

import pytest

from postsale.spec.journeys import parse_journey
from postsale.spec.model import (
    Alert, Category, Exit, If, Limits, Policy, QuestionType, Reentry, Send, Start, Survey,
    Touchpoint, Wait, WaitFor, Where,
)

FILE = "journeys/welcome.yaml"
# A small valid journey; tests append steps or swap a line to make one mistake at a time.
HEADER = """\
journey: welcome
name: Welcome
touchpoint: ongoing_care
trigger:
  event: order.delivered
"""


def parse(text: str, policy: Policy = Policy()):
    return parse_journey(textwrap.dedent(text), FILE, policy=policy)


def with_steps(steps: str, extra: str = "") -> str:
    """HEADER (lines 1-5) + `steps:` on line 6, the given steps from line 7 on."""
    return HEADER + "steps:\n" + textwrap.dedent(steps) + textwrap.dedent(extra)


def errors(text: str, policy: Policy = Policy()):
    journey, problems = parse(text, policy)
    found = [p for p in problems if p.is_error]
    assert journey is None and found, problems
    assert all(p.file == FILE for p in found)
    return found


def one_error(text: str, policy: Policy = Policy()):
    found = errors(text, policy)
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------- the SPEC example

def test_spec_example(spec_journey):
    journey, problems = parse_journey(spec_journey, "journeys/post-purchase.yaml", policy=Policy())
    assert problems == []
    assert journey.id == "post-purchase" and journey.name == "Thank you and first steps"
    assert journey.touchpoint is Touchpoint.immediate_post_sale
    assert journey.category is Category.marketing
    assert journey.trigger.event == "order.placed" and journey.trigger.condition == "data.total > 0"
    assert journey.trigger.where.line == 5
    assert journey.reentry == Reentry("never")
    assert journey.exit_when == ("order.refunded", "order.cancelled")
    assert journey.where == Where("journeys/post-purchase.yaml", 1)
    assert journey.source == spec_journey
    assert journey.content_hash == hashlib.sha256(spec_journey.encode()).hexdigest()

    top = journey.steps
    assert [type(s) for s in top] == [Send, Wait, Send, Wait, Survey, WaitFor, If]
    assert [s.id for s in top] == ["thank_you", "wait-1", "tips", "wait-2", "csat", "wait-for-1", "if-1"]
    assert [s.where.line for s in top] == [14, 15, 17, 21, 22, 23, 25]
    assert top[1] == Wait("wait-1", timedelta(days=2), time(10, 0), Where(journey.where.file, 15))
    tips = top[2]
    assert tips.template == "kettle_tips" and tips.expire_after == timedelta(days=3)
    assert tips.condition.startswith("'kitchen' in")
    assert top[3].at is None
    assert top[5] == WaitFor("wait-for-1", "survey.answered", timedelta(days=5),
                             Where(journey.where.file, 23))

    branch = top[6]
    assert branch.condition.startswith("answers.csat.score is defined")
    assert [(type(s), s.id, s.where.line) for s in branch.then] == [
        (Send, "sorry_we_will_fix", 27), (Alert, "alert-1", 28), (Start, "start-1", 29)]
    assert branch.then[2].journey == "issue-resolution"
    [inner] = branch.otherwise
    assert isinstance(inner, If) and inner.id == "if-2" and inner.where.line == 31
    assert inner.then == (Send("review_invitation", "review_invitation",
                               where=Where(journey.where.file, 33)),)
    assert inner.otherwise == ()

    csat = journey.surveys["csat"]
    assert csat.template == "survey_csat" and csat.where.line == 35
    score, comment = csat.questions
    assert (score.id, score.type, score.min, score.max, score.optional, score.where.line) == (
        "score", QuestionType.scale, 1, 5, False, 38)
    assert (comment.id, comment.type, comment.optional, comment.where.line) == (
        "comment", QuestionType.text, True, 43)
    assert journey.templates() == {"thank_you", "kettle_tips", "sorry_we_will_fix",
                                   "review_invitation", "survey_csat"}


def test_minimal_journey_defaults():
    journey, problems = parse(with_steps("  - send: hello\n"))
    assert problems == []
    assert journey.category is Category.marketing
    assert journey.reentry == Reentry("never", None)
    assert journey.exit_when == ()
    assert journey.surveys == {}
    assert journey.trigger.condition is None
    assert journey.steps == (Send("hello", "hello", where=Where(FILE, 7)),)


# ---------------------------------------------------------------- header

@pytest.mark.parametrize("reentry,expected", [
    ("never", Reentry("never")),
    ("always", Reentry("always")),
    ("after 30d", Reentry("after", timedelta(days=30))),
    ("after 1d12h", Reentry("after", timedelta(days=1, hours=12))),
])
def test_reentry(reentry, expected):
    journey, problems = parse(with_steps("  - send: hi\n", f"entry:\n  reentry: {reentry}\n"))
    assert problems == [] and journey.reentry == expected


@pytest.mark.parametrize("reentry,needle", [("sometimes", "not known"), ("after", "not known"),
                                            ("after soon", "bad duration"), ("30d", "not known")])
def test_bad_reentry(reentry, needle):
    p = one_error(with_steps("  - send: hi\n", f"entry:\n  reentry: {reentry}\n"))
    assert p.line == 9 and needle in p.message


def test_pre_sale_exits_on_order_placed_by_default():
    text = with_steps("  - send: hi\n").replace("ongoing_care", "pre_sale")
    journey, _ = parse(text)
    assert journey.exit_when == ("order.placed",)


def test_pre_sale_exit_when_as_written():
    text = with_steps("  - send: hi\n").replace("ongoing_care", "pre_sale")
    journey, _ = parse(text + "exit_when: []\n")
    assert journey.exit_when == ()
    journey, _ = parse(text + "exit_when:\n  - event: lead.lost\n")
    assert journey.exit_when == ("lead.lost",)


def test_entry_unknown_key():
    p = one_error(with_steps("  - send: hi\n", "entry:\n  renetry: always\n"))
    assert p.line == 9 and p.hint.startswith("did you mean `reentry`?")


def test_exit_when_errors():
    found = errors(with_steps("  - send: hi\n", """\
        exit_when:
          - event: refunded
          - evnt: order.cancelled
          - order.cancelled
        """))
    assert [(p.line, p.message.split(" ")[0]) for p in found] == [
        (9, "`exit_when.event`"), (10, "unknown"), (10, "missing"), (11, "`exit_when")]


def test_transactional_category():
    journey, _ = parse(with_steps("  - send: hi\n", "category: transactional\n"))
    assert journey.category is Category.transactional


@pytest.mark.parametrize("old,new,line,needle", [
    ("journey: welcome", "journey: Welcome_1", 1, "`journey`"),
    ("journey: welcome", "journey: -welcome", 1, "`journey`"),
    ("name: Welcome", "name: ''", 2, "`name`"),
    ("name: Welcome", "nam: Welcome", 2, "unknown key `nam`"),
    ("touchpoint: ongoing_care", "touchpoint: ongoing-care", 3, "`touchpoint`"),
    ("  event: order.delivered", "  event: delivered", 5, "trigger.event"),
    ("  event: order.delivered", "  event: order.delivered\n  if: 'data.total >'", 6, "trigger.if"),
    ("  event: order.delivered", "  event: order.delivered\n  when: x", 6, "unknown key `when`"),
    ("trigger:\n  event: order.delivered\n", "trigger: order.delivered\n\n", 4, "mapping"),
])
def test_header_errors(old, new, line, needle):
    text = with_steps("  - send: hi\n").replace(old, new)
    found = errors(text)
    assert any(p.line == line and needle in p.message for p in found), found


def test_touchpoint_hint():
    p = one_error(with_steps("  - send: hi\n").replace("ongoing_care", "ongoing-care"))
    assert p.hint.startswith("did you mean `ongoing_care`?")


def test_missing_required_header_keys():
    found = errors("journey: x\nsteps:\n  - send: hi\n")
    assert {p.message for p in found} == {"missing `name`", "missing `touchpoint`", "missing `trigger`"}
    assert {p.line for p in found} == {1}


def test_unknown_top_level_key_with_hint():
    p = one_error(with_steps("  - send: hi\n", "survey:\n  csat: {}\n"))
    assert p.line == 8 and p.message == "unknown key `survey` in a journey"
    assert p.hint.startswith("did you mean `surveys`?")


def test_not_a_journey_file():
    assert one_error("- send: hi\n").line == 1
    found = errors("name: only\n")
    assert [p.message for p in found] == ["missing `journey`", "missing `touchpoint`",
                                          "missing `trigger`", "missing `steps`"]
    assert one_error("").line == 1


def test_yaml_error_is_reported():
    p = one_error(with_steps("  - send: [hi\n"))
    assert "YAML" in p.message


def test_steps_required_and_non_empty():
    assert one_error(HEADER).message == "missing `steps`"
    assert one_error(HEADER + "steps: []\n").line == 6
    assert "list" in one_error(HEADER + "steps: {send: hi}\n").message


# ---------------------------------------------------------------- steps

def test_every_step_kind():
    journey, problems = parse(with_steps("""\
        - send: hello
          if: "customer.attributes.vip"
          expire_after: 1d
        - wait: 1d12h
          at: "09:30"
        - wait_for: support.replied
        - alert: "Check {{ customer.email }}"
        - start: other-journey
        - exit: "bought already"
        - exit: true
        - id: custom
          wait: 30m
        """))
    assert problems == []
    send, wait, wait_for, alert, start, exit1, exit2, custom = journey.steps
    assert send == Send("hello", "hello", "customer.attributes.vip", timedelta(days=1), Where(FILE, 7))
    assert wait == Wait("wait-1", timedelta(days=1, hours=12), time(9, 30), Where(FILE, 10))
    assert wait_for == WaitFor("wait-for-1", "support.replied", None, Where(FILE, 12))
    assert alert == Alert("alert-1", "Check {{ customer.email }}", Where(FILE, 13))
    assert start == Start("start-1", "other-journey", Where(FILE, 14))
    assert exit1 == Exit("exit-1", "bought already", Where(FILE, 15))
    assert exit2 == Exit("exit-2", "exit step", Where(FILE, 16))
    assert custom == Wait("custom", timedelta(minutes=30), None, Where(FILE, 17))


def test_wait_for_timeout():
    journey, problems = parse(with_steps("""\
        - wait_for: survey.answered
          timeout: 5d
        - wait_for: custom.thing
          timeout: null
        """))
    assert problems == []
    assert [s.timeout for s in journey.steps] == [timedelta(days=5), None]
    p = one_error(with_steps("- wait_for: survey.answered\n  timeout: five days\n"))
    assert p.line == 8 and "timeout" in p.message


def test_default_ids_count_nested_and_named_steps():
    journey, problems = parse(with_steps("""\
        - wait: 1d
        - if: "true"
          then:
            - wait: 2d
            - id: named
              wait: 3d
          else:
            - if: "false"
              then: [{wait: 4d}]
        - wait: 5d
        """))
    assert problems == []
    assert [s.id for s in journey.walk()] == ["wait-1", "if-1", "wait-2", "named", "if-2",
                                             "wait-4", "wait-5"]


def test_duplicate_step_ids():
    found = errors(with_steps("""\
        - send: hello
        - wait: 1d
        - if: "true"
          then:
            - send: hello
        """))
    [p] = found
    assert p.line == 11 and "duplicate step id 'hello'" in p.message
    assert p.hint == "give one of them an `id:`"


def test_explicit_id_clashing_with_a_default_one():
    p = one_error(with_steps("- wait: 1d\n- id: wait-1\n  send: hello\n"))
    assert p.line == 8 and "'wait-1'" in p.message


def test_explicit_id_fixes_the_clash():
    journey, problems = parse(with_steps("- send: hello\n- send: hello\n  id: hello-again\n"))
    assert problems == [] and [s.id for s in journey.steps] == ["hello", "hello-again"]


@pytest.mark.parametrize("step,needle", [
    ("- send: a\n  wait: 1d", "`send` and `wait`"),
    ("- wait: 1d\n  if: 'true'", "`if` and `wait`"),
    ("- id: lonely", "none"),
    ("- {}", "none"),
])
def test_step_needs_exactly_one_kind(step, needle):
    p = one_error(with_steps(step + "\n"))
    assert p.line == 7 and needle in p.message
    assert "send, survey, wait, wait_for, if, alert, start, exit" in p.hint


def test_unknown_step_key_names_step_line_and_accepted_keys():
    p = one_error(with_steps("- send: hello\n  expire_afer: 2d\n"))
    assert p.line == 7 and p.message == "unknown key `expire_afer` in a send step"
    assert p.hint == "did you mean `expire_after`? a send step takes: send, id, if, expire_after"
    p = one_error(with_steps("- wait_for: order.shipped\n  timout: 2d\n"))
    assert p.line == 7 and "did you mean `timeout`?" in p.hint


def test_step_must_be_a_mapping():
    p = one_error(with_steps("- send hello\n"))
    assert p.line == 7 and "mapping" in p.message


def test_if_beside_send_is_a_condition():
    journey, _ = parse(with_steps("- send: hello\n  if: 'data.total > 10'\n"))
    assert journey.steps[0].condition == "data.total > 10"


def test_if_needs_then():
    p = one_error(with_steps("- if: 'true'\n  else: [{send: x}]\n"))
    assert p.line == 7 and "`then:`" in p.message


def test_if_branches_must_be_lists():
    p = one_error(with_steps("- if: 'true'\n  then: {send: x}\n"))
    assert p.line == 8 and "list" in p.message


def test_nested_step_errors_have_their_own_lines():
    found = errors(with_steps("""\
        - if: "true"
          then:
            - send: ok
            - wait: never
          else:
            - wait: 1d
              at: "25:00"
        """))
    assert [p.line for p in found] == [10, 13]


@pytest.mark.parametrize("step,line,needle", [
    ("- send: hello\n  if: 'data.total >'", 8, "does not compile"),
    ("- if: 'data.total ++ 1 )'\n  then: [{send: x}]", 7, "does not compile"),
    ("- alert: 'Bad {{ customer.email '", 7, "does not compile"),
    ("- alert: ''", 7, "alert"),
    ("- wait: 2", 7, "needs a unit"),
    ("- wait: 2x", 7, "bad duration"),
    ("- wait: 1d\n  at: '24:00'", 8, "HH:MM"),
    ("- wait: 1d\n  at: 10am", 8, "HH:MM"),
    ("- send: hello\n  expire_after: soon", 8, "expire_after"),
    ("- send: hello.html.j2", 7, "`send`"),
    ("- send: ../secrets", 7, "`send`"),
    ("- wait_for: answered", 7, "wait_for"),
    ("- start: Other_Journey", 7, "start"),
    ("- exit: false", 7, "`exit`"),
    ("- id: 'has space'\n  send: hello", 7, "`id`"),
])
def test_step_errors(step, line, needle):
    found = errors(with_steps(step + "\n"))
    assert any(p.line == line and needle in p.message for p in found), found


def test_template_extension_hint():
    p = one_error(with_steps("- send: thank_you.html.j2\n"))
    assert "without its extension: thank_you" in p.hint


def test_unquoted_clock_time_works():
    journey, _ = parse(with_steps("- wait: 1d\n  at: 10:00\n"))
    assert journey.steps[0].at == time(10, 0)


# ---------------------------------------------------------------- surveys

SURVEY = """\
surveys:
  nps:
    template: survey_nps
    questions:
      - id: score
        text: How likely are you to recommend us?
        type: nps
      - id: reason
        text: Why?
        type: choice
        choices: [Price, Quality, Service]
        optional: true
"""


def test_survey_definitions():
    journey, problems = parse(with_steps("- survey: nps\n", SURVEY))
    assert problems == []
    assert journey.steps == (Survey("nps", "nps", where=Where(FILE, 7)),)
    score, reason = journey.surveys["nps"].questions
    assert score.type is QuestionType.nps and score.scale() == (0, 10)
    assert reason.choices == ("Price", "Quality", "Service") and reason.optional


def test_survey_step_options():
    journey, problems = parse(with_steps(
        "- survey: nps\n  id: ask\n  if: 'true'\n  expire_after: 2d\n", SURVEY))
    assert problems == []
    assert journey.steps[0] == Survey("ask", "nps", "true", timedelta(days=2), Where(FILE, 7))


def test_undefined_survey():
    p = one_error(with_steps("- survey: npss\n", SURVEY))
    assert p.line == 7 and "'npss' is not defined" in p.message
    assert p.hint.startswith("did you mean `nps`?")
    p = one_error(with_steps("- survey: csat\n"))
    assert p.hint == "define it under `surveys:`"


def test_transactional_journey_cannot_survey():
    p = one_error(with_steps("- send: receipt\n- survey: nps\n", "category: transactional\n" + SURVEY))
    assert p.line == 8 and "transactional" in p.message


def test_too_many_questions_is_an_error_at_questions_line():
    four = SURVEY + "".join(f"      - {{id: q{i}, text: Q{i}, type: text}}\n" for i in range(2))
    p = one_error(with_steps("- survey: nps\n", four))
    assert p.line == 11 and p.hint == "keep surveys concise"
    assert "4 questions" in p.message and "at most 3" in p.message
    generous = Policy(limits=Limits(survey_max_questions=4))
    journey, problems = parse(with_steps("- survey: nps\n", four), generous)
    assert problems == [] and len(journey.surveys["nps"].questions) == 4


def test_unused_survey_is_a_warning():
    journey, problems = parse(with_steps("- send: hi\n", SURVEY))
    assert journey is not None
    [p] = problems
    assert p.severity == "warning" and p.line == 9


@pytest.mark.parametrize("questions,line,needle", [
    ("- {id: a, text: A, type: text}\n- {id: a, text: B, type: text}", 13, "duplicate question id 'a'"),
    ("- {id: a, text: A, type: choice}", 12, "needs `choices`"),
    ("- {id: a, text: A, type: choice, choices: [Only]}", 12, "at least two"),
    ("- {id: a, text: A, type: text, choices: [x, y]}", 12, "choice questions only"),
    ("- {id: a, text: A, type: scale, min: 5, max: 1}", 12, "must be below"),
    ("- {id: a, text: A, type: scale, min: 5}", 12, "must be below"),
    ("- {id: a, text: A, type: text, max: 3}", 12, "scale and nps"),
    ("- {id: a, text: A, type: stars}", 12, "`type`"),
    ("- {id: a, text: A}", 12, "missing `type`"),
    ("- {text: A, type: text}", 12, "missing `surveys.s.questions.id`"),
    ("- {id: a, txt: A, type: text}", 12, "unknown key `txt`"),
    ("- {id: a, text: A, type: text, optional: sure}", 12, "true or false"),
    ("[]", 11, "is empty"),
])
def test_question_errors(questions, line, needle):
    body = textwrap.indent(questions, "      ")
    text = with_steps("- survey: s\n", f"surveys:\n  s:\n    template: survey_s\n    questions:\n{body}\n")
    found = errors(text)
    assert any(p.line == line and needle in p.message for p in found), found


def test_survey_errors():
    found = errors(with_steps("- survey: s\n", "surveys:\n  s:\n    questions: []\n    tmpl: x\n"))
    assert {(p.line, p.message.split(" ")[0]) for p in found} == {
        (10, "missing"), (10, "`surveys.s.questions`"), (11, "unknown")}
    assert all("not defined" not in p.message for p in found)   # no second error at the step
