"""Template checks for ``postsale validate``: render what the journeys send, with sample data.

Every template a journey can send (its ``send`` steps and the templates of its surveys) is
rendered, once per locale variant, for the sample event of the journey's trigger
(``postsale.samples``) through the real ``TemplateRenderer``: what fails here would fail for
a customer. Syntax errors, undefined names, sandbox refusals and a marketing email without
its unsubscribe link or postal address are errors at the template's file and line; lint
findings are warnings. Templates that do not exist are left to the catalogue, which reports
them at the journey line that names them. Every other ``*.j2`` file is at least parsed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from jinja2 import TemplateSyntaxError

from postsale.links import Links
from postsale.render.lint import lint_email
from postsale.render.templates import TemplateRenderer, TemplateRenderError
from postsale.render.types import RenderRequest
from postsale.samples import has_sample, sample_customer, sample_event, sample_scope
from postsale.sandbox import make_environment
from postsale.settings import DEV_SECRET
from postsale.spec.model import Category, Journey, Send, Step, Survey, SurveyDef
from postsale.spec.problems import Problem

_VARIANT = re.compile(r"^(?P<name>[^.]+)\.(?P<locale>[a-z]{2,3}(?:-[a-z0-9]{2,8})*)\.html\.j2$")


def check_templates(catalog: Any, templates_dir: Path) -> list[Problem]:
    """Errors and warnings for every template, sorted by file and line."""
    templates_dir = Path(templates_dir)
    policy = catalog.policy
    renderer = TemplateRenderer(templates_dir, policy, Links(DEV_SECRET, policy.public_url))
    problems = syntax_problems(templates_dir)
    for journey in catalog.journeys.values():
        for step, template, category, survey in sendings(journey):
            if not (templates_dir / f"{template}.html.j2").is_file():
                continue
            for locale in [None, *locale_variants(templates_dir, template)]:
                problems += _check_one(renderer, journey, step, template, category, survey, locale)
    return _dedupe(problems)


def locale_variants(templates_dir: Path, template: str) -> list[str]:
    """The locales with a ``NAME.LOCALE.html.j2`` file, like ``["it"]``."""
    found = []
    for path in sorted(templates_dir.glob(f"{template}.*.html.j2")):
        match = _VARIANT.match(path.name)
        if match and match["name"] == template:
            found.append(match["locale"])
    return found


def syntax_problems(templates_dir: Path) -> list[Problem]:
    """Parse every ``*.j2`` file: a syntax error anywhere is an error, sent or not."""
    env = make_environment()
    out = []
    for path in sorted(templates_dir.rglob("*.j2")) if templates_dir.is_dir() else ():
        try:
            env.parse(path.read_text(encoding="utf-8"), path.name, str(path))
        except TemplateSyntaxError as exc:
            out.append(Problem(str(path), exc.lineno or 0, f"syntax error: {exc.message}",
                               hint="see https://jinja.palletsprojects.com/templates/"))
        except (OSError, UnicodeDecodeError) as exc:
            out.append(Problem(str(path), 0, f"cannot read: {exc}"))
    return out


def sendings(journey: Journey) -> Iterator[tuple[Step, str, Category, SurveyDef | None]]:
    """(step, template, category, survey) for every step that sends; surveys are marketing."""
    for step in journey.walk():
        if isinstance(step, Send):
            yield step, step.template, journey.category, None
        elif isinstance(step, Survey) and step.survey in journey.surveys:
            survey = journey.surveys[step.survey]
            yield step, survey.template, Category.marketing, survey


def _check_one(renderer: TemplateRenderer, journey: Journey, step: Step, template: str,
               category: Category, survey: SurveyDef | None, locale: str | None) -> list[Problem]:
    event = sample_event(journey.trigger.event)
    customer = sample_customer(locale) if locale else None
    request = RenderRequest(template=template, category=category,
                            scope=sample_scope(journey, event, customer),
                            message_id=f"validate-{journey.id}-{step.id}",
                            customer_id=(customer or event.customer or sample_customer()).id,
                            locale=locale, survey=survey)
    context = (f"journey {journey.id}, step {step.id} at {journey.where.file}:{step.where.line}, "
               f"sample {event.type} event" + (f", locale {locale}" if locale else ""))
    try:
        email = renderer(request)
    except TemplateRenderError as exc:
        return [Problem(exc.file or renderer.file_of(f"{template}.html.j2"), exc.line,
                        f"{exc.reason} [{context}]", hint=_hint(exc, event.type, event.data))]
    file = email.template_file
    body_line, subject_line = _block_line(file, "body"), _block_line(file, "subject")
    out = []
    for problem in lint_email(email, renderer.policy.limits, category=category, file=file,
                              line=body_line):
        line = subject_line if "subject" in problem.message else body_line
        out.append(Problem(problem.file, line, problem.message, "warning", problem.hint))
    return out


def _hint(exc: TemplateRenderError, event_type: str, data: dict) -> str:
    if "undefined" not in exc.reason:
        return ""
    keys = ", ".join(sorted(data)) or "nothing"
    source = "" if has_sample(event_type) else " (no sample for this event type: data is empty)"
    return (f"the sample {event_type} data has {keys}{source}; guard optional fields with "
            "`{% if data.x is defined %}` or `| default(...)`")


def _block_line(file: str, block: str) -> int:
    try:
        for number, text in enumerate(Path(file).read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"{%-?\s*block\s+" + block + r"\b", text):
                return number
    except OSError:
        pass
    return 1


def _dedupe(problems: list[Problem]) -> list[Problem]:
    """One problem per file, line and finding: the first journey that meets it names it."""
    seen: set[tuple[str, int, str]] = set()
    out = []
    for problem in problems:
        key = (problem.file, problem.line, problem.message.split(" [journey ")[0])
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return sorted(out, key=lambda p: (p.file, p.line, p.severity != "error"))
