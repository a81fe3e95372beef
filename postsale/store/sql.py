"""Small SQL helpers that hide the dialect differences we rely on."""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(session: Session, model: Any, rows: Sequence[dict],
                  conflict: Sequence[str] | None = None) -> int:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL; returns rows inserted.

    The unique constraint decides what a duplicate is, so concurrent writers can't race a
    check-then-insert.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(model.__table__).values(list(rows))
    stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict) if conflict else None)
    result = session.execute(stmt)
    return result.rowcount if result.rowcount is not None and result.rowcount >= 0 else 0


def email_hash(email: str) -> str:
    """The suppression key: a person's address, normalised and hashed (kept after `forget`)."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()
