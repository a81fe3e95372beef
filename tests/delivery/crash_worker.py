"""A delivery process to kill: ``python -m tests.delivery.crash_worker DB_URL SENDGRID_URL START MARKER``.

It runs the real ``deliver`` with the real SendGrid transport, and once the provider has
answered 202 it writes MARKER and parks before ``deliver`` can commit anything: the test
SIGKILLs it there, between the provider's acceptance and our database commit.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Sequence

from postsale.clock import VirtualClock
from postsale.delivery.base import OutgoingEmail, SendResult
from postsale.delivery.sendgrid import SendGridTransport
from postsale.settings import DEV_SECRET
from postsale.store.context import Context
from postsale.store.delivery import deliver
from tests.store.conftest import FIXTURE


class ParkAfterSend:
    name = "sendgrid"

    def __init__(self, inner: SendGridTransport, marker: Path) -> None:
        self.inner, self.marker = inner, marker

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        results = self.inner.send(batch)
        self.marker.write_text(json.dumps({r.message_id: r.ok for r in results}))
        time.sleep(120)              # killed here: the 202s are in, nothing is committed
        return results


def main(db_url: str, sendgrid_url: str, start: str, marker: str) -> None:
    ctx = Context.build(database_url=db_url, journeys=FIXTURE / "journeys", templates=FIXTURE / "templates",
                        secret=DEV_SECRET, clock=VirtualClock(datetime.fromisoformat(start)))
    transport = SendGridTransport("SG.test-key", host=sendgrid_url, timeout=2)
    deliver(ctx, ParkAfterSend(transport, Path(marker)))
    sys.exit("not killed")


if __name__ == "__main__":
    main(*sys.argv[1:5])
