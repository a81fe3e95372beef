"""A throwaway PostgreSQL schema per test, on the server ``POSTSALE_TEST_PG_URL`` names.

Each test gets ``CREATE SCHEMA t_<hex>`` and a URL whose connections use it as their search
path (``?options=-csearch_path%3D...``: it survives ``str(engine.url)`` and subprocesses), and
the schema is dropped afterwards. Without the variable, or with the server down, tests skip
with the reason.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

ENV = "POSTSALE_TEST_PG_URL"


@lru_cache(maxsize=1)
def _unavailable() -> str | None:
    url = os.environ.get(ENV)
    if not url:
        return f"{ENV} is not set (PostgreSQL tests skipped; .ci/run sets it)"
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to connect is a reason to skip, named
        return f"PostgreSQL at {ENV} is unreachable: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()
    return None


def require_postgres() -> str:
    """The server URL, or skip the calling test saying why there is none."""
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    return os.environ[ENV]


def schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


@dataclass(frozen=True)
class Schema:
    name: str
    url: str      # connections made from it work in this schema


@contextmanager
def fresh_schema(prefix: str = "t") -> Iterator[Schema]:
    """A new, empty schema; dropped (with everything in it) afterwards."""
    base = require_postgres()
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield Schema(schema, schema_url(base, schema))
    finally:
        with admin.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '60s'"))   # fail rather than hang
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def copy_schema(source: Schema, target: Schema) -> None:
    """Migrate the empty ``target`` and copy every table's rows from ``source`` into it."""
    from sqlmodel import SQLModel

    from models import create_db_engine, init_db

    migrated = create_db_engine(target.url)
    init_db(migrated)
    migrated.dispose()
    engine = create_engine(require_postgres(), poolclass=NullPool)
    with engine.begin() as conn:
        for table in SQLModel.metadata.sorted_tables:   # parents before children
            into, source_table = f'"{target.name}".{table.name}', f'"{source.name}".{table.name}'
            conn.execute(text(f"INSERT INTO {into} SELECT * FROM {source_table}"))
            serial = conn.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": into})
            if serial:   # the copied ids are taken: new rows continue after them
                conn.execute(text(f"SELECT setval(:s, (SELECT coalesce(max(id), 0) + 1 FROM {into}), false)"),
                             {"s": serial})
    engine.dispose()
