"""Dispatch writes a batch as plain rows, one statement per kind: what it must still guarantee.

Run updates, timeline rows and outbox rows are gathered while a batch is decided and written
together; a ``start`` step (``enroll``) sees what the batch decided before it, the timeline keeps
the order decisions were taken in, and how customers are cut into batches changes nothing.
"""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest

from sqlalchemy import event as sa_event
from sqlalchemy import select, update
from sqlmodel import Session

from models import Customer, Message, Run, Timeline
from postsale.engine.types import Alerted, Exited, Held, Sent, Skipped, StartJourney, Suppressed
from postsale.render.types import RenderedEmail
from postsale.spec.model import Category, Touchpoint
from postsale.store.dispatch import claim, dispatch
from postsale.store.ingest import ingest_events, suppress
from postsale.store.runs import aware, outcome_values
from postsale.store.sql import insert_all_new
from tests.store.conftest import FIXTURE, T0
from tests.store.events import customer, event, order

H = timedelta(hours=1)


def table(ctx, model, *order):
    with Session(ctx.engine) as s:
        rows = s.execute(select(model.__table__).order_by(*order)).mappings().all()
    return [dict(r) for r in rows]


def decisions(ctx):
    """The timeline in id order, without the ids."""
    return [{k: v for k, v in row.items() if k != "id"} for row in table(ctx, Timeline, Timeline.id)]


def test_the_timeline_row_of_every_outcome():
    email = RenderedEmail(subject="Thanks", html="<p>x</p>", text="x")
    base = {"at": T0, "customer_id": "c-1", "journey_id": "j", "run_id": "r-1", "template": None,
            "subject": None, "reason": None}
    cases = [
        (Sent("s", "thank_you", Category.marketing, Touchpoint.immediate_post_sale, email, "m-1"),
         {"action": "sent", "step_id": "s", "template": "thank_you", "subject": "Thanks"}),
        (Held("s", T0 + 2 * H, "min_gap 20h"),
         {"action": "held", "step_id": "s", "reason": "min_gap 20h until 2026-11-02T11:00:00Z"}),
        (Held("s", None, "ticket open"), {"action": "held", "step_id": "s", "reason": "ticket open"}),
        (Skipped("s", "condition false"), {"action": "skipped", "step_id": "s", "reason": "condition false"}),
        (Suppressed("s", "unsubscribed"), {"action": "suppressed", "step_id": "s", "reason": "unsubscribed"}),
        (Alerted("a", "look"), {"action": "alert", "step_id": "a", "reason": "look"}),
        (StartJourney("go", "other"), {"action": "start", "step_id": "go", "reason": "start other"}),
        (Exited("completed"), {"action": "exited", "step_id": None, "reason": "completed"}),
        (Exited("exit step", "x"), {"action": "exited", "step_id": "x", "reason": "exit step"}),
    ]
    for outcome, expected in cases:
        assert outcome_values(outcome, at=T0, customer_id="c-1", journey_id="j", run_id="r-1") == {**base, **expected}


def test_a_run_row_changes_only_where_the_engine_moved_it(ctx):
    ingest_events(ctx, [order("o-1", T0, customer())])
    (before,) = table(ctx, Run)
    ctx.clock.set(T0 + timedelta(minutes=1))
    statements = []
    sa_event.listen(ctx.engine, "before_cursor_execute",
                    lambda conn, cursor, sql, params, context, many: statements.append(sql))
    dispatch(ctx)
    (after,) = table(ctx, Run)
    changed = {k for k in before if before[k] != after[k]}
    # thank_you sent, then the 2-day wait: the pointer, its step, when it is due, when it moved
    assert changed == {"step_index", "step_id", "next_run_at", "updated_at"}
    assert (after["step_id"], after["status"], after["context"]) == ("tips", "active", before["context"])
    (run_update,) = [sql for sql in statements if sql.startswith("UPDATE runs")]
    assert "context" not in run_update and "status" not in run_update


