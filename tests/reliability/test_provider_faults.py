"""Provider faults (issue 9, SPEC §9.7): a long mixed run of 429 (with X-RateLimit-Reset), 500,
503, dropped connections and timeouts after the provider may have accepted the mail, through
``deliver`` with a virtual clock against the local SendGrid-like server.

At the end every message was received by the provider (as the fake saw it, counted by our
message id in ``custom_args``) exactly once, none lost. The one duplicate the outbox allows
(postsale.store.delivery, guarantee 4: an attempt the provider accepted, whose answer we lost,
and for which no event arrived within ``reconcile_after``) is provoked on purpose for a few
messages and must then be flagged ``reconcile='resent'``.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import timedelta

import pytest

from postsale.delivery.sendgrid import SendGridTransport
from postsale.delivery.webhook import parse_events
from postsale.store.delivery import deliver
from postsale.store.delivery_events import record_events
from tests.delivery.conftest import API_KEY, queue_messages, rows
from tests.fakes_sendgrid import FakeSendGrid

WINDOW = timedelta(minutes=15)
TIMEOUT = 0.4


def _mid(request) -> str | None:
    personalizations = (request.payload or {}).get("personalizations") or [{}]
    return (personalizations[0].get("custom_args") or {}).get("postsale_message_id")


@pytest.mark.parametrize("seed", [1, 2])
def test_mixed_provider_faults_delay_mail_but_lose_and_duplicate_none(make_ctx, seed):
    rng = random.Random(seed)
    ctx = make_ctx()
    ids = queue_messages(ctx, 80, prefix=f"s{seed}-")
    received: Counter[str] = Counter()      # what the provider really took, per our message id
    silent: Counter[str] = Counter()        # accepted while we lost the answer, and no event sent
    seen = 0
    with FakeSendGrid(api_key=API_KEY, hang_seconds=0.05) as fake:
        transport = SendGridTransport(API_KEY, host=fake.url, timeout=TIMEOUT, concurrency=4)
        try:
            for round_no in range(200):
                # Even rounds: the server drops the connection without answering (a reset after
                # the request went out); odd rounds: it holds it past our timeout.
                fake.hang_seconds = 0.05 if round_no % 2 == 0 else TIMEOUT * 2.5
                faults = rng.choices([FakeSendGrid.rate_limited(reset_in=1), 500, 503, "hang", 202],
                                     weights=[1, 2, 2, 3, 3], k=rng.randint(2, 10))
                fake.queue(*[f for f in faults if f != 202])
                deliver(ctx, transport, batch_size=rng.choice([5, 10, 20]), max_batches=2, reconcile_after=WINDOW)
                evidence = []
                for request in fake.received[seen:]:
                    mid = _mid(request)
                    if request.status is not None and 200 <= request.status < 300:
                        received[mid] += 1
                    elif request.status is None and rng.random() < 0.6:
                        # The provider took it although we never heard back: it sends events
                        # (as it would through the webhook), except now and then it stays silent.
                        received[mid] += 1
                        if rng.random() < 0.85:
                            evidence.append({"email": f"c-{mid}@example.com", "event": "processed",
                                             "timestamp": 1_790_000_000, "sg_event_id": f"ev-{mid}-{round_no}",
                                             "sg_message_id": f"lost-{mid}.filter-1",
                                             "postsale_message_id": mid})
                        else:
                            silent[mid] += 1
                seen = len(fake.received)
                if evidence:
                    record_events(ctx, parse_events(json.dumps(evidence), now=ctx.clock.now()).events)
                state = rows(ctx)
                if all(m.status in ("sent", "failed") for m in state.values()):
                    break
                ctx.clock.advance(minutes=rng.choice([1, 10, 20, 90]))
        finally:
            transport.close()
        # The fake was stopped: the final books are closed.
        assert not fake.problems()

    state = rows(ctx)
    assert {m.status for m in state.values()} == {"sent"}, Counter(m.status for m in state.values())
    assert set(received) == set(ids), "a message the outbox calls sent never reached the provider"
    duplicates = {mid for mid, n in received.items() if n > 1}
    # A duplicate only where the module docstring allows it (each silent acceptance of a
    # timed-out attempt may cost one copy), and then flagged.
    extra = {mid: (received[mid], silent[mid]) for mid in ids if received[mid] > 1 + silent[mid]}
    assert not extra, extra
    flags = {mid: (state[mid].reconcile, state[mid].error, received[mid], silent[mid]) for mid in duplicates}
    assert all(f[0] == "resent" for f in flags.values()), flags
    faults = sum(1 for r in fake.received if r.status is None or r.status >= 400)
    assert faults >= 10, "the run hardly exercised any fault"
    print(f"\nseed {seed}: {len(fake.received)} requests, {faults} faults, "
          f"{sum(received.values())} received for {len(ids)} messages, {len(duplicates)} flagged duplicates")
