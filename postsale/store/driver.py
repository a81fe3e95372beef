"""Bulk statements in the driver's own terms: SQL written once per dialect, rows as tuples.

Ingest writes ~4 rows an event and reads a few more. Through Core, every row is a dict that
SQLAlchemy turns into the statement's parameters one at a time (``construct_params``, the bind
processors looked up by name): that was most of ingest's CPU. Here a statement's SQL is built
once per dialect and table, rows are tuples in its column order, and they go to
``Connection.exec_driver_sql`` as one ``executemany`` (or one multi-row ``VALUES`` where the
rows' ``RETURNING`` is needed). That is still SQLAlchemy's connection: the session's
transaction, its error wrapping (``DBAPIError``, what the deadlock retry reads), disconnect
handling and events.

The values are converted by the very processors SQLAlchemy would apply, taken from the column
types for the engine's dialect, so the rows stored are the same bytes: JSON through the
engine's serializer (and ``None`` as JSON ``null`` where the type says so), SQLite datetimes in
its storage format. Results are read back through the types' result processors the same way.

Dispatch does the same for its reads and writes with Core statements compiled once
(``postsale.store.dbapi``); the two share the datetime memo. Ingest's SQL is written out here
(multi-row ``VALUES ... RETURNING``, upserts that read back). One layer for both is the next
step of this clean-up.
"""

from __future__ import annotations

import json
import weakref
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import Table
from sqlalchemy.sql import sqltypes
from sqlalchemy.engine import Connection, Dialect

from postsale.store.dbapi import remember_utc

CHUNK = 1000            # ids an IN list carries (SQLite takes 32,766 parameters a statement)
VALUES_PARAMS = 30_000  # parameters a multi-row VALUES carries (PostgreSQL's limit: 65,535)

Processor = Callable[[Any], Any]

# Per dialect object (its serializer is the engine's): statements and processors built once.
_BUILT: "weakref.WeakKeyDictionary[Dialect, dict[Any, Any]]" = weakref.WeakKeyDictionary()


