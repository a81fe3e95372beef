"""Engine and session factory for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

from typing import Callable

from sqlalchemy import event, make_url
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from models import tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from models.json_codec import dumps as json_dumps
from models.json_codec import loads as json_loads


# A dispatch batch writes a few MB (outbox bodies, timeline, run updates). With SQLite's
# defaults (2 MB page cache, a checkpoint every 1000 pages) a batch at 100,000 due customers
# re-reads index pages it just wrote and checkpoints at nearly every commit; a 32 MB cache and a
# checkpoint every ~40 MB of WAL cost ~5-7% less CPU there (bench: dispatch, paired runs).
SQLITE_TUNING = ("cache_size=-32768", "wal_autocheckpoint=10000")


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    """JSON columns go through ``models.json_codec`` (orjson, the values ``json`` would give)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30},
                               json_serializer=json_dumps, json_deserializer=json_loads)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # WAL: readers never block the one writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")   # a killed process loses nothing; a power cut, the last commits
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            for pragma in SQLITE_TUNING:
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10,
                         connect_args=postgres_timeouts(url), json_serializer=json_dumps,
                         json_deserializer=json_loads)


# A network partition that drops packets (rather than resetting) must end in an error, not a
# batch that waits for ever holding customers' locks. libpq settings; the URL may override them.
POSTGRES_TIMEOUTS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                     "keepalives_count": 3, "tcp_user_timeout": 60_000}


def postgres_timeouts(url: str) -> dict[str, int]:
    given = make_url(url).query
    return {key: value for key, value in POSTGRES_TIMEOUTS.items() if key not in given}


def init_db(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (cheap when it already is).

    Every process calls this on start; concurrent starts migrate once (see ``models.migrations``).
    """
    from models.migrations import upgrade
    upgrade(engine)


def session_factory(engine: Engine) -> Callable[[], Session]:
    def make() -> Session:
        return Session(engine, expire_on_commit=False)
    return make
