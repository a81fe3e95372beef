"""``earliest_send``: rolling windows, min_gap, per-journey and survey caps (SPEC.md §5)."""

from __future__ import annotations

from datetime import timedelta

from postsale.engine import earliest_send
from postsale.engine.caps import NEVER
from postsale.spec.model import Category
from tests.factories import T0, cap, make_policy, no_limits_policy, sent_record

D, H = timedelta(days=1), timedelta(hours=1)
MKT, TX = Category.marketing, Category.transactional
POLICY = make_policy()      # marketing 3/7d min_gap 20h, journey 2/7d, surveys 1/30d


def when(history, *, journey_id="care", category=MKT, is_survey=False, policy=POLICY, now=T0):
    return earliest_send(now, history, journey_id=journey_id, category=category,
                         is_survey=is_survey, policy=policy)


def test_nothing_sent_means_now():
    assert when([]) == (T0, None)


def test_marketing_cap_waits_for_the_oldest_counted_email_to_leave_the_window():
    history = [sent_record(T0 - 6 * D, "a"), sent_record(T0 - 3 * D, "b"), sent_record(T0 - 2 * D, "c")]
    assert when(history) == (T0 + D, "marketing cap 3 per 7d")


def test_rolling_window_edge():
    # A record at t counts while now < t + 7d: exactly 7 days old no longer counts.
    older = [sent_record(T0 - 3 * D, "b"), sent_record(T0 - 2 * D, "c")]
    assert when([sent_record(T0 - 7 * D, "a"), *older]) == (T0, None)
    just_inside = T0 - 7 * D + timedelta(seconds=1)
    assert when([sent_record(just_inside, "a"), *older]) == (T0 + timedelta(seconds=1),
                                                              "marketing cap 3 per 7d")


def test_transactional_mail_counts_but_is_never_capped():
    history = [sent_record(T0 - k * D, "orders", category=TX) for k in (1, 2, 3)]
    assert when(history) == (T0 + 4 * D, "marketing cap 3 per 7d")
    assert when(history, category=TX) == (T0, None)
    assert when([sent_record(T0 - H, "orders", category=TX)], category=TX) == (T0, None)


def test_min_gap_since_the_last_email_of_any_kind():
    assert when([sent_record(T0 - 10 * H, "orders", category=TX)]) == (T0 + 10 * H, "min_gap 20h")
    assert when([sent_record(T0 - 20 * H, "orders")]) == (T0, None)


def test_journey_cap_counts_only_that_journey():
    history = [sent_record(T0 - 5 * D, "care"), sent_record(T0 - 2 * D, "care")]
    assert when(history, journey_id="care") == (T0 + 2 * D, "journey cap 2 per 7d")
    assert when(history, journey_id="welcome") == (T0, None)


def test_survey_cap_counts_only_surveys_and_binds_only_surveys():
    history = [sent_record(T0 - 10 * D, "other", is_survey=True)]
    assert when(history, is_survey=True) == (T0 + 20 * D, "survey cap 1 per 30d")
    assert when(history) == (T0, None)
    assert when([sent_record(T0 - 10 * D, "other")], is_survey=True) == (T0, None)


def test_a_survey_is_marketing_whatever_category_is_passed():
    history = [sent_record(T0 - 10 * D, "other", is_survey=True)]
    assert when(history, category=TX, is_survey=True)[1] == "survey cap 1 per 30d"


def test_the_latest_constraint_wins_and_names_itself():
    # Journey cap frees in 1 day, min_gap in 19 hours: the journey cap is the reason.
    history = [sent_record(T0 - 6 * D, "care"), sent_record(T0 - H, "care")]
    assert when(history) == (T0 + D, "journey cap 2 per 7d")
    # Only the gap binds.
    assert when([sent_record(T0 - H, "care")]) == (T0 + 19 * H, "min_gap 20h")


def test_disabled_caps_and_a_journey_min_gap():
    history = [sent_record(T0 - H, "care")] * 10
    assert when(history, policy=no_limits_policy()) == (T0, None)
    policy = no_limits_policy(journey_cap=cap(5, "7d", min_gap="2d"))
    assert when([sent_record(T0 - D, "care")], policy=policy) == (T0 + D, "journey min_gap 2d")


def test_a_zero_cap_never_frees_up():
    assert when([], policy=no_limits_policy(marketing_cap=cap(0, "7d"))) == (NEVER, "marketing cap 0 per 7d")


def test_future_records_count_conservatively():
    # A record stamped later than now (clock skew between dispatchers) still counts.
    history = [sent_record(T0 + H, "a"), sent_record(T0 - D, "b"), sent_record(T0 - 2 * D, "c")]
    moment, reason = when(history)
    assert reason == "marketing cap 3 per 7d" and moment == T0 + 5 * D
