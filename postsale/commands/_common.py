"""What the commands share: settings, the context, printing problems and durations."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer
from rich.markup import escape

from postsale.cli_app import err_console
from postsale.clock import Clock
from postsale.durations import parse_duration
from postsale.errors import PostsaleError
from postsale.settings import Settings, load_settings
from postsale.spec.catalog import Catalog


def settings() -> Settings:
    try:
        return load_settings()
    except Exception as exc:  # pydantic's message names the variable
        fail(f"configuration error: {exc}", hint="check the POSTSALE_* environment variables and .env")
        raise  # unreachable


def fail(message: str, *, hint: str = "", code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    if hint:
        err_console.print(f"[dim]{escape(hint)}[/]", highlight=False)
    raise typer.Exit(code)


def warn_catalog(catalog: Catalog) -> None:
    """Running commands go on with the good journeys; broken ones are named, not hidden."""
    for problem in catalog.problems:
        if problem.is_error:
            err_console.print(f"[yellow]problem:[/] {escape(str(problem))}", highlight=False)
    if catalog.errors:
        err_console.print("[dim]journeys with errors are left out; run postsale validate for details[/]")


def build_context(cfg: Settings, *, clock: Clock | None = None):
    from postsale.store.context import Context
    try:
        ctx = Context.from_settings(cfg, clock=clock)
    except PostsaleError as exc:
        fail(str(exc))
    warn_catalog(ctx.catalog)
    return ctx


def parse_since(text: str) -> datetime:
    try:
        return datetime.now(timezone.utc) - parse_duration(text)
    except ValueError as exc:
        fail(str(exc), hint="e.g. --since 7d, --since 12h")
        raise


def read_input(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    file = Path(path)
    if not file.is_file():
        fail(f"no such file: {path}", hint="give a JSON or NDJSON file of events, or - for stdin")
    return file.read_text(encoding="utf-8")


def parse_until(text: str | None) -> datetime | None:
    if text is None:
        return None
    from postsale.events import parse_timestamp
    from postsale.errors import InvalidEvent
    try:
        return parse_timestamp(text, "--until")
    except InvalidEvent as exc:
        fail(str(exc), hint="e.g. --until 2026-12-31T00:00:00Z")
        raise


__all__ = ["settings", "fail", "build_context", "parse_since", "read_input", "parse_until", "timedelta"]
