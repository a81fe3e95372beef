"""Alembic environment for postsale's tables, on SQLite or PostgreSQL.

Two ways in:

- ``models.migrations.upgrade`` (what ``init_db`` and ``postsale db upgrade`` call) hands over an
  open connection, already in a transaction and holding the migration lock, as
  ``config.attributes["connection"]``;
- the ``alembic`` command (``alembic.ini`` at the repository root) gives a URL: ``-x url=...``,
  else ``sqlalchemy.url`` from the ini, else ``POSTSALE_DATABASE_URL``, else postsale's default.
  This is a command-line edge, so it may read the environment.

Column types render as plain SQLAlchemy types (``sa.String(length=200)``, not sqlmodel's
``AutoString``) so that revision scripts never depend on sqlmodel internals.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import models.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from models.migrations import lock

config = context.config
target_metadata = SQLModel.metadata
if config.config_file_name is not None:   # the alembic command: its ini configures logging
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    return (context.get_x_argument(as_dictionary=True).get("url")
            or config.get_main_option("sqlalchemy.url")
            or os.environ.get("POSTSALE_DATABASE_URL")
            or "sqlite:///postsale.db")


def render_item(type_: str, obj, autogen_context):
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length!r})" if obj.length else "sa.String()"
    return False


def _configure(**kwargs) -> None:
    url = kwargs.pop("url", None)
    dialect = kwargs["connection"].dialect.name if "connection" in kwargs else url.split(":", 1)[0]
    context.configure(target_metadata=target_metadata, compare_type=True, render_item=render_item,
                      render_as_batch=dialect.startswith("sqlite"), url=url, **kwargs)


def run_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():   # a no-op inside the caller's transaction
        context.run_migrations()


def run_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            lock(connection)
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
