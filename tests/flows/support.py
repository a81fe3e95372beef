"""Event builders and Prefect API readers for the flow tests."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar
from uuid import UUID

T = TypeVar("T")
UTC = timezone.utc
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)   # a Monday: 10:00 in Rome, 01:00 in Los Angeles


def eventually(probe: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.2) -> T:
    """Poll ``probe`` until it returns something truthy (Prefect records task runs and logs
    asynchronously); fail with the last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            assert value, f"still {value!r} after {timeout}s"
            return value
        time.sleep(interval)


def customer(cid: str, tz: str = "Europe/Rome", **extra: Any) -> dict[str, Any]:
    return {"id": cid, "email": f"{cid}@example.com", "name": cid.upper(), "timezone": tz, "locale": "en", **extra}


def event(eid: str, etype: str, at: datetime, cust: dict | None = None, **data: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": eid, "type": etype, "occurred_at": at.isoformat(), "data": data}
    if cust is not None:
        out["customer"] = cust
    return out


def order(eid: str, at: datetime, cust: dict, *, sku: str = "KETTLE-1", total: float = 129.0) -> dict[str, Any]:
    return event(eid, "order.placed", at, cust, order_id=eid, total=total, currency="EUR",
                 items=[{"sku": sku, "name": "Steel kettle", "category": "kitchen", "quantity": 1, "price": total}])


# ---------------------------------------------------------------- reading what Prefect recorded

def run_id(state: Any) -> UUID:
    """The flow run id of a state returned by ``flow(..., return_state=True)``."""
    return state.state_details.flow_run_id


def flow_run(flow_run_id: UUID) -> Any:
    from prefect import get_client
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def task_runs(flow_run_id: UUID, *, at_least: int = 1) -> list[Any]:
    """The task runs of a flow run, once Prefect has recorded ``at_least`` of them."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    def probe() -> list[Any]:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return runs if len(runs) >= at_least and all(r.state and r.state.is_final() for r in runs) else []

    return eventually(probe)


def artifacts(flow_run_id: UUID, key: str) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    def probe() -> list[Any]:
        with get_client(sync_client=True) as client:
            return client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))

    return eventually(probe)


def logs(flow_run_id: UUID, *, containing: str = "") -> list[Any]:
    """The flow run's logs (its tasks' included), once one contains ``containing``."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()

    def probe() -> list[Any]:
        with get_client(sync_client=True) as client:
            found = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                                     limit=200)
        return found if any(containing in log.message for log in found) else []

    return eventually(probe)
