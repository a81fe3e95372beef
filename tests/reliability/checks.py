"""What "nothing lost, nothing sent twice, no cap broken" means, checked on the database a
``serve`` left behind and on what the local SendGrid-like server received.

Caps are recomputed from the outbox the way ``postsale.engine.caps`` states them (SPEC §5):
every email counts, transactional included; only marketing mail is held back, by the
marketing and per-journey windows, ``min_gap`` and quiet hours in the customer's zone.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import Customer, Message, Run, Timeline
from models import Event as EventRow
from postsale.spec.model import Policy
from postsale.store.ingest import UNFINISHED
from postsale.store.runs import aware
from tests.fakes_sendgrid import FakeSendGrid
from tests.reliability.provider import message_ids


@dataclass(frozen=True)
class Delivery:
    messages: int          # outbox rows
    copies: int            # personalizations the provider accepted
    duplicates: int        # messages it accepted more than once
    resent: int            # rows flagged reconcile='resent' (a resend without evidence)
    evidence: int          # rows settled from provider events after an unknown outcome


def assert_every_event_stored(engine: Engine, acknowledged: set[str], expected: set[str]) -> None:
    """Every event was eventually acknowledged, and every acknowledged one is in the database."""
    assert acknowledged == expected, f"{len(expected - acknowledged)} events never got a 202"
    with Session(engine) as session:
        stored = set(session.scalars(select(EventRow.id).where(EventRow.id.in_(list(expected)))))
    assert stored == expected, f"acknowledged but not stored: {sorted(expected - stored)[:10]}"


def assert_sent_exactly_once(engine: Engine, fake: FakeSendGrid) -> Delivery:
    """Every outbox row is sent and the provider took each exactly once; one row per (run, step)
    and one ``sent`` decision per row."""
    with Session(engine) as session:
        rows = {m.id: m for m in session.scalars(select(Message).where(Message.category != "ops"))}
        twice = session.execute(select(Timeline.run_id, Timeline.step_id).where(Timeline.action == "sent")
                                .group_by(Timeline.run_id, Timeline.step_id).having(func.count() > 1)).all()
        decided = set(session.execute(select(Timeline.run_id, Timeline.step_id).where(Timeline.action == "sent")))
    copies = Counter(mid for request in fake.accepted for mid in message_ids(request))
    statuses = Counter(m.status for m in rows.values())
    assert statuses == {"sent": len(rows)}, f"not every email went out: {dict(statuses)}"
    assert not twice, f"a step decided 'sent' twice: {twice[:5]}"
    assert decided == {(m.run_id, m.step_id) for m in rows.values()}, "a sent decision without its email, or back"
    unknown = set(copies) - set(rows)
    assert not unknown, f"the provider got mail the outbox does not know: {sorted(unknown)[:5]}"
    missing = set(rows) - set(copies)
    assert not missing, f"sent in the outbox, never received by the provider: {sorted(missing)[:5]}"
    duplicates = {mid: (n, rows[mid].reconcile, rows[mid].error) for mid, n in copies.items() if n > 1}
    unflagged = {mid: d for mid, d in duplicates.items() if d[1] != "resent"}
    assert not unflagged, f"duplicates not flagged 'resent': {unflagged}"
    return Delivery(messages=len(rows), copies=sum(copies.values()), duplicates=len(duplicates),
                    resent=sum(1 for m in rows.values() if m.reconcile == "resent"),
                    evidence=sum(1 for m in rows.values() if m.reconcile == "evidence"))


def assert_nothing_due(engine: Engine, before: datetime) -> int:
    """No unfinished run was due at ``before`` and left behind; returns the runs still waiting."""
    with Session(engine) as session:
        stuck = session.execute(select(Run.id, Run.journey_id, Run.next_run_at)
                                .where(Run.status.in_(UNFINISHED), Run.next_run_at <= before)).all()
        waiting = session.scalar(select(func.count()).select_from(Run).where(Run.status.in_(UNFINISHED)))
    assert not stuck, f"{len(stuck)} runs were due and left behind: {stuck[:5]}"
    return waiting or 0


def assert_caps(engine: Engine, policy: Policy) -> int:
    """Recompute every marketing email's caps, gap and quiet hours; returns how many were checked."""
    cap, per_journey, quiet = policy.marketing_cap, policy.journey_cap, policy.quiet_hours
    with Session(engine) as session:
        rows = session.execute(select(Message.customer_id, Message.created_at, Message.journey_id, Message.category)
                               .where(Message.category.in_(("marketing", "transactional")),
                                      Message.status != "failed")).all()
        zones = dict(session.execute(select(Customer.id, Customer.timezone)).all())
    log: dict[str, list[tuple[datetime, str, str]]] = defaultdict(list)
    for cid, at, journey, category in rows:
        log[cid].append((aware(at), journey, category))
    checked = 0
    for cid, sends in log.items():
        for n, (at, journey, category) in enumerate(sends):
            if category != "marketing":
                continue
            checked += 1
            earlier = [(t, j) for m, (t, j, _) in enumerate(sends) if m != n and t <= at]
            if cap is not None:
                if cap.min_gap:
                    assert not [t for t, _ in earlier if t > at - cap.min_gap], f"{cid}: min_gap broken at {at}"
                assert len([t for t, _ in earlier if t > at - cap.per]) < cap.max, f"{cid}: marketing cap at {at}"
            if per_journey is not None:
                assert len([t for t, j in earlier if j == journey and t > at - per_journey.per]) < per_journey.max, \
                    f"{cid}: journey cap of {journey} at {at}"
            if quiet is not None:
                local = at.astimezone(ZoneInfo(zones[cid])).time()
                assert quiet.end <= local < quiet.start, f"{cid}: marketing in quiet hours ({local})"
    return checked
