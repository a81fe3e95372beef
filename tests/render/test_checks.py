"""check_templates: what `postsale validate` reports about templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from postsale.render.checks import check_templates, locale_variants
from postsale.samples import has_sample, sample_event
from postsale.spec.catalog import load_catalog

from .conftest import LAYOUT, page

POLICY = """policy:
  sender: {from: "Acme <hello@acme.example>"}
  postal_address: "Acme Srl, Via Roma 1, 50123 Firenze, Italy"
  public_url: https://mail.acme.example
"""
JOURNEY = """journey: j
name: Test
touchpoint: immediate_post_sale
category: {category}
trigger:
  event: {event}
steps:
  - send: {template}
"""


def run(tmp_path: Path, templates: dict[str, str], *, template: str = "hello", category: str = "marketing",
        event: str = "order.placed", layout: str = LAYOUT):
    journeys, folder = tmp_path / "journeys", tmp_path / "templates"
    journeys.mkdir(parents=True)
    folder.mkdir(parents=True)
    (journeys / "policy.yaml").write_text(POLICY)
    (journeys / "j.yaml").write_text(JOURNEY.format(category=category, event=event, template=template))
    (folder / "_layout.html.j2").write_text(layout)
    for name, text in templates.items():
        (folder / name).write_text(text)
    catalog = load_catalog(journeys, folder)
    return catalog, check_templates(catalog, folder)


def test_a_good_template_has_no_problems(tmp_path):
    _, problems = run(tmp_path, {"hello.html.j2": page("Thanks, {{ customer.name }}", "<p>Order {{ data.order_id }}</p>")})
    assert problems == []


def test_undefined_variable_is_an_error_at_its_line(tmp_path):
    _, problems = run(tmp_path, {"hello.html.j2": page("Hi", "<p>ok</p>\n<p>{{ data.coupon_code }}</p>")})
    (problem,) = problems
    assert problem.is_error and problem.file.endswith("hello.html.j2") and problem.line == 5
    assert "coupon_code" in problem.message and "journey j" in problem.message
    assert "order_id" in problem.hint and "is defined" in problem.hint


def test_missing_unsubscribe_link_is_an_error(tmp_path):
    layout = LAYOUT.replace('<a href="{{ unsubscribe_url }}">Unsubscribe</a>', "")
    _, problems = run(tmp_path, {"hello.html.j2": page("Hi", "<p>x</p>")}, layout=layout)
    assert [p.is_error for p in problems] == [True]
    assert "unsubscribe" in problems[0].message
    _, problems = run(tmp_path / "t", {"hello.html.j2": page("Hi", "<p>x</p>")}, layout=layout,
                      category="transactional")
    assert problems == []


def test_missing_postal_address_is_an_error(tmp_path):
    layout = LAYOUT.replace("{{ policy.postal_address }}", "")
    _, problems = run(tmp_path, {"hello.html.j2": page("Hi", "<p>x</p>")}, layout=layout)
    assert any(p.is_error and "postal address" in p.message for p in problems)


def test_syntax_error_in_any_template_file(tmp_path):
    _, problems = run(tmp_path, {"hello.html.j2": page("Hi", "<p>x</p>"),
                                 "unused.html.j2": "line one\n{% if %}\n"})
    (problem,) = problems
    assert problem.file.endswith("unused.html.j2") and problem.line == 2 and "syntax error" in problem.message


def test_syntax_error_in_a_sent_template_is_reported_once(tmp_path):
    _, problems = run(tmp_path, {"hello.html.j2": page("Hi", "<p>{% for %}</p>")})
    assert len(problems) == 1 and problems[0].is_error and "syntax error" in problems[0].message


def test_security_error_is_an_error(tmp_path):
    _, problems = run(tmp_path, {"hello.html.j2": page("Hi", "<p>{{ ''.__class__.__mro__ }}</p>")})
    assert len(problems) == 1 and problems[0].is_error and problems[0].line == 4


def test_lint_warnings_point_at_the_block(tmp_path):
    _, problems = run(tmp_path, {"hello.html.j2": page("BIG NEWS TODAY!!", "<p>Act now.</p>")})
    assert problems and all(not p.is_error for p in problems)
    subject = [p for p in problems if "subject" in p.message]
    body = [p for p in problems if "spammy" in p.message]
    assert subject and all(p.line == 2 for p in subject)
    assert body and body[0].line == 3


def test_missing_templates_are_left_to_the_catalogue(tmp_path):
    catalog, problems = run(tmp_path, {}, template="nowhere")
    assert problems == []
    assert any("unknown template 'nowhere'" in p.message for p in catalog.problems)


def test_locale_variants_are_checked(tmp_path):
    _, problems = run(tmp_path, {"hello.html.j2": page("Hi", "<p>x</p>"),
                                 "hello.it.html.j2": page("Ciao", "<p>{{ data.nope }}</p>")})
    (problem,) = problems
    assert problem.file.endswith("hello.it.html.j2") and "locale it" in problem.message
    assert locale_variants(tmp_path / "templates", "hello") == ["it"]


def test_custom_event_types_get_a_generic_sample(tmp_path):
    assert not has_sample("shop.custom_thing")
    event = sample_event("shop.custom_thing")
    assert event.type == "shop.custom_thing" and event.data == {} and event.customer is not None
    _, problems = run(tmp_path, {"hello.html.j2": page("Hi", "<p>{{ data.order_id }}</p>")},
                      event="shop.custom_thing")
    assert len(problems) == 1 and "no sample for this event type" in problems[0].hint


@pytest.mark.parametrize("event_type", ["order.placed", "incident.declared", "survey.answered"])
def test_sample_events_parse(event_type):
    event = sample_event(event_type)
    assert event.type == event_type and event.customer is not None
