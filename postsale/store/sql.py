"""Small SQL helpers that hide the dialect differences we rely on (SQLite and PostgreSQL).

Both speak ``INSERT ... ON CONFLICT`` and ``RETURNING``; what a statement inserted is read from
``RETURNING``, never from ``rowcount`` (SQLAlchemy 2.1 with psycopg reports -1 for inserts).
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

# PostgreSQL aborts one side of a deadlock or serialization conflict: the retry is the cure.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def _insert(session: Session, model: Any):
    return dialect_insert(session.get_bind().dialect, model.__table__)


def dialect_insert(dialect: Dialect, table: Table):
    """The dialect's own INSERT (the one that has ``on_conflict_do_nothing``)."""
    return (postgresql if dialect.name == "postgresql" else sqlite).insert(table)


def insert_new(session: Session, model: Any, rows: Sequence[dict],
               conflict: Sequence[str] | None = None) -> list[Any]:
    """INSERT ... ON CONFLICT DO NOTHING; returns the primary keys of the rows inserted.

    The unique constraint decides what a duplicate is, so concurrent writers can't race a
    check-then-insert. A row that conflicts with one another transaction is inserting waits
    for that transaction, then counts as a duplicate if it committed. The rows go as bound
    parameters of one cached statement (SQLAlchemy batches them into multi-row VALUES).
    """
    if not rows:
        return []
    key = list(model.__table__.primary_key.columns)[0]
    stmt = (_insert(session, model).on_conflict_do_nothing(index_elements=list(conflict) if conflict else None)
            .returning(key))
    return list(session.scalars(stmt, list(rows)))


def insert_ignore(session: Session, model: Any, rows: Sequence[dict],
                  conflict: Sequence[str] | None = None) -> int:
    """INSERT ... ON CONFLICT DO NOTHING; returns how many rows were inserted."""
    return len(insert_new(session, model, rows, conflict))


def insert_all_new(session: Session, model: Any, rows: Sequence[dict],
                   conflict: Sequence[str] | None = None) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, for a caller that need not know what went in.

    Without ``RETURNING`` the driver takes the rows as one ``executemany`` of a statement
    compiled once: cheaper than ``insert_new`` for a batch of large rows (the outbox).
    """
    if not rows:
        return
    stmt = _insert(session, model).on_conflict_do_nothing(index_elements=list(conflict) if conflict else None)
    session.execute(stmt, list(rows))


def upsert_touch(session: Session, model: Any, rows: Sequence[dict], *, touch: str) -> None:
    """Insert the rows that are new and lock the ones that exist (``touch`` := the new value).

    ``INSERT ... ON CONFLICT DO UPDATE`` holds a row lock on every row until commit, inserted
    or not, so a transaction that upserts a customer first owns that customer: a second one
    waits. Rows go in primary-key order so that two transactions locking overlapping sets
    take them in the same order.
    """
    if not rows:
        return
    key = list(model.__table__.primary_key.columns)[0].name
    stmt = _insert(session, model)
    stmt = stmt.on_conflict_do_update(index_elements=[key], set_={touch: getattr(stmt.excluded, touch)})
    session.execute(stmt, sorted(rows, key=lambda row: row[key]))


def is_retryable(exc: BaseException) -> bool:
    """A deadlock or serialization failure PostgreSQL resolved by aborting our transaction."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


def email_hash(email: str) -> str:
    """The suppression key: a person's address, normalised and hashed (kept after `forget`)."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()