class Driver:
    """A session's connection, spoken to with tuples (see the module docstring)."""

    def __init__(self, connection: Connection) -> None:
        self.conn = connection
        self.dialect = connection.dialect
        self.postgres = self.dialect.name == "postgresql"
        self.mark = "%s" if self.postgres else "?"
        built = _BUILT.get(self.dialect)
        if built is None:
            built = _BUILT[self.dialect] = {}
        self._built = built

    @classmethod
    def of(cls, session: Any) -> "Driver":
        return cls(session.connection())

    def quote(self, name: str) -> str:
        return self.dialect.identifier_preparer.quote(name)

    # ------------------------------------------------------------ processors

    def writer(self, table: Table, columns: Sequence[str]) -> Callable[[Iterable[Sequence[Any]]], list]:
        """A function turning rows (tuples in ``columns`` order) into the driver's parameters."""
        key = ("writer", table.name, tuple(columns))
        write = self._built.get(key)
        if write is None:
            processors = []
            for index, name in enumerate(columns):
                column_type = table.c[name].type
                process = column_type._cached_bind_processor(self.dialect)
                if self.postgres and isinstance(column_type, sqltypes.JSON):
                    # psycopg's ``Json`` wrapper (SQLAlchemy's processor there) is dumped in Python
                    # value by value, with the engine's serializer (or json.dumps): the same text
                    # serialized here costs half as much, and PostgreSQL casts it to json alike.
                    process = column_type._make_bind_processor(None, self.dialect._json_serializer or json.dumps)
                process = remember_utc(process, column_type)
                if process is not None:
                    processors.append((index, process))
            write = self._built[key] = _converter(processors)
        return write

    def reader(self, columns: Sequence[Any]) -> Callable[[Iterable[Sequence[Any]]], list]:
        """A function turning fetched rows into tuples of Python values (``columns``: the Column
        objects selected, in order; None for an expression that needs no processing)."""
        key = ("reader", tuple(columns))
        read = self._built.get(key)
        if read is None:
            processors = [(index, process) for index, column in enumerate(columns) if column is not None
                          for process in [column.type._cached_result_processor(self.dialect, None)]
                          if process is not None]
            read = self._built[key] = _converter(processors)
        return read

    # ------------------------------------------------------------ statements

    def built(self, key: Any, build: Callable[[], str]) -> str:
        sql = self._built.get(key)
        if sql is None:
            sql = self._built[key] = build()
        return sql

    def insert_sql(self, table: Table, columns: Sequence[str], *, rows: int = 1, conflict: Sequence[str] = (),
                   update: Sequence[str] = (), returning: Sequence[str] = ()) -> str:
        """``INSERT INTO t (cols) VALUES (...)[, (...)] [ON CONFLICT (conflict) DO NOTHING | DO UPDATE
        SET u = excluded.u] [RETURNING ...]`` for ``rows`` rows."""
        def build() -> str:
            q = self.quote
            group = "(" + ", ".join([self.mark] * len(columns)) + ")"
            sql = (f"INSERT INTO {q(table.name)} ({', '.join(q(c) for c in columns)}) VALUES "
                   + ", ".join([group] * rows))
            if conflict:
                sql += f" ON CONFLICT ({', '.join(q(c) for c in conflict)}) "
                sql += ("DO UPDATE SET " + ", ".join(f"{q(c)} = excluded.{q(c)}" for c in update)
                        if update else "DO NOTHING")
            if returning:
                sql += " RETURNING " + ", ".join(q(c) for c in returning)
            return sql
        return self.built(("insert", table.name, tuple(columns), rows, tuple(conflict), tuple(update),
                           tuple(returning)), build)

    def insert(self, table: Table, columns: Sequence[str], rows: list, *, conflict: Sequence[str] = ()) -> None:
        """Rows (tuples in ``columns`` order) as one executemany, ``ON CONFLICT DO NOTHING`` if
        ``conflict`` names the unique columns."""
        if rows:
            self.executemany(self.insert_sql(table, columns, conflict=conflict), self.writer(table, columns)(rows))

    def update(self, table: Table, columns: Sequence[str], rows: list, *, key: str = "id") -> None:
        """``UPDATE t SET columns WHERE key = ?`` for each row: tuples of the columns' values, then the key."""
        if not rows:
            return
        def build() -> str:
            q = self.quote
            return (f"UPDATE {q(table.name)} SET {', '.join(f'{q(c)} = {self.mark}' for c in columns)} "
                    f"WHERE {q(key)} = {self.mark}")
        sql = self.built(("update", table.name, tuple(columns), key), build)
        self.executemany(sql, self.writer(table, (*columns, key))(rows))

    def executemany(self, sql: str, rows: list) -> None:
        if rows:
            self.conn.exec_driver_sql(sql, rows)

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list:
        return self.conn.exec_driver_sql(sql, tuple(params)).fetchall()

    def insert_returning(self, table: Table, columns: Sequence[str], rows: list, *, conflict: Sequence[str] = (),
                         update: Sequence[str] = (), returning: Sequence[str] = ()) -> list:
        """Insert converted rows as multi-row ``VALUES`` in their order (the locks a conflict takes
        are taken in that order), returning what ``returning`` names of each row written."""
        out: list = []
        size = max(1, VALUES_PARAMS // max(1, len(columns)))
        for start in range(0, len(rows), size):
            part = rows[start:start + size]
            sql = self.insert_sql(table, columns, rows=len(part), conflict=conflict, update=update,
                                  returning=returning)
            out += self.fetch(sql, [value for row in part for value in row])
        return out

    def select_in(self, sql: str, ids: Sequence[Any], params: Sequence[Any] = ()) -> list:
        """Rows of ``sql`` whose ``{ids}`` placeholder is the id list: ``= ANY(%s)`` on PostgreSQL
        (one prepared statement whatever the count), ``IN (?, ...)`` in chunks on SQLite.
        ``sql`` is written with ``{ids}`` where ``column {ids}`` belongs and ``{p}`` for a
        parameter placed before it; ``params`` come first."""
        if not ids:
            return []
        if self.postgres:
            text = self.built(("in", sql), lambda: sql.format(ids="= ANY(%s)", p="%s"))
            return self.fetch(text, [*params, list(ids)])
        out: list = []
        for start in range(0, len(ids), CHUNK):
            part = ids[start:start + CHUNK]
            text = sql.format(ids="IN (" + ", ".join("?" * len(part)) + ")", p="?")
            out += self.fetch(text, [*params, *part])
        return out


def _converter(processors: list[tuple[int, Processor]], width: int | None = None
               ) -> Callable[[Iterable[Sequence[Any]]], list]:
    """``rows -> [tuple(row) with row[i] = process_i(row[i])]``, as one comprehension written for
    the columns that have a processor (a loop over the processors costs more than the rows'
    conversion itself)."""
    if not processors:
        return lambda rows: [tuple(row) for row in rows]
    by_index = dict(processors)
    last = max(by_index)
    names = {f"p{index}": process for index, process in processors}
    items = ", ".join(f"p{i}(r[{i}])" if i in by_index else f"r[{i}]" for i in range(last + 1))
    code = f"lambda rows: [({items}, *r[{last + 1}:]) for r in rows]"
    return eval(code, names)   # noqa: S307 — built from our own column indexes, no outside input


__all__ = ["Driver", "CHUNK"]
