"""The databases a scenario runs on: a fresh SQLite file, or an isolated PostgreSQL schema.

SQLite always runs. PostgreSQL runs when ``--pg URL`` or ``POSTSALE_TEST_PG_URL`` names a
server that answers; each database a scenario asks for is a new schema (``bench_<hex>``,
reached through ``search_path`` in the URL, so that child processes see it too), dropped when
the scenario is done. A loaded SQLite file can be snapshotted and restored, so that repeats of
a scenario that consumes its data (dispatch) start from the same bytes without reloading.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

PG_ENV = "POSTSALE_TEST_PG_URL"
SQLITE, POSTGRES = "sqlite", "postgresql"


def pg_unavailable(url: str | None) -> str | None:
    """Why PostgreSQL can't be used (None: it can)."""
    if not url:
        return f"no --pg URL and {PG_ENV} is not set"
    try:
        engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect is a reason to skip, named
        return f"PostgreSQL unreachable: {str(exc).splitlines()[0]}"
    return None


@dataclass
class Backend:
    name: str
    workdir: Path
    pg_url: str | None = None

    @contextmanager
    def database(self, label: str) -> Iterator[str]:
        """A URL to a new, empty database; removed afterwards."""
        if self.name == SQLITE:
            path = self.workdir / f"{label}-{uuid.uuid4().hex[:6]}.db"
            try:
                yield f"sqlite:///{path}"
            finally:
                remove_sqlite(path)
            return
        assert self.pg_url
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(self.pg_url, poolclass=NullPool)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in self.pg_url else "?"
        try:
            yield f"{self.pg_url}{sep}options={quote(f'-csearch_path={schema}')}"
        finally:
            with admin.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '60s'"))
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.remove(f"{path}{suffix}")
        except FileNotFoundError:
            pass


def snapshot_sqlite(url: str, to: Path) -> None:
    """Fold the WAL into the file, then copy it (no process may hold it open for writing)."""
    path = sqlite_path(url)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    shutil.copyfile(path, to)


def restore_sqlite(snapshot: Path, url: str) -> None:
    """Copy the snapshot back, and onto the disk before anything is timed: the kernel would
    write the copy back later (3 GB at a million customers) and the pass's first checkpoint
    ``fsync``s the file, waiting for the harness's copy. A database in service has no such
    backlog."""
    path = sqlite_path(url)
    remove_sqlite(path)
    shutil.copyfile(snapshot, path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="postsale-bench-"))
