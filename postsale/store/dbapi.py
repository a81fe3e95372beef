"""Hot-path SQL through the DBAPI cursor: rows in and out as plain tuples.

SQLAlchemy's per-row work (a dict of parameters per row, its bind processors looked up per
row, a ``Row`` object per result row) costs more than the rows' own SQL on dispatch's hot path.
Here a Core statement is compiled once per dialect and run with ``exec_driver_sql`` (which keeps
SQLAlchemy's transaction, events and error wrapping); parameters are tuples already converted
by ``Columns.bind`` with the very processors SQLAlchemy would have applied (the engine's JSON
serializer, SQLite's datetime format), and results are the DBAPI's own rows, converted by
``Columns.result`` where the dialect needs it. So the bytes written are the bytes SQLAlchemy
would have written, for SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import operator
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from sqlalchemy import Table
from sqlalchemy.engine import Connection, Dialect

_UTC = timezone.utc
Processor = Callable[[Any], Any]


class Columns:
    """Converters for some columns of one table, for one dialect: Python values ⇄ DBAPI values.

    ``bind`` turns a row of Python values (a tuple in ``names`` order) into DBAPI parameters;
    ``result`` turns a raw DBAPI row back. Datetimes in UTC are formatted once per value: a
    batch writes the same ``now`` into thousands of rows.
    """

    def __init__(self, table: Table, names: Sequence[str], dialect: Dialect) -> None:
        self.names = tuple(names)
        types = [table.c[name].type.dialect_impl(dialect) for name in self.names]
        self._bind = [remember_utc(t.bind_processor(dialect), t) for t in types]
        self._result = [t.result_processor(dialect, None) for t in types]
        self.bind_steps = tuple((i, p) for i, p in enumerate(self._bind) if p is not None)
        self.result_steps = tuple((i, p) for i, p in enumerate(self._result) if p is not None)

    def bind(self, values: Sequence[Any]) -> tuple:
        if not self.bind_steps:
            return tuple(values)
        out = list(values)
        for i, process in self.bind_steps:
            out[i] = process(out[i])
        return tuple(out)

    def result(self, row: Sequence[Any]) -> list:
        out = list(row)
        for i, process in self.result_steps:
            out[i] = process(out[i])
        return out

    def bind_one(self, name: str) -> Processor:
        """The bind converter of one column (identity where the dialect needs none)."""
        process = self._bind[self.names.index(name)]
        return process if process is not None else _identity

    def result_one(self, name: str) -> Processor:
        process = self._result[self.names.index(name)]
        return process if process is not None else _identity


def _identity(value: Any) -> Any:
    return value


def remember_utc(process: Processor | None, type_: Any) -> Processor | None:
    """A datetime bind processor that remembers what it made of UTC datetimes (a batch repeats
    its ``now`` in every row); any other processor is returned as it is.

    Only values whose tzinfo is ``timezone.utc`` are remembered: equal datetimes in other
    zones are the same instant but may be written differently (SQLite's format drops the zone).
    """
    if process is None or _python_type(type_) is not datetime:
        return process
    memo: dict[datetime, Any] = {}

    def convert(value: Any) -> Any:
        if value is None or value.__class__ is not datetime or value.tzinfo is not _UTC:
            return process(value)
        done = memo.get(value)
        if done is None:
            if len(memo) > 4096:
                memo.clear()
            done = memo[value] = process(value)
        return done

    return convert


def _python_type(type_: Any) -> Any:
    try:
        return type_.python_type
    except NotImplementedError:
        return None


class Statement:
    """A Core INSERT or UPDATE compiled once for a dialect, executed as one ``executemany``.

    ``keys`` name the parameters in the order the caller's tuples give them; the statement's
    own bind order (positional dialects) or names (``pyformat``) are mapped from them once. A
    column the caller leaves out gets its scalar Python default, as SQLAlchemy would give it.
    """

    def __init__(self, stmt: Any, keys: Sequence[str], dialect: Dialect,
                 column_keys: Sequence[str] | None = None) -> None:
        self.keys = tuple(keys)
        compiled = stmt.compile(dialect=dialect, column_keys=list(column_keys or keys))
        self.sql = compiled.string
        self.positional = bool(compiled.positional)
        names = list(compiled.positiontup) if self.positional else list(compiled.binds)
        defaults = {name: _default(stmt.table, name, dialect) for name in names if name not in self.keys}
        self._extra = tuple(defaults.values())
        extended = self.keys + tuple(defaults)
        if self.positional:
            order = [extended.index(name) for name in names]
            self._identity = order == list(range(len(self.keys))) and not defaults
            self._getter = operator.itemgetter(*order) if len(order) > 1 else (lambda row: (row[order[0]],))
        else:
            self._names = extended

    def executemany(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        extra = self._extra
        if not self.positional:
            names = self._names
            params: list[Any] = [dict(zip(names, tuple(r) + extra)) for r in rows]
        elif self._identity:
            params = list(rows)
        else:
            getter = self._getter
            params = [getter(tuple(r) + extra) for r in rows] if extra else [getter(r) for r in rows]
        conn.exec_driver_sql(self.sql, params)


def _default(table: Table, name: str, dialect: Dialect) -> Any:
    """The DBAPI value of a column's scalar default (what SQLAlchemy sends for a key not given)."""
    column = table.c.get(name)
    default = getattr(column, "default", None)
    if column is None or default is None or not default.is_scalar:
        raise ValueError(f"{table.name}.{name}: no value given and no scalar default to send")
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process(default.arg) if process else default.arg


def fetch_raw(conn: Connection, stmt: Any) -> list[tuple]:
    """All rows of a Core SELECT as the DBAPI returned them: no ``Row`` objects, no processing.

    SQLAlchemy compiles and binds the statement (expanding ``IN`` lists); the rows are read
    from its DBAPI cursor directly. Convert them with ``Columns.result``.
    """
    result = conn.execute(stmt)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()
