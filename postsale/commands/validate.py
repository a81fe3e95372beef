"""`postsale validate`: every journey, template and the policy, as `file:line: message`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from postsale.cli_app import app, console, err_console
from postsale.commands._common import settings


@app.command()
def validate(
    journeys: Path = typer.Argument(None, help="Journeys folder (default POSTSALE_JOURNEYS, journeys/)."),
    templates: Path = typer.Option(None, "--templates", help="Templates folder (default POSTSALE_TEMPLATES, templates/)."),
    as_json: bool = typer.Option(False, "--json", help="Print the problems as JSON."),
    strict: bool = typer.Option(False, "--strict", help="Treat lint warnings as errors."),
) -> None:
    """Check every journey, template and the policy; exit 1 on any error.

    Errors: broken YAML or step shapes, unknown templates or journeys, expressions that do not
    compile, undefined template variables (rendered with sample data), surveys over the question
    limit, marketing mail without an unsubscribe link or postal address. Warnings (lint): subjects
    too long, bodies over the word limit, shouting, spammy wording, offers without conditions.
    """
    from postsale.render.checks import check_templates
    from postsale.spec.catalog import load_catalog

    cfg = settings()
    journeys = journeys or cfg.journeys
    templates = templates or cfg.templates
    catalog = load_catalog(journeys, templates)
    problems = sorted(set(catalog.problems) | set(check_templates(catalog, templates)),
                      key=lambda p: (p.file, p.line, p.message))
    errors = [p for p in problems if p.is_error or strict]
    if as_json:
        console.print_json(json.dumps({
            "ok": not errors, "journeys": sorted(catalog.journeys),
            "problems": [{"file": p.file, "line": p.line, "severity": p.severity, "message": p.message,
                          "hint": p.hint} for p in problems]}))
    else:
        for problem in problems:
            colour = "red" if problem.is_error else "yellow"
            err_console.print(f"[{colour}]{escape(str(problem))}[/]", highlight=False, soft_wrap=True)
        summary = (f"{len(catalog.journeys)} journeys checked in {journeys}, templates in {templates}: "
                   f"{sum(p.is_error for p in problems)} errors, {sum(not p.is_error for p in problems)} warnings")
        if errors:
            err_console.print(f"[bold red]✗[/] {summary}")
            err_console.print("fix the lines above, then run postsale validate again")
        else:
            console.print(f"[bold green]✓[/] {summary}")
    raise typer.Exit(1 if errors else 0)