def test_a_finished_run_gets_its_end_and_loses_its_due_time(ctx):
    ingest_events(ctx, [event("s1", "order.shipped", T0, customer())])   # order-notice: one send, then done
    dispatch(ctx)
    (run,) = table(ctx, Run)
    assert (run["status"], run["exit_reason"], run["next_run_at"]) == ("completed", "completed", None)
    assert run["ended_at"] is not None and run["step_id"] is None and run["waiting_for"] is None
    assert [(d["action"], d["reason"]) for d in decisions(ctx)] == [("entered", None), ("sent", None),
                                                                    ("exited", "completed")]


def test_forgotten_customers_have_their_runs_ended_where_they_stood(ctx):
    """Forgotten both ways dispatch sees it: a suppression of scope ``all``, or no address."""
    a, b = customer("c-a"), customer("c-b")
    ingest_events(ctx, [order("o-1", T0, a), event("t-1", "ticket.opened", T0, b)])
    dispatch(ctx)                       # a: thank_you, then the 2-day wait; b: on_it, then wait_for
    assert {r["customer_id"]: r["waiting_for"] for r in table(ctx, Run)} == {"c-a": None, "c-b": "ticket.resolved"}
    with Session(ctx.engine) as s:
        suppress(s, a["email"], "forgotten", source=None, now=T0, scope="all")
        s.execute(update(Customer).where(Customer.id == "c-b").values(email=None))
        s.commit()
    ctx.clock.set(T0 + timedelta(days=3))
    report = dispatch(ctx)
    assert (report.customers, report.runs, report.actions["exited"]) == (2, 0, 2)
    ended = {(r["customer_id"], r["step_id"], r["status"], r["exit_reason"], r["next_run_at"], r["waiting_for"])
             for r in table(ctx, Run)}
    assert ended == {("c-a", "tips", "exited", "customer forgotten", None, None),
                     ("c-b", "wait-for-1", "exited", "customer forgotten", None, None)}
    assert sorted((d["customer_id"], d["step_id"]) for d in decisions(ctx) if d["reason"] == "customer forgotten") \
        == [("c-a", "tips"), ("c-b", "wait-for-1")]
    assert sorted(m["template"] for m in table(ctx, Message)) == ["on_it", "thank_you"]


def test_a_start_step_sees_the_runs_its_batch_already_ended(make_ctx, tmp_path):
    """``first`` ends and ``second`` starts it again in one batch: the reentry rule (``after
    30m``) must read ``first`` as ended, and the timeline shows it in that order."""
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    shutil.copy(FIXTURE / "journeys" / "policy.yaml", journeys)
    common = "touchpoint: immediate_post_sale\ncategory: transactional\ntrigger: {event: order.shipped}\n"
    (journeys / "first.yaml").write_text(f"journey: first\nname: First\n{common}"
                                         "entry: {reentry: after 30m}\nsteps:\n  - wait: 1h\n  - send: shipped\n")
    (journeys / "second.yaml").write_text(f"journey: second\nname: Second\n{common}"
                                          "steps:\n  - wait: 1h\n  - start: first\n")
    ctx = make_ctx(journeys=journeys)
    assert not ctx.catalog.errors
    ingest_events(ctx, [event("s1", "order.shipped", T0, customer())])
    dispatch(ctx)
    ctx.clock.set(T0 + H)
    dispatch(ctx)
    runs = sorted(table(ctx, Run), key=lambda r: (aware(r["entered_at"]), r["journey_id"]))
    assert [(r["journey_id"], r["status"]) for r in runs] == [("first", "completed"), ("second", "completed"),
                                                              ("first", "active")]
    first, second, again = (r["id"] for r in runs)
    assert [(d["journey_id"], d["action"], d["run_id"]) for d in decisions(ctx) if aware(d["at"]) == T0 + H] == [
        ("first", "sent", first), ("first", "exited", first), ("first", "entered", again),
        ("second", "exited", second)]


