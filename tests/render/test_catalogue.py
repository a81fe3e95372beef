"""The shipped journeys and templates: they load, render with sample data and lint clean."""

from __future__ import annotations

from dataclasses import replace

import pytest

from postsale.links import Links
from postsale.render.checks import check_templates, locale_variants, sendings
from postsale.render.lint import lint_email
from postsale.render.templates import TemplateRenderer
from postsale.render.types import RenderRequest
from postsale.samples import has_sample, sample_customer, sample_event, sample_scope
from postsale.spec.catalog import load_catalog
from postsale.spec.model import Category, Start, Touchpoint

from .conftest import SECRET, SHIPPED_JOURNEYS, SHIPPED_TEMPLATES

CATALOG = load_catalog(SHIPPED_JOURNEYS, SHIPPED_TEMPLATES)
RENDERER = TemplateRenderer(SHIPPED_TEMPLATES, CATALOG.policy, Links(SECRET, CATALOG.policy.public_url))
SENDINGS = [(journey, step, template, category, survey)
            for journey in CATALOG.journeys.values()
            for step, template, category, survey in sendings(journey)]


def _render(journey, step, template, category, survey, *, customer=None, event=None, locale=None):
    event = event or sample_event(journey.trigger.event)
    request = RenderRequest(template=template, category=category,
                            scope=sample_scope(journey, event, customer), message_id=f"m-{step.id}",
                            customer_id="c-42", locale=locale, survey=survey)
    return RENDERER(request)


def test_shipped_journeys_load_without_problems():
    assert [str(p) for p in CATALOG.problems] == []
    assert set(CATALOG.journeys) >= {"post-purchase", "care-check-in", "support-ack", "issue-resolution",
                                     "incident-notice", "cart-reminder", "question-ack"}
    assert {j.touchpoint for j in CATALOG.journeys.values()} == set(Touchpoint)


def test_shipped_policy_is_the_spec_example():
    policy = CATALOG.policy
    assert policy.postal_address == "Acme Srl, Via Roma 1, 50123 Firenze, Italy"
    assert policy.sender.from_ == "Acme <hello@acme.example>"
    assert (policy.limits.subject_max_chars, policy.limits.body_max_words) == (60, 150)


def test_journey_shapes():
    journeys = CATALOG.journeys
    assert journeys["support-ack"].category is Category.transactional
    assert journeys["incident-notice"].category is Category.transactional
    assert journeys["incident-notice"].trigger.event == "incident.declared"
    assert set(journeys["post-purchase"].exit_when) == {"order.refunded", "order.cancelled"}
    assert "order.placed" in journeys["cart-reminder"].exit_when
    care = journeys["care-check-in"]
    (survey,) = care.surveys.values()
    assert len(survey.questions) == 1 and survey.questions[0].scale() == (1, 5)
    assert any(isinstance(s, Start) and s.journey == "issue-resolution" for s in care.walk())
    assert len([x for x in SENDINGS if x[0].id == "cart-reminder"]) == 1   # one gentle reminder


def test_check_templates_finds_nothing():
    assert [str(p) for p in check_templates(CATALOG, SHIPPED_TEMPLATES)] == []


def test_every_trigger_has_a_sample_event():
    for journey in CATALOG.journeys.values():
        assert has_sample(journey.trigger.event), journey.trigger.event


@pytest.mark.parametrize("journey, step, template, category, survey", SENDINGS,
                         ids=[f"{j.id}:{s.id}" for j, s, *_ in SENDINGS])
def test_every_email_renders_and_lints_clean(journey, step, template, category, survey):
    limits = CATALOG.policy.limits
    for locale in [None, *locale_variants(SHIPPED_TEMPLATES, template)]:
        email = _render(journey, step, template, category, survey,
                        customer=sample_customer(locale) if locale else None, locale=locale)
        assert email.subject and email.text and "<html" in email.html
        assert lint_email(email, limits, category=category, file=email.template_file) == []
        if category is Category.marketing:
            assert CATALOG.policy.postal_address in email.html
    # Without a customer name, and with an item list of one.
    nameless = replace(sample_customer(), name=None)
    email = _render(journey, step, template, category, survey, customer=nameless)
    assert "None" not in email.text


def test_issue_resolution_renders_when_started_from_a_poor_survey_answer():
    """`start:` carries the care-check-in context: order.delivered data, no ticket fields."""
    journey = CATALOG.journeys["issue-resolution"]
    event = sample_event("order.delivered")
    for _, step, template, category, survey in [x for x in SENDINGS if x[0] is journey]:
        email = _render(journey, step, template, category, survey, event=event)
        assert "1001" in email.subject or "1001" in email.text


def test_the_italian_variant_wins_for_italian_customers():
    journey = CATALOG.journeys["post-purchase"]
    step, template, category, survey = next(x for x in sendings(journey) if x[1] == "thank_you")
    email = _render(journey, step, template, category, survey, customer=sample_customer("it-CH"), locale="it-ch")
    assert email.template_file.endswith("thank_you.it.html.j2")
    assert email.subject.startswith("Grazie") and "Annulla l'iscrizione" in email.text


def test_every_mail_template_is_used():
    used = {template for _, _, template, _, _ in SENDINGS}
    files = {p.name.split(".")[0] for p in SHIPPED_TEMPLATES.glob("*.html.j2") if not p.name.startswith("_")}
    assert files == used
