"""`postsale db upgrade`: bring POSTSALE_DATABASE_URL to the newest schema (Alembic)."""

from __future__ import annotations

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from postsale.cli_app import app, console
from postsale.commands._common import fail, settings

db_app = typer.Typer(name="db", help="The database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.callback()
def _db() -> None:
    """The database schema (Alembic migrations)."""


@db_app.command()
def upgrade() -> None:
    """Migrate the database to the newest schema (serve, demo and dispatch also do it on start)."""
    from postsale.store.migrate import migrate

    cfg = settings()
    shown = make_url(cfg.database_url).render_as_string(hide_password=True)
    try:
        result = migrate(cfg.database_url)
    except SQLAlchemyError as exc:
        fail(f"cannot migrate {shown}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}",
             hint="check POSTSALE_DATABASE_URL and that the database server is running")
        raise  # unreachable
    done = (f"migrated from {result.before or 'an empty schema'} to {result.after} (head)" if result.changed
            else f"already at {result.after} (head)")
    console.print(f"{shown}: {done}", soft_wrap=True, highlight=False)
