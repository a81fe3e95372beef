"""Scenario 7 — the limit: only the unavoidable work, and our dispatch as a ratio of it.

The unavoidable work of an email is: read the run and its customer, render the template
(the same ``TemplateRenderer``), insert the outbox row, move the run's pointer. The limit
pipeline does exactly that with Core statements in batches of 500 (one read, one
``executemany`` insert, one ``executemany`` update, one commit a batch) and no engine logic:
no caps, quiet hours, suppressions, exit checks, timeline, ORM or reports. To compare like
with like it renders the very emails our dispatch queued on an identical copy of the data
(held runs are not emails), so the ratio is emails/s against emails/s.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

from bench.common import context, median, rate, timer, warm
from bench.data import NOW, chunks

NAME = "limit"
TITLE = "our dispatch vs render + insert outbox row + update run, nothing else"
DUE, QUICK_DUE = 10_000, 1_000
TARGET_RATIO = "≥ 0.5"


def measure(params: dict[str, Any], progress: Callable) -> dict[str, Any]:
    from sqlalchemy import bindparam, insert, select, update

    from models import Customer, Message, Run
    from postsale.engine import message_id_for
    from postsale.render.types import RenderRequest
    from postsale.spec.model import Category
    ctx = context(params["url"])
    warm(ctx)
    policy = ctx.policy
    sent = {run_id: (step, template, category, survey)
            for run_id, step, template, category, survey in json.loads(Path(params["sent_list"]).read_text())}
    ids = sorted(sent)
    run_table, message_table = Run.__table__, Message.__table__
    move = (update(run_table).where(run_table.c.id == bindparam("_id"))
            .values(step_index=bindparam("_step"), step_id=bindparam("_step_id"), next_run_at=None,
                    updated_at=bindparam("_now")))
    count = 0
    with timer() as t:
        for chunk in chunks(ids, 500):
            with ctx.engine.begin() as conn:
                rows = conn.execute(
                    select(run_table.c.id, run_table.c.customer_id, run_table.c.journey_id, run_table.c.version_id,
                           run_table.c.step_index, run_table.c.context, Customer.email, Customer.name,
                           Customer.timezone, Customer.locale, Customer.attributes)
                    .join(Customer, Customer.id == run_table.c.customer_id).where(run_table.c.id.in_(chunk))).all()
                messages, moves = [], []
                for r in rows:
                    step_id, template, category, survey_id = sent[r.id]
                    journey = ctx.versions.journey(r.version_id)
                    trigger = (r.context or {}).get("trigger") or {}
                    customer = {"id": r.customer_id, "email": r.email, "name": r.name, "timezone": r.timezone,
                                "locale": r.locale, "attributes": dict(r.attributes or {})}
                    scope = {"customer": customer, "event": trigger, "data": trigger.get("data") or {},
                             "answers": {}, "waited": None, "now": NOW,
                             "journey": {"id": journey.id, "name": journey.name,
                                         "touchpoint": journey.touchpoint.value, "category": journey.category.value}}
                    message_id = message_id_for(r.id, step_id)
                    email = ctx.renderer(RenderRequest(
                        template=template, category=Category(category), scope=scope, message_id=message_id,
                        customer_id=r.customer_id, locale=r.locale,
                        survey=journey.surveys.get(survey_id) if survey_id else None))
                    messages.append({
                        "id": message_id, "run_id": r.id, "step_id": step_id, "customer_id": r.customer_id,
                        "journey_id": journey.id, "touchpoint": journey.touchpoint.value, "category": category,
                        "is_survey": survey_id is not None, "survey_id": survey_id, "template": template,
                        "to_email": r.email, "to_name": r.name, "from_email": policy.sender.from_,
                        "reply_to": policy.sender.reply_to, "subject": email.subject, "html": email.html,
                        "text_body": email.text, "headers": email.headers, "status": "queued", "created_at": NOW})
                    moves.append({"_id": r.id, "_step": r.step_index + 1, "_step_id": step_id, "_now": NOW})
                conn.execute(insert(message_table), messages)
                conn.execute(move, moves)
            count += len(messages)
            progress(count, len(ids), "render + insert + update")
    ctx.engine.dispose()
    return {"emails": count, "seconds": round(t["s"], 3), "cpu_s": round(t["cpu"], 3),
            "emails_per_s": rate(count, t["s"]), "emails_per_cpu_s": rate(count, t["cpu"])}


def run(runner: Any) -> None:
    from bench.dispatch import loaded
    due = QUICK_DUE if runner.quick else DUE
    workdir = Path(tempfile.mkdtemp(prefix="postsale-bench-limit-"))
    for backend in runner.backends:
        ours, limits = [], []
        label = f"limit-{backend.name}"
        urls = loaded(runner, backend, label, total=due, due=due, repeats=2 * runner.repeats)
        for n in range(runner.repeats):
            sent_list = workdir / f"sent-{n}.json"
            ours.append(runner.child(f"our dispatch · {backend.name} · {n + 1}", "bench.dispatch:measure",
                                     {"url": next(urls), "due": due, "sent_list": str(sent_list)}))
            limits.append(runner.child(f"limit pipeline · {backend.name} · {n + 1}", "bench.limit:measure",
                                       {"url": next(urls), "sent_list": str(sent_list)}))
        for _ in urls:     # let the generator clean up
            pass
        our_rate = median([r["emails_per_s"] for r in ours])
        limit_rate = median([r["emails_per_s"] for r in limits])
        case = f"{due:,} due"
        runner.figure(case, backend.name, "our dispatch", our_rate, "emails/s",
                      samples=[r["emails_per_s"] for r in ours])
        runner.figure(case, backend.name, "limit pipeline", limit_rate, "emails/s",
                      samples=[r["emails_per_s"] for r in limits], note=f"{limits[0]['emails']:,} emails, "
                      "the ones our dispatch queued")
        runner.figure(case, backend.name, "ours / limit", our_rate / limit_rate if our_rate and limit_rate else None,
                      "×", target=TARGET_RATIO)
        our_cpu = median([r["emails_per_cpu_s"] for r in ours])
        limit_cpu = median([r["emails_per_cpu_s"] for r in limits])
        runner.figure(case, backend.name, "ours / limit (CPU time)",
                      our_cpu / limit_cpu if our_cpu and limit_cpu else None, "×",
                      note=f"{our_cpu or 0:,.0f} vs {limit_cpu or 0:,.0f} emails per CPU-second")
