from __future__ import annotations

import textwrap
from datetime import time, timedelta

import pytest

from postsale.spec.model import Cap, Limits, Policy, QuietHours, Sender, Where
from postsale.spec.policy import is_address, parse_policy


def parse(text: str):
    return parse_policy(textwrap.dedent(text), "journeys/policy.yaml")


def only_error(problems):
    errors = [p for p in problems if p.is_error]
    assert len(errors) == 1, errors
    return errors[0]


def test_spec_example(spec_policy):
    policy, problems = parse_policy(spec_policy, "policy.yaml")
    assert problems == []
    assert policy.sender == Sender(from_="Acme <hello@acme.example>",
                                   reply_to="care@acme.example",
                                   transactional_from="Acme Orders <orders@acme.example>")
    assert policy.postal_address == "Acme Srl, Via Roma 1, 50123 Firenze, Italy"
    assert policy.ops_email == "ops@acme.example"
    assert policy.public_url == "https://mail.acme.example"
    assert policy.marketing_cap == Cap(3, timedelta(days=7), timedelta(hours=20))
    assert policy.journey_cap == Cap(2, timedelta(days=7))
    assert policy.survey_cap == Cap(1, timedelta(days=30))
    assert policy.quiet_hours == QuietHours(time(21), time(8))
    assert policy.hold_marketing_while_ticket_open is True
    assert policy.limits == Limits(60, 150, 3)
    assert policy.where == Where("policy.yaml", 1)


def test_empty_policy_keeps_defaults():
    policy, problems = parse("policy:\n")
    assert problems == []
    assert policy == Policy(where=Where("journeys/policy.yaml", 1))


def test_missing_keys_keep_defaults_field_by_field():
    policy, problems = parse("""\
        policy:
          postal_address: "Acme, Firenze"
          frequency:
            marketing: {max: 5}
            journey: {per: 3d}
          limits: {body_max_words: 200}
        """)
    assert problems == []
    assert policy.marketing_cap == Cap(5, timedelta(days=7), timedelta(hours=20))
    assert policy.journey_cap == Cap(2, timedelta(days=3))
    assert policy.survey_cap == Policy().survey_cap
    assert policy.limits == Limits(body_max_words=200)
    assert policy.sender == Sender() and policy.quiet_hours == Policy().quiet_hours


def test_null_disables():
    policy, problems = parse("""\
        policy:
          frequency:
            marketing: null
            surveys: {max: 1, per: 30d}
            journey: {max: 2, per: 7d, min_gap: 1h}
          quiet_hours: null
        """)
    assert problems == []
    assert policy.marketing_cap is None and policy.quiet_hours is None
    assert policy.journey_cap == Cap(2, timedelta(days=7), timedelta(hours=1))


def test_min_gap_null_turns_it_off():
    policy, _ = parse("policy:\n  frequency:\n    marketing: {min_gap: null}\n")
    assert policy.marketing_cap == Cap(3, timedelta(days=7), None)


def test_empty_frequency_warns_and_keeps_caps():
    policy, problems = parse("policy:\n  frequency:\n")
    assert policy.marketing_cap == Policy().marketing_cap
    [p] = problems
    assert p.severity == "warning" and p.line == 2


@pytest.mark.parametrize("line,text,needle", [
    (3, '  sender: {from: "not an address"}', "sender.from"),
    (4, "  sender:\n    reply_to: care-at-acme", "sender.reply_to"),
    (3, "  ops_email: ops@", "ops_email"),
    (3, "  public_url: ftp://mail.acme.example", "public_url"),
    (3, "  public_url: mail.acme.example", "public_url"),
    (3, "  quiet_hours: {start: '9pm', end: '08:00'}", "quiet_hours.start"),
    (3, "  quiet_hours: {start: '21:00', end: '24:00'}", "quiet_hours.end"),
    (3, "  quiet_hours: {start: '08:00', end: '08:00'}", "same time"),
    (3, "  limits: {survey_max_questions: 0}", "at least 1"),
    (3, "  limits: {subject_max_chars: many}", "whole number"),
    (3, "  limits: {body_max_words: true}", "whole number"),
    (3, "  frequency: {marketing: {max: -1, per: 7d}}", "at least 1"),
    (3, "  frequency: {marketing: {max: 3, per: 7}}", "needs a unit"),
    (3, "  frequency: {journey: {max: 3, per: soon}}", "bad duration"),
    (3, "  frequency: {surveys: {max: 1, per: 30d, min_gap: x}}", "min_gap"),
    (3, "  hold_marketing_while_ticket_open: maybe", "true or false"),
    (3, "  frequency: 3", "must be a mapping"),
    (3, "  ops_email: [1, 2]", "ops_email"),
])
def test_errors_carry_the_line(line, text, needle):
    policy, problems = parse("policy:\n  postal_address: Acme\n" + text + "\n")
    p = only_error(problems)
    assert p.file == "journeys/policy.yaml"
    assert p.line == line, p
    assert needle in p.message or needle in p.hint, p
    assert isinstance(policy, Policy)      # still usable


