"""Property: however journeys are timed, marketing mail never breaks a cap, min_gap or quiet hours.

A month is simulated the way ``simulate`` drives the engine: the clock jumps to the next due
run, the customer's due runs are advanced together, and every send joins the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from postsale.engine import advance_customer
from postsale.engine.types import RunState, Sent
from postsale.spec.model import Category, Policy, Touchpoint
from postsale.timing import in_quiet_hours
from tests.factories import (T0, cap, make_customer, make_customer_state, make_journey, make_run, quiet,
                             send, sent_record, survey, wait)
from tests.fakes import FakeRenderer

MONTH = timedelta(days=30)


@dataclass(frozen=True)
class Mail:
    at: object
    journey_id: str
    category: Category
    is_survey: bool
    message_id: str

    @property
    def marketing(self) -> bool:
        return self.category is Category.marketing


@st.composite
def journeys(draw, index: int):
    steps = []
    for n in range(draw(st.integers(1, 6))):
        hours = draw(st.sampled_from([0, 0, 1, 5, 13, 24, 50, 100]))
        if hours:
            steps.append(wait(f"{hours}h", id=f"w{n}",
                              at=draw(st.sampled_from([None, None, "10:00", "02:30"]))))
        expire = draw(st.sampled_from([None, None, "12h", "3d"]))
        if draw(st.integers(0, 4)) == 0:
            steps.append(survey("csat", id=f"s{n}", expire_after=expire))
        else:
            steps.append(send(f"mail{n}", id=f"m{n}", expire_after=expire))
    return make_journey(*steps, id=f"j{index}", touchpoint=draw(st.sampled_from(list(Touchpoint))),
                        category=draw(st.sampled_from([Category.marketing, Category.marketing,
                                                       Category.transactional])))


policies = st.builds(
    lambda m, per, gap, j, s, q: Policy(marketing_cap=cap(m, f"{per}d", f"{gap}h" if gap else None),
                                        journey_cap=cap(j, "7d"), survey_cap=cap(s, "30d"),
                                        quiet_hours=quiet(*q) if q else None),
    st.integers(1, 4), st.integers(1, 7), st.sampled_from([0, 4, 20]), st.integers(1, 3),
    st.integers(1, 2), st.sampled_from([None, ("21:00", "08:00"), ("12:00", "14:00")]))


@st.composite
def scenarios(draw):
    count = draw(st.integers(2, 4))
    plan = []
    for index in range(count):
        journey = draw(journeys(index))
        for n in range(draw(st.integers(1, 2))):
            offset = timedelta(minutes=draw(st.integers(0, 20 * 24 * 60)))
            plan.append((journey, f"run-{index}-{n}", T0 + offset))
    return plan, draw(policies), draw(st.sampled_from(["UTC", "Europe/Rome", "America/New_York"]))


def simulate(plan, policy, tz):
    customer = make_customer(timezone=tz)
    runs: dict[str, tuple[RunState, object]] = {
        run_id: (make_run(journey, run_id=run_id, entered_at=start), journey)
        for journey, run_id, start in plan}
    mails: list[Mail] = []
    renderer = FakeRenderer()
    for _ in range(2000):
        pending = [r.next_run_at for r, _ in runs.values() if not r.status.finished and r.next_run_at]
        if not pending or min(pending) > T0 + MONTH:
            break
        now = min(pending)
        due = [(r, j) for r, j in runs.values()
               if not r.status.finished and r.next_run_at and r.next_run_at <= now]
        history = tuple(sent_record(m.at, m.journey_id, category=m.category, is_survey=m.is_survey)
                        for m in mails)
        for result in advance_customer(due, make_customer_state(customer, history=history), policy, now,
                                       renderer):
            runs[result.run.run_id] = (result.run, runs[result.run.run_id][1])
            mails += [Mail(now, result.run.journey_id, o.category, o.is_survey, o.message_id)
                      for o in result.outcomes if isinstance(o, Sent)]
    else:
        raise AssertionError("the simulation did not settle")
    return mails


def count_within(mails, t, per):
    return sum(1 for m in mails if m.at > t - per)


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_marketing_mail_never_breaks_caps_gaps_or_quiet_hours(scenario):
    plan, policy, tz = scenario
    mails = simulate(plan, policy, tz)
    assert len({m.message_id for m in mails}) == len(mails), "a step sent twice"
    for i, mail in enumerate(mails):
        if not mail.marketing:
            continue
        before = mails[:i]            # in send order: same-moment sends see each other
        market, journey_cap, survey_cap = policy.marketing_cap, policy.journey_cap, policy.survey_cap
        assert count_within(before, mail.at, market.per) < market.max
        if market.min_gap:
            assert all(mail.at - m.at >= market.min_gap for m in before)
        same = [m for m in before if m.journey_id == mail.journey_id]
        assert count_within(same, mail.at, journey_cap.per) < journey_cap.max
        if mail.is_survey:
            surveys = [m for m in before if m.is_survey]
            assert count_within(surveys, mail.at, survey_cap.per) < survey_cap.max
        assert not in_quiet_hours(mail.at, tz, policy.quiet_hours)
