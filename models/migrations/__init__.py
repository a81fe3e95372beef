"""Schema migrations (Alembic) for the tables in ``models.tables``.

``upgrade(engine)`` brings a database to the newest revision. Every process that starts calls
it (``serve``, ``demo``, ``dispatch``, each Prefect worker), so it must be cheap and safe when
several start together: it returns after one query when the schema is current, and otherwise
migrates inside one transaction holding a lock — PostgreSQL's transaction-level advisory lock,
SQLite's ``BEGIN IMMEDIATE`` — so the first process migrates and the others find it done.

A database made by ``create_all`` before migrations existed has exactly the baseline's tables:
it is adopted (stamped at ``BASELINE``) rather than failing on ``table already exists``.

The ``alembic`` command works too (``alembic.ini`` at the repository root): ``env.py`` takes
the URL from ``-x url=...`` or ``POSTSALE_DATABASE_URL``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

SCRIPTS = Path(__file__).parent
BASELINE = "0001"
BASELINE_TABLES = frozenset({"customers", "events", "purchases", "journey_versions", "runs", "messages",
                             "suppressions", "survey_responses", "delivery_events", "timeline"})
LOCK_KEY = int.from_bytes(b"postsale", "big")   # pg_advisory_xact_lock key (fits a bigint)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for our scripts; ``env.py`` uses ``connection`` when one is given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head() -> str:
    """The newest revision shipped with this version of postsale."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


def current(connection: Connection) -> str | None:
    """The revision a database is at (None: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def lock(connection: Connection) -> None:
    """Serialise schema changes across processes until this connection's transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        # pysqlite begins lazily (and never for DDL): take the write lock now, so that the
        # version check and the DDL after it are one atomic step.
        if not connection.connection.dbapi_connection.in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to the newest revision; returns (revision before, revision after)."""
    target = head()
    with engine.connect() as conn:
        before = current(conn)
    if before == target:
        return before, target
    with engine.begin() as conn:
        lock(conn)
        before = current(conn)   # another process may have migrated while we waited
        if before is None and _has_baseline_tables(conn):
            command.stamp(alembic_config(conn), BASELINE)
        if before != target:
            command.upgrade(alembic_config(conn), "head")
    return before, target


def _has_baseline_tables(conn: Connection) -> bool:
    return BASELINE_TABLES <= set(inspect(conn).get_table_names())


__all__ = ["BASELINE", "LOCK_KEY", "alembic_config", "current", "head", "lock", "upgrade"]