def test_duplicate_key_reported_and_rest_still_checked():
    _, problems = parse("policy:\n  ops_email: a@b.example\n  ops_email: nope\n")
    assert [(p.line, p.message[:20]) for p in problems] == [
        (3, "duplicate key `ops_e"), (3, "`ops_email` 'nope' i")]


def test_bad_values_keep_defaults():
    policy, _ = parse("""\
        policy:
          sender: {from: nope}
          limits: {survey_max_questions: 0}
          quiet_hours: {start: "25:00"}
        """)
    assert policy.sender.from_ == Sender().from_
    assert policy.limits.survey_max_questions == 3
    assert policy.quiet_hours == Policy().quiet_hours


def test_unknown_keys_with_hint():
    _, problems = parse("""\
        policy:
          postal_adress: Acme
          frequency:
            marketting: {max: 1, per: 1d}
          limits: {survey_max_question: 2}
          quiet_hours: {start: "21:00", stop: "08:00"}
        """)
    got = {(p.line, p.message, p.hint.split("?")[0]) for p in problems}
    assert got == {
        (2, "unknown key `postal_adress` in policy", "did you mean `postal_address`"),
        (4, "unknown key `marketting` in frequency", "did you mean `marketing`"),
        (5, "unknown key `survey_max_question` in limits", "did you mean `survey_max_questions`"),
        (6, "unknown key `stop` in quiet_hours", "accepted: start, end"),
    }


def test_unknown_top_level_key():
    _, problems = parse("policy:\n  ops_email: ops@acme.example\npolicies: {}\n")
    p = only_error(problems)
    assert p.line == 3 and "`policies`" in p.message and "`policy`" in p.hint


def test_missing_policy_key():
    policy, problems = parse("sender: {from: a@b.example}\n")
    p = only_error(problems)
    assert p.line == 1 and "policy:" in p.message
    assert policy.sender == Sender()


def test_policy_not_a_mapping():
    _, problems = parse("policy: [1]\n")
    assert only_error(problems).line == 1


def test_yaml_error_gives_default_policy():
    policy, problems = parse("policy:\n  sender: {from: [\n")
    assert problems and problems[0].is_error and "YAML" in problems[0].message
    assert policy.marketing_cap == Policy().marketing_cap


def test_public_url_trailing_slash_dropped():
    policy, problems = parse("policy:\n  public_url: https://mail.acme.example/\n")
    assert problems == [] and policy.public_url == "https://mail.acme.example"


def test_optional_addresses_can_be_null():
    policy, problems = parse("policy:\n  ops_email: null\n  sender: {reply_to: null}\n")
    assert problems == [] and policy.ops_email is None and policy.sender.reply_to is None


def test_sender_from_cannot_be_null():
    _, problems = parse("policy:\n  sender:\n    from: null\n")
    assert only_error(problems).line == 3


@pytest.mark.parametrize("value,ok", [
    ("hello@acme.example", True), ("Acme <hello@acme.example>", True),
    ('"Acme, Inc." <hello@acme.example>', False),   # a comma looks like two addresses
    ("hello", False), ("hello@acme", False), ("a@b.c, d@e.f", False), ("<>", False),
])
def test_is_address(value, ok):
    assert is_address(value) is ok
