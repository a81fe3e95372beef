"""What operators see of a run in the Prefect UI: decision logs, alert events and run tags."""

from __future__ import annotations

import logging
from typing import Iterable

from prefect import get_client
from prefect.runtime import flow_run

from flows.events import emit_alert


class NoticeLog:
    """Logs a run's holds and skips at INFO and its alerts at WARNING.

    Holds and skips stop at ``limit`` lines per run (a quiet-hours night holds thousands at
    once; ``postsale report`` has them all), then one line says how many were left out.
    Alerts are never left out, and each one is also a ``postsale.alert`` Prefect event.
    """

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, limit: int = 1000) -> None:
        self.logger, self.limit = logger, limit
        self.logged = self.dropped = 0

    def log(self, notices: Iterable[tuple[str, str]]) -> None:
        for level, line in notices:
            if level == "warning":
                self.logger.warning(line)
                journey, _, message = line.removeprefix("ALERT ").partition(": ")
                emit_alert(journey, message or line)
            elif self.logged < self.limit:
                self.logger.info(line)
                self.logged += 1
            else:
                self.dropped += 1

    def close(self) -> None:
        if self.dropped:
            self.logger.info("%d more holds and skips not logged here: see `postsale report`", self.dropped)


def add_run_tags(tags: Iterable[str]) -> list[str]:
    """Add tags to the current flow run (what it did is only known at its end)."""
    current = list(flow_run.tags or [])
    merged = current + [t for t in tags if t not in current]
    if merged != current and flow_run.id:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, tags=merged)
    return merged
