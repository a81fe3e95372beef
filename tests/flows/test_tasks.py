"""What the flows' tasks retry, and the pure shapes the Prefect UI shows (no server needed)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from prefect.states import Completed, Failed
from sqlalchemy.exc import OperationalError

from flows.summary import daily_markdown, dispatch_rows, merge, run_tags, stamp
from flows.tasks import is_transient
from postsale.errors import InvalidEvent, RenderError, TransientDeliveryError
from postsale.store.dispatch import DispatchReport


def _retried(exc: BaseException | None) -> bool:
    state = Completed() if exc is None else Failed(data=exc)
    return is_transient(None, None, state)


def test_only_a_lost_database_or_a_provider_hiccup_is_retried():
    assert _retried(OperationalError("SELECT 1", {}, Exception("database is locked")))
    assert _retried(TransientDeliveryError("503 from provider", status=503))
    assert not _retried(InvalidEvent("customer.email", "required"))
    assert not _retried(RenderError("'order' is undefined"))
    assert not _retried(ValueError("bad period"))
    assert not _retried(None)


def test_dispatch_rows_cover_every_journey_and_count_failures():
    total, part = DispatchReport(), DispatchReport(customers=2, runs=3, batches=1)
    part.count("post-purchase", "sent")
    part.count("post-purchase", "held")
    part.count("gone", "exited")
    merge(total, part)
    merge(total, part)
    rows = {r["journey"]: r for r in dispatch_rows(total, {"post-purchase": 1},
                                                     {"post-purchase": "immediate_post_sale", "quiet": "pre_sale"})}
    assert set(rows) == {"post-purchase", "quiet", "gone"}
    assert (rows["post-purchase"]["sent"], rows["post-purchase"]["held"], rows["post-purchase"]["failed"]) == (2, 2, 1)
    assert rows["quiet"]["sent"] == 0 and rows["gone"]["touchpoint"] == "-"
    assert (total.customers, total.batches) == (4, 2)


def test_run_tags_name_touchpoints_then_journeys():
    assert run_tags(["b", "a", "gone"], {"a": "ongoing_care", "b": "pre_sale"}) == \
        ["ongoing_care", "pre_sale", "journey:a", "journey:b", "journey:gone"]


def test_markdown_cells_cannot_break_the_table():
    at = datetime(2026, 11, 3, 10, 0)   # naive, as SQLite returns it: UTC
    text = daily_markdown([], [{"at": at, "journey": "j", "customer": "c", "message": "a | b\nc"}],
                          since=datetime(2026, 11, 2, tzinfo=timezone.utc), until=at.replace(tzinfo=timezone.utc),
                          touchpoints={})
    assert "| 2026-11-03T10:00Z | j | c | a \\| b c |" in text
    assert "Nothing happened in this period." in text and stamp(at) == "2026-11-03T10:00Z"
    assert Counter(text.splitlines())["## SLA alerts (1)"] == 1
