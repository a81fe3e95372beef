"""Frequency caps and ``min_gap`` as arithmetic over the customer's send history (SPEC.md §5).

Every email in the history counts, transactional included, but only marketing mail is held
back. Windows roll: a record sent at ``t`` counts against a ``max per P`` cap while
``now < t + P``. Once a constraint frees up it stays free (until something else is sent), so
the first moment every constraint allows is simply the latest of their individual answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from postsale.engine.types import SentRecord
from postsale.spec.model import Cap, Category, Policy

# A cap of zero never frees up; callers treat this moment as "never" and must not do
# calendar arithmetic on it.
NEVER = datetime.max.replace(tzinfo=timezone.utc)

Constraint = tuple[datetime, str | None]


def earliest_send(now: datetime, history: Iterable[SentRecord], *, journey_id: str,
                  category: Category, is_survey: bool, policy: Policy) -> tuple[datetime, str | None]:
    """The earliest instant >= ``now`` this message may go out, and why not now (or None).

    Surveys are marketing whatever ``category`` says. The reason is the constraint that frees
    up last, e.g. ``"marketing cap 3 per 7d"``, ``"min_gap 20h"``, ``"journey cap 2 per 7d"``.
    """
    if category is Category.transactional and not is_survey:
        return now, None
    records = tuple(history)
    checks: list[Constraint] = []
    checks += _cap(now, [r.at for r in records], policy.marketing_cap, "marketing")
    checks += _cap(now, [r.at for r in records if r.journey_id == journey_id],
                   policy.journey_cap, "journey")
    if is_survey:
        checks += _cap(now, [r.at for r in records if r.is_survey], policy.survey_cap, "survey")
    moment, reason = now, None
    for at, why in checks:
        if at > moment:
            moment, reason = at, why
    return moment, reason


def _cap(now: datetime, times: list[datetime], cap: Cap | None, label: str) -> list[Constraint]:
    if cap is None:
        return []
    window_reason, gap_reason = _reasons(cap, label)
    out = [_window(now, times, cap, window_reason)]
    if cap.min_gap:
        out.append(_gap(now, times, cap, gap_reason))
    return out


@lru_cache(maxsize=64)
def _reasons(cap: Cap, label: str) -> tuple[str, str]:
    """How a hold by this cap reads: the same few strings for every send, so made once."""
    # The marketing cap's gap is the policy's `min_gap` (since any email at all).
    name = "min_gap" if label == "marketing" else f"{label} min_gap"
    return (f"{label} cap {cap.max} per {describe(cap.per)}",
            f"{name} {describe(cap.min_gap)}" if cap.min_gap else "")


def _window(now: datetime, times: list[datetime], cap: Cap, reason: str) -> Constraint:
    if cap.max <= 0:
        return NEVER, reason
    live = sorted((t for t in times if now < t + cap.per), reverse=True)
    if len(live) < cap.max:
        return now, None
    # With max-1 newer records still allowed, the send may go once the max-th newest expires.
    return live[cap.max - 1] + cap.per, reason


def _gap(now: datetime, times: list[datetime], cap: Cap, reason: str) -> Constraint:
    assert cap.min_gap is not None
    if not times:
        return now, None
    free_at = max(times) + cap.min_gap
    return (free_at, reason) if free_at > now else (now, None)



def describe(delta: timedelta) -> str:
    """``7d``, ``30d``, ``20h``, ``1d12h``: days as the largest unit, the way policies are
    written (``format_duration`` would say ``1w`` for ``7d``)."""
    seconds, out = int(delta.total_seconds()), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            out.append(f"{amount}{unit}")
    return "".join(out) or "0s"
