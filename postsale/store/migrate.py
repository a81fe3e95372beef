"""Schema migrations from the product's side: ``migrate(engine_or_url)``.

The Alembic scripts and the cross-process lock live with the tables (``models.migrations``).
``init_db`` runs them, and ``Context.build`` calls ``init_db``, so ``serve``, ``demo``,
``dispatch`` and every Prefect flow migrate on start; ``postsale db upgrade`` does it on its
own (before a deploy, or to see which revision a database is at).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from models import create_db_engine
from models.migrations import upgrade


@dataclass(frozen=True)
class Migration:
    before: str | None    # None: the database had no postsale schema
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def migrate(target: Engine | str) -> Migration:
    """Bring the database at ``target`` (an engine or a URL) to the newest revision."""
    if isinstance(target, str):
        engine = create_db_engine(target)
        try:
            return migrate(engine)
        finally:
            engine.dispose()
    before, after = upgrade(target)
    return Migration(before, after)


__all__ = ["Migration", "migrate"]
