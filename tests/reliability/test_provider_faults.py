"""Provider faults (issue 9, SPEC §9.7): a long mixed run of 429 with ``X-RateLimit-Reset``,
500, 503, TCP resets, plain timeouts, and timeouts or resets *after the provider accepted the
mail*, through ``deliver`` on a virtual clock against the local SendGrid-like server
(``tests/reliability/provider.py``: the faults are real ones on a loopback socket).

The provider's events (our message id in ``custom_args``) reach us the way the webhook
delivers them: for most accepted requests at once, for some late (after the reconcile
window), for a few never. At the end, by what the provider really took (per our message id):

- every message was accepted at least once and is ``sent``: delayed, never lost;
- a message was accepted twice only where the rules allow one resend (an accepted attempt
  whose answer we lost and whose events did not arrive within ``reconcile_after``), at most
  once per such attempt, and then it is flagged ``reconcile='resent'``;
- an accepted-but-unanswered attempt whose events arrived in time was never resent;
- after a 429 no message of that request was tried again before ``X-RateLimit-Reset``.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest

from postsale.delivery.sendgrid import SendGridTransport
from postsale.delivery.webhook import parse_events
from postsale.store.delivery import deliver
from postsale.store.delivery_events import record_events
from tests.delivery.conftest import API_KEY, queue_messages, rows
from tests.fakes_sendgrid import FakeSendGrid
from tests.reliability.provider import (ACCEPT_THEN_HANG, ACCEPT_THEN_RESET, RESET, HostileSendGrid, events_for,
                                        message_ids)

WINDOW = timedelta(minutes=15)
TIMEOUT = 0.4
RATE_RESET = 3 * 3600     # seconds until X-RateLimit-Reset in every 429: beyond any backoff


def _all_kinds() -> list:
    # Built when queued: a 429's X-RateLimit-Reset is an absolute time, RATE_RESET from now.
    return [FakeSendGrid.rate_limited(reset_in=RATE_RESET), 500, 503, RESET, "hang", ACCEPT_THEN_HANG,
            ACCEPT_THEN_RESET]


def _faults(rng: random.Random) -> list:
    return rng.choices(_all_kinds(), weights=[1, 2, 2, 2, 2, 2, 2], k=rng.randint(2, 10))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mixed_provider_faults_delay_mail_but_lose_and_duplicate_none(make_ctx, seed):
    rng = random.Random(seed)
    ctx = make_ctx()
    ids = queue_messages(ctx, 80, prefix=f"s{seed}-")
    accepted: Counter[str] = Counter()                  # copies the provider took, per message
    excused: Counter[str] = Counter()                   # lost answers whose events came late or never
    attempts: dict[str, list[tuple[datetime, int | None]]] = defaultdict(list)   # (virtual time, status)
    late: list[tuple[datetime, list[dict]]] = []        # events the provider posts only later
    seen = 0
    with HostileSendGrid(api_key=API_KEY, hang_seconds=TIMEOUT * 2.5) as fake:
        transport = SendGridTransport(API_KEY, host=fake.url, timeout=TIMEOUT, concurrency=4)
        try:
            for round_ in range(300):
                now = ctx.clock.now()
                # every kind must be met at least once, whatever the draw: the first round opens with each
                fake.queue(*(_all_kinds() if round_ == 0 else ()), *_faults(rng))
                deliver(ctx, transport, batch_size=rng.choice([5, 10, 20]), max_batches=2, reconcile_after=WINDOW)
                prompt = [events for at, events in late if at <= now]
                late = [(at, events) for at, events in late if at > now]
                for request in fake.received[seen:]:
                    for mid in message_ids(request):
                        attempts[mid].append((now, request.status))
                    if request.status is None or not 200 <= request.status < 300:
                        continue
                    for mid in message_ids(request):
                        accepted[mid] += 1
                    events = events_for(request)
                    fate = rng.random() if fake.lost_answer(request) else 0.0
                    if fate < 0.7:
                        prompt.append(events)
                    else:
                        excused.update(message_ids(request))
                        if fate < 0.85:             # after the window: the resend has gone out
                            late.append((now + 2 * WINDOW, events))
                seen = len(fake.received)
                for events in prompt:
                    record_events(ctx, parse_events(json.dumps(events), now=ctx.clock.now()).events)
                state = rows(ctx)
                if not late and all(m.status in ("sent", "failed") for m in state.values()):
                    break
                ctx.clock.advance(minutes=rng.choice([1, 10, 20, 90]))
        finally:
            transport.close()
        assert not fake.problems()

    state = rows(ctx)
    assert Counter(m.status for m in state.values()) == {"sent": len(ids)}
    assert set(accepted) == set(ids), "a message the outbox calls sent never reached the provider"
    over = {mid: (accepted[mid], excused[mid]) for mid in ids if accepted[mid] > 1 + excused[mid]}
    assert not over, f"copies beyond the one resend the rules allow: {over}"
    duplicates = {mid for mid, n in accepted.items() if n > 1}
    unflagged = {mid: (state[mid].reconcile, state[mid].error) for mid in duplicates if state[mid].reconcile != "resent"}
    assert not unflagged, unflagged

    for mid, tries in attempts.items():
        for (at, status), (later, _) in zip(tries, tries[1:]):
            if status == 429:
                assert (later - at).total_seconds() >= RATE_RESET - 1, \
                    f"{mid} was tried {later - at} after a 429 that said {RATE_RESET}s"
    kinds = Counter("lost answer" if fake.lost_answer(r) else r.status for r in fake.received)
    assert kinds[429] and kinds[500] + kinds[503] and kinds[None] and kinds["lost answer"] >= 3, kinds
    print(f"\nseed {seed}: {len(fake.received)} requests {dict(kinds)}; {sum(accepted.values())} accepted "
          f"for {len(ids)} messages; {len(duplicates)} flagged duplicates (excused: {sum(excused.values())})")
