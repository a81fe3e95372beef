"""`postsale report`: per journey, what happened since a moment.

Entered, sent, held, skipped (by reason), suppressed, exited, alerts — from the timeline —
plus delivery states from the outbox and survey scores from the responses.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from statistics import mean
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import Message, SurveyResponse, Timeline

ACTIONS = ("entered", "sent", "held", "skipped", "suppressed", "exited", "alert")


@dataclass
class JourneyReport:
    journey: str
    counts: Counter = field(default_factory=Counter)
    skipped_by_reason: Counter = field(default_factory=Counter)
    exited_by_reason: Counter = field(default_factory=Counter)
    delivery: Counter = field(default_factory=Counter)
    scores: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def to_json(self) -> dict[str, Any]:
        return {"journey": self.journey, **{a: self.counts.get(a, 0) for a in ACTIONS},
                "skipped_by_reason": dict(self.skipped_by_reason),
                "exited_by_reason": dict(self.exited_by_reason),
                "delivery": dict(self.delivery),
                "survey_scores": {k: {"responses": len(v), "average": round(mean(v), 2)}
                                  for k, v in self.scores.items() if v}}


def build_report(engine: Engine, *, since: datetime) -> list[JourneyReport]:
    reports: dict[str, JourneyReport] = {}

    def get(journey_id: str | None) -> JourneyReport:
        key = journey_id or "-"
        return reports.setdefault(key, JourneyReport(key))

    with Session(engine) as session:
        for journey_id, action, reason, n in session.execute(
                select(Timeline.journey_id, Timeline.action, Timeline.reason, func.count())
                .where(Timeline.at >= since).group_by(Timeline.journey_id, Timeline.action, Timeline.reason)):
            rep = get(journey_id)
            rep.counts[action] += n
            if action in ("skipped", "suppressed"):
                rep.skipped_by_reason[_short(reason)] += n
            elif action == "exited":
                rep.exited_by_reason[_short(reason)] += n
        for journey_id, status, state, n in session.execute(
                select(Message.journey_id, Message.status, Message.delivery_state, func.count())
                .where(Message.created_at >= since, Message.category != "ops")
                .group_by(Message.journey_id, Message.status, Message.delivery_state)):
            rep = get(journey_id)
            rep.delivery[status] += n
            if state:
                rep.delivery[state] += n
        for journey_id, survey, answers in session.execute(
                select(SurveyResponse.journey_id, SurveyResponse.survey, SurveyResponse.answers)
                .where(SurveyResponse.updated_at >= since, SurveyResponse.status == "final")):
            for question, value in (answers or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    get(journey_id).scores[f"{survey}.{question}"].append(float(value))
    return [reports[k] for k in sorted(reports)]


def _short(reason: str | None) -> str:
    """Group reasons by their kind: 'held until 2026-…' details would split every row."""
    text = (reason or "").strip()
    for marker in (" until ", ": "):
        if marker in text and not text.startswith("exit_when"):
            text = text.split(marker, 1)[0]
    return text[:80] or "-"
