"""What the Prefect UI shows, as plain data: the dispatch table and the daily markdown report.

Pure functions over the engine's reports (no Prefect, no database), so their shape is tested
without a server.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from postsale.store.delivery import DeliveryReport
from postsale.store.dispatch import DispatchReport
from postsale.store.report import JourneyReport

DISPATCH_COLUMNS = ("sent", "held", "skipped", "suppressed", "failed", "entered", "exited", "alert")


def stamp(instant: datetime) -> str:
    """``2026-11-23T10:00Z``: the minute, in UTC, as run names and reports show it."""
    if instant.tzinfo is None:  # SQLite hands back naive UTC
        instant = instant.replace(tzinfo=timezone.utc)
    return instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def merge(total: DispatchReport, part: DispatchReport) -> None:
    """Add one batch's report to the run's total (notices are logged, not kept)."""
    total.customers += part.customers
    total.runs += part.runs
    total.batches += part.batches
    total.actions.update(part.actions)
    for journey, counts in part.by_journey.items():
        total.by_journey[journey].update(counts)
    total.skip_reasons.update(part.skip_reasons)


def acted(report: DispatchReport) -> list[str]:
    """Journeys that did anything in this report."""
    return sorted(j for j, counts in report.by_journey.items() if sum(counts.values()))


def run_tags(journeys: Iterable[str], touchpoints: Mapping[str, str]) -> list[str]:
    """Tags for a flow run: each touchpoint that acted, then ``journey:<id>`` for each journey."""
    journeys = list(journeys)
    tps = sorted({touchpoints[j] for j in journeys if j in touchpoints})
    return tps + [f"journey:{j}" for j in sorted(journeys)]


def dispatch_rows(report: DispatchReport, failed: Mapping[str, int],
                  touchpoints: Mapping[str, str]) -> list[dict[str, Any]]:
    """Journey × sent / held / skipped / suppressed / failed / entered / exited / alerts.

    Every journey of the catalog has a row (so the table keeps its shape on a quiet minute),
    plus any journey that acted or failed without being in it (a removed file).
    """
    journeys = sorted(set(touchpoints) | set(report.by_journey) | set(failed))
    rows = []
    for journey in journeys:
        counts = report.by_journey.get(journey, Counter())
        row: dict[str, Any] = {"journey": journey, "touchpoint": touchpoints.get(journey, "-")}
        for column in DISPATCH_COLUMNS:
            value = failed.get(journey, 0) if column == "failed" else counts.get(column, 0)
            row["alerts" if column == "alert" else column] = value
        rows.append(row)
    return rows


def dispatch_description(report: DispatchReport, delivery: DeliveryReport, now: datetime) -> str:
    return (f"dispatch {stamp(now)}: {report.customers} customers, {report.runs} runs in "
            f"{report.batches} batches; delivered {delivery.sent}, retrying {delivery.retried}, "
            f"failed {delivery.failed}")


# ---------------------------------------------------------------- daily report

def _cell(value: Any) -> str:
    text = str(value) if value is not None else "-"
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ") or "-"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def daily_markdown(reports: list[JourneyReport], alerts: list[dict[str, Any]], *, since: datetime,
                   until: datetime, touchpoints: Mapping[str, str], max_alerts: int = 50) -> str:
    """The daily report: per journey counts, skip and exit reasons, survey scores, SLA alerts."""
    out = ["# postsale daily report", "",
           f"{stamp(since)} → {stamp(until)} (UTC)", ""]
    if not reports:
        out += ["Nothing happened in this period.", ""]
    else:
        out += _table(["journey", "touchpoint", "entered", "sent", "held", "skipped", "suppressed",
                       "exited", "alerts", "delivered", "failed"],
                      [[r.journey, touchpoints.get(r.journey, "-"),
                        *[r.counts.get(a, 0) for a in ("entered", "sent", "held", "skipped", "suppressed",
                                                        "exited", "alert")],
                        r.delivery.get("sent", 0), r.delivery.get("failed", 0)] for r in reports])
        out.append("")
    skipped = [[r.journey, reason, n] for r in reports for reason, n in r.skipped_by_reason.most_common()]
    if skipped:
        out += ["## Skipped (or suppressed) by reason", ""] + _table(["journey", "reason", "count"], skipped) + [""]
    exited = [[r.journey, reason, n] for r in reports for reason, n in r.exited_by_reason.most_common()]
    if exited:
        out += ["## Exited by reason", ""] + _table(["journey", "reason", "count"], exited) + [""]
    scores = [[r.journey, question, len(values), f"{sum(values) / len(values):.2f}"]
              for r in reports for question, values in sorted(r.scores.items()) if values]
    out += ["## Survey scores", ""]
    out += (_table(["journey", "question", "responses", "average"], scores) if scores
            else ["No survey answers in this period."]) + [""]
    out += [f"## SLA alerts ({len(alerts)})", ""]
    if alerts:
        shown = alerts[:max_alerts]
        out += _table(["at (UTC)", "journey", "customer", "alert"],
                      [[stamp(a["at"]) if isinstance(a["at"], datetime) else a["at"], a["journey"],
                        a["customer"], a["message"]] for a in shown])
        if len(alerts) > len(shown):
            out.append(f"\n… and {len(alerts) - len(shown)} more (`postsale report` lists them all).")
    else:
        out.append("No alerts in this period.")
    return "\n".join(out) + "\n"