def test_one_batch_or_many_write_the_same_rows(make_ctx):
    """Customers cut into batches of one decide and write exactly what one batch does."""
    def scenario(batch_size):
        ctx = make_ctx()
        ctx.batch_size = batch_size
        people = [customer(f"c-{n}", tz=tz) for n, tz in enumerate(("Europe/Rome", "Asia/Tokyo", "UTC", "Europe/Rome"))]
        ingest_events(ctx, [order(f"o-{n}", T0, c) for n, c in enumerate(people)]
                      + [event("s-2", "order.shipped", T0, people[2]), event("t-3", "ticket.opened", T0, people[3]),
                         event("u-1", "email.unsubscribed", T0, people[1])])
        with Session(ctx.engine) as s:     # one of them forgotten outright
            s.execute(update(Customer).where(Customer.id == "c-0").values(email=None))
            s.commit()
        batches = 0
        for hours in (0, 1, 30, 80, 300):
            ctx.clock.set(T0 + hours * H)
            batches += dispatch(ctx).batches
        # each customer's decisions in the order taken (how customers interleave is the claim's business)
        by_customer = sorted(decisions(ctx), key=lambda d: d["customer_id"])
        return batches, table(ctx, Run, Run.id), table(ctx, Message, Message.id), by_customer

    whole, apart = scenario(500), scenario(1)
    assert apart[0] > whole[0]
    assert apart[1:] == whole[1:]
    assert {d["action"] for d in whole[3]} >= {"entered", "sent", "held", "suppressed", "exited"}


def _three_due(ctx):
    for cid, at in (("c-3", T0), ("c-2", T0), ("c-1", T0 + H), ("c-0", T0 + 5 * H)):
        ctx.clock.set(at)
        ingest_events(ctx, [event(f"cart-{cid}", "cart.abandoned", at, customer(cid), items=[])])
        dispatch(ctx, customer_ids=[cid])               # to the nudge's 1h wait
    return T0 + 3 * H                                   # c-2 and c-3 due at T0+1h, c-1 at T0+2h


def test_claim_takes_the_earliest_due_customers_first(ctx):
    now = _three_due(ctx)
    with Session(ctx.engine) as s:
        in_order = (lambda ids: sorted(ids)) if s.get_bind().dialect.name == "postgresql" else list
        assert claim(s, now, 2) == in_order(["c-2", "c-3"])         # a tie goes by customer id
        assert claim(s, now, 10) == in_order(["c-2", "c-3", "c-1"])
        # the due runs are read a page (``limit`` runs) at a time: one skipped, the next page
        assert claim(s, now, 2, exclude=["c-2"]) == in_order(["c-3", "c-1"])
        assert claim(s, now, 1, exclude=["c-2", "c-3"]) == ["c-1"]
        assert claim(s, now, 10, only=["c-1", "c-0"]) == ["c-1"]
        assert claim(s, now, 10, exclude=["c-1", "c-2", "c-3"]) == []


def test_claim_reads_on_past_customers_another_transaction_holds(ctx):
    now = _three_due(ctx)
    if ctx.engine.dialect.name != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    with Session(ctx.engine) as other, Session(ctx.engine) as s, Session(ctx.engine) as third:
        assert claim(other, now, 1) == ["c-2"]                       # held until ``other`` ends
        assert claim(s, now, 2) == ["c-1", "c-3"]                    # c-2 skipped, one page more
        assert claim(third, now, 2) == []                            # every due customer is held
        other.rollback()
        assert claim(third, now, 10) == ["c-2"]                      # c-1 and c-3 still ``s``'s


def test_an_outbox_row_is_inserted_once_however_often_it_is_written(ctx):
    ingest_events(ctx, [event("s1", "order.shipped", T0, customer())])
    dispatch(ctx)
    (row,) = table(ctx, Message)
    twin = {**row, "id": "another-id", "subject": "twice"}         # same (run, step)
    with Session(ctx.engine) as s:
        insert_all_new(s, Message, [row, twin], ["run_id", "step_id"])
        s.commit()
    assert [(m["id"], m["subject"]) for m in table(ctx, Message)] == [(row["id"], row["subject"])]


def test_sqlite_connections_are_tuned_for_batch_writes(ctx):
    if ctx.engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas")
    with ctx.engine.connect() as conn:
        def pragma(name):
            return conn.exec_driver_sql(f"PRAGMA {name}").scalar()
        assert (pragma("journal_mode"), pragma("synchronous"), pragma("foreign_keys")) == ("wal", 1, 1)
        assert (pragma("cache_size"), pragma("wal_autocheckpoint")) == (-32768, 10000)
