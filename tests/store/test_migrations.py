"""Alembic migrations: the migrated schema is exactly the models', on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel
from typer.testing import CliRunner

from models import create_db_engine
from models.migrations import BASELINE, BASELINE_TABLES, head
from postsale.cli import app
from postsale.store.migrate import migrate
from tests.pg.database import fresh_schema
from tests.store.conftest import DATABASES


@pytest.fixture(params=DATABASES)
def empty_url(request, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/empty.db"
    else:
        with fresh_schema("mig") as schema:
            yield schema.url


def diffs(url: str) -> list:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                    SQLModel.metadata)
    finally:
        engine.dispose()


def test_the_migrated_schema_equals_the_models(empty_url):
    assert migrate(empty_url).after == head()
    assert diffs(empty_url) == []


def test_migrate_reports_what_it_did_and_is_idempotent(empty_url):
    first, again = migrate(empty_url), migrate(empty_url)
    assert (first.before, first.after, first.changed) == (None, head(), True)
    assert (again.before, again.changed) == (head(), False)


def test_a_database_made_by_create_all_is_adopted_not_recreated(empty_url):
    engine = create_db_engine(empty_url)
    SQLModel.metadata.create_all(engine)   # how databases were made before migrations
    engine.dispose()
    result = migrate(empty_url)
    assert result.before is None and result.after == head()
    assert diffs(empty_url) == []
    assert BASELINE_TABLES <= set(SQLModel.metadata.tables) and BASELINE == "0001"


def test_processes_starting_together_migrate_once(empty_url):
    engine = create_db_engine(empty_url)
    try:
        from models.migrations import upgrade
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: upgrade(engine), range(4)))
    finally:
        engine.dispose()
    assert [before for before, _ in results].count(None) == 1   # the others found it done
    assert {after for _, after in results} == {head()}
    assert "alembic_version" in inspect(create_db_engine(empty_url)).get_table_names()


def test_cli_db_upgrade(tmp_path, monkeypatch):
    monkeypatch.setenv("POSTSALE_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    runner = CliRunner()
    first = runner.invoke(app, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert f"migrated from an empty schema to {head()}" in first.output
    again = runner.invoke(app, ["db", "upgrade"])
    assert f"already at {head()}" in again.output
