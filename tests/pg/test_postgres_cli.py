"""The commands on an empty PostgreSQL database: ``alembic upgrade head``, ``postsale db upgrade``
(several at once), and ``postsale demo``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select
from sqlmodel import Session, SQLModel

from models import Message, create_db_engine
from models.migrations import head
from tests.pg.database import fresh_schema
from tests.pg.scenario import ROOT

pytestmark = pytest.mark.postgres


def run(*args: str, url: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "POSTSALE_DATABASE_URL": url, **env})


def schema_diffs(url: str) -> list:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                    SQLModel.metadata)
    finally:
        engine.dispose()


def test_alembic_upgrade_head_on_an_empty_database():
    with fresh_schema("alembic") as schema:
        done = run("-m", "alembic", "upgrade", "head", url=schema.url)   # alembic.ini at the root
        assert done.returncode == 0, done.stderr
        assert "Running upgrade  -> 0001" in done.stderr          # from nothing, through every revision
        assert f"-> {head()}, " in done.stderr
        assert schema_diffs(schema.url) == []


def test_db_upgrade_started_three_times_at_once_migrates_once():
    with fresh_schema("dbup") as schema:
        procs = [subprocess.Popen([sys.executable, "-m", "postsale.cli", "db", "upgrade"], cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={**os.environ, "POSTSALE_DATABASE_URL": schema.url})
                 for _ in range(3)]
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
        said = " ".join(out for out, _ in outputs)
        assert said.count("migrated from an empty schema") == 1 and said.count("already at") == 2
        assert schema_diffs(schema.url) == []


def test_demo_runs_against_postgresql(tmp_path):
    with fresh_schema("demo") as schema:
        done = run("-m", "postsale.cli", "demo", "--customers", "8", "--days", "14", url=schema.url,
                   POSTSALE_OUTBOX=str(tmp_path / "outbox"))
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "demo done" in done.stdout
        engine = create_db_engine(schema.url)
        with Session(engine) as session:
            sent = session.scalar(select(func.count()).where(Message.status == "sent"))
        engine.dispose()
        assert sent and sent == len(list((tmp_path / "outbox").glob("*.eml")))
