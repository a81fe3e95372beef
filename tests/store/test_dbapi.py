"""Rows written through the DBAPI cursor are the rows SQLAlchemy would have written."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import insert, select, update
from sqlalchemy.sql import bindparam
from sqlmodel import Session

from models import Message, Run, Timeline
from postsale.store.dbapi import Columns, Statement, fetch_raw
from postsale.store.decide import OUTBOX_COLUMNS, TIMELINE_COLUMNS
from postsale.store.sql import dialect_insert
from tests.store.conftest import T0

ROME = timezone(timedelta(hours=1))


def message(n: int, at: datetime) -> dict:
    return {"id": f"m-{n}", "run_id": f"r-{n}", "step_id": "s", "customer_id": "c", "journey_id": "j",
            "touchpoint": "immediate_post_sale", "category": "marketing", "is_survey": n % 2 == 0,
            "survey_id": None, "template": "t", "to_email": "a@example.com", "to_name": "Ä “quoted”",
            "from_email": "shop@example.com", "reply_to": None, "subject": "Grazie! ✓", "html": "<p>ciao</p>",
            "text_body": "ciao", "headers": {"X-Tag": "è", "List": [1, 2]}, "status": "queued", "created_at": at}


def raw_table(session, table, key):
    """The stored values as the DBAPI returns them (SQLite: the very strings written)."""
    return fetch_raw(session.connection(), select(table).order_by(key))


def test_inserts_and_updates_write_what_sqlalchemy_writes(ctx):
    dialect = ctx.engine.dialect
    times = [T0, T0.astimezone(ROME), T0 + timedelta(microseconds=1), T0]    # UTC, another zone, a repeat
    ours = [message(n, at) for n, at in enumerate(times)]
    theirs = [{**m, "id": "x" + m["id"], "run_id": "x" + m["run_id"]} for m in ours]
    columns = Columns(Message.__table__, OUTBOX_COLUMNS, dialect)
    stmt = Statement(dialect_insert(dialect, Message.__table__).on_conflict_do_nothing(
        index_elements=["run_id", "step_id"]), OUTBOX_COLUMNS, dialect)
    with Session(ctx.engine) as s:
        conn = s.connection()
        stmt.executemany(conn, [columns.bind([m[k] for k in OUTBOX_COLUMNS]) for m in ours])
        stmt.executemany(conn, [columns.bind([ours[0][k] for k in OUTBOX_COLUMNS])])   # a duplicate: ignored
        s.execute(insert(Message.__table__), theirs)
        s.commit()
        stored = raw_table(s, Message.__table__, Message.id)
    assert len(stored) == 8
    by_id = {row[0]: row for row in stored}
    for m in ours:                       # every column, the default ``attempts`` included
        assert by_id[m["id"]][2:] == by_id["x" + m["id"]][2:]


def test_run_updates_set_only_their_columns(ctx):
    dialect = ctx.engine.dialect
    runs = Run.__table__
    keys = ("next_run_at", "context", "run_id_")
    stmt = Statement(update(runs).where(runs.c.id == bindparam("run_id_")), keys, dialect, column_keys=keys[:-1])
    assert stmt.sql.startswith("UPDATE runs SET next_run_at")
    columns = Columns(runs, keys[:-1], dialect)
    with Session(ctx.engine) as s:
        ctx.versions.register()
        base = {"customer_id": "c", "journey_id": "j", "version_id": ctx.versions.current_id("post-purchase"),
                "touchpoint": "immediate_post_sale", "category": "marketing", "entered_at": T0, "context": {}}
        s.execute(insert(runs), [{**base, "id": "a"}, {**base, "id": "b"}])
        stmt.executemany(s.connection(), [columns.bind([T0 + timedelta(hours=1), {"k": "é"}]) + ("a",)])
        s.execute(update(runs).where(runs.c.id == "b").values(next_run_at=T0 + timedelta(hours=1), context={"k": "é"}))
        s.commit()
        a, b = raw_table(s, runs, runs.c.id)
    assert a[1:] == b[1:]


def test_results_convert_as_sqlalchemy_converts(ctx):
    with Session(ctx.engine) as s:
        s.execute(insert(Timeline.__table__), [{"at": T0, "customer_id": "c", "journey_id": "j", "run_id": "r",
                                                "step_id": None, "action": "sent", "template": None,
                                                "subject": "ü", "reason": None}])
        s.commit()
        columns = Columns(Timeline.__table__, TIMELINE_COLUMNS, ctx.engine.dialect)
        (raw,) = fetch_raw(s.connection(), select(*[Timeline.__table__.c[k] for k in TIMELINE_COLUMNS]))
        (row,) = s.execute(select(*[Timeline.__table__.c[k] for k in TIMELINE_COLUMNS])).all()
    assert type(raw) is tuple
    assert columns.result(raw) == list(row)
