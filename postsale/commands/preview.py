"""``postsale preview JOURNEY STEP``: render one email the way a customer would get it.

The journey's trigger sample (``postsale.samples``) or ``--event FILE`` fills the template;
the subject, preheader and text go to the terminal, the HTML to a file you can open. Nothing
is sent and no database is touched.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.panel import Panel
from rich.text import Text

from postsale.cli_app import app, console, err_console
from postsale.errors import InvalidEvent, RenderError
from postsale.events import Event, parse_event
from postsale.links import Links
from postsale.render.checks import sendings
from postsale.render.lint import lint_email
from postsale.render.templates import TemplateRenderer
from postsale.render.types import RenderRequest
from postsale.samples import sample_customer, sample_event, sample_scope
from postsale.settings import load_settings
from postsale.spec.catalog import load_catalog
from postsale.spec.model import Journey


def _fail(message: str, hint: str = "") -> typer.Exit:
    err_console.print(Text(f"error: {message}", style="bold red"))
    if hint:
        err_console.print(Text(hint))
    return typer.Exit(1)


def _read_event(path: Path, journey: Journey) -> Event:
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(f"{path} is not JSON: {exc}", "give one event object, as in SPEC §2") from None
    if isinstance(raw, list):          # a batch: prefer an event that triggers this journey
        raw = next((e for e in raw if isinstance(e, dict) and e.get("type") == journey.trigger.event),
                   raw[0] if raw else None)
    try:
        return parse_event(raw)
    except InvalidEvent as exc:
        raise _fail(f"{path}: bad event: {exc}", "fix that field and run again") from None


@app.command()
def preview(
    journey: Annotated[str, typer.Argument(help="Journey id, like post-purchase.")],
    step: Annotated[str, typer.Argument(help="Id of a send or survey step of that journey.")],
    event: Annotated[Optional[Path], typer.Option("--event", help="An event JSON file to render "
                     "with, instead of the sample event of the journey's trigger.")] = None,
    journeys: Annotated[Optional[Path], typer.Option("--journeys", help="Journeys folder "
                        "(default: POSTSALE_JOURNEYS).")] = None,
    templates: Annotated[Optional[Path], typer.Option("--templates", help="Templates folder "
                         "(default: POSTSALE_TEMPLATES).")] = None,
    locale: Annotated[Optional[str], typer.Option("--locale", help="Render for a customer with "
                      "this locale, like it.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the HTML file "
                   "(default: OUTBOX/preview).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Render one email of a journey for a sample or given event: subject, text, HTML file."""
    settings = load_settings()
    journeys_dir = journeys or settings.journeys
    templates_dir = templates or settings.templates
    catalog = load_catalog(journeys_dir, templates_dir)

    found = catalog.journeys.get(journey)
    if found is None:
        known = ", ".join(sorted(catalog.journeys)) or "none"
        errors = "\n".join(str(p) for p in catalog.errors)
        raise _fail(f"no journey {journey!r} in {journeys_dir} (or it has errors)",
                    f"journeys you can preview: {known}"
                    + (f"\nproblems in the folder (run `postsale validate`):\n{errors}" if errors else ""))

    by_id = {s.id: (s, t, c, sv) for s, t, c, sv in sendings(found)}
    if step not in by_id:
        kinds = {s.id: type(s).__name__.lower() for s in found.walk()}
        what = f"step {step!r} is a {kinds[step]} step: it sends nothing" if step in kinds \
            else f"journey {journey!r} has no step {step!r}"
        raise _fail(what, f"steps that send an email: {', '.join(by_id) or 'none'}")
    _, template, category, survey = by_id[step]

    the_event = _read_event(event, found) if event else sample_event(found.trigger.event)
    customer = the_event.customer or sample_customer()   # incidents name no customer
    if locale:
        customer = replace(customer, locale=locale.lower().replace("_", "-"))
    scope = sample_scope(found, the_event, customer)
    links = Links(settings.secret, catalog.policy.public_url)
    renderer = TemplateRenderer(templates_dir, catalog.policy, links)
    request = RenderRequest(template=template, category=category, scope=scope,
                            message_id=f"preview-{journey}-{step}", customer_id=scope["customer"]["id"],
                            locale=scope["customer"]["locale"], survey=survey)
    try:
        email = renderer(request)
    except RenderError as exc:
        raise _fail(str(exc), "fix the template (or pass a fuller --event) and run again") from None

    folder = out or settings.outbox / "preview"
    folder.mkdir(parents=True, exist_ok=True)
    html_path = folder / f"{journey}-{step}.html"
    html_path.write_text(email.html, encoding="utf-8")
    warnings = lint_email(email, catalog.policy.limits, category=category, file=email.template_file)

    if as_json:
        typer.echo(json.dumps({
            "journey": journey, "step": step, "template": template,
            "template_file": email.template_file, "category": category.value,
            "event": the_event.id, "subject": email.subject, "preheader": email.preheader,
            "text": email.text, "html_path": str(html_path), "headers": email.headers,
            "warnings": [str(w) for w in warnings],
        }, ensure_ascii=False))
        return
    head = Text()
    for label, value in (("Subject", email.subject), ("Preheader", email.preheader or "(none)"),
                         ("Template", email.template_file),
                         ("Event", f"{the_event.type} {the_event.id}"),
                         ("Category", category.value)):
        head.append(f"{label}: ", style="bold").append(f"{value}\n")
    console.print(head, end="")
    console.print(Panel(Text(email.text), title="text part", expand=False))
    for warning in warnings:
        console.print(Text(str(warning), style="yellow"))
    console.print(Text("HTML: ", style="bold").append(str(html_path)))
