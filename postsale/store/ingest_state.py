"""What one ingest batch decides about, read once and written once: customers, runs, timeline.

Applying 500 events one statement at a time costs a round trip and an ORM flush per decision.
Instead, once the batch holds its customers' locks (``postsale.store.ingest``), their rows and
runs are read in a few ``IN`` queries into plain dicts; every event of the batch reads and
changes those dicts, so a run one event starts is what the next event's reentry, ``exit_when``
and ``wait_for`` logic sees; and ``flush`` writes what changed in bulk (one executemany a
table). The dicts are the truth until ``flush``: a rare path that reads the database itself
(incident fan-out) flushes first.

A customer's unfinished runs are read in the columns ingest decides on (their context only
where a wake needs it: the rest is read when an answer or an incident needs it) and its
finished runs only as what the reentry rules read: one summary per journey, its last entry.
A changed run is written in the columns that changed, as the ORM would.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import bindparam, case, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from models import Customer as CustomerRow
from models import Purchase, Run, Suppression, Timeline
from postsale.engine.types import RunStatus
from postsale.store.runs import aware

UNFINISHED = (RunStatus.active.value, RunStatus.waiting.value, RunStatus.held.value)
CHUNK = 1000   # ids an IN list carries (SQLite allows 32,766 parameters; keep statements small)

_CUSTOMERS, _RUNS = CustomerRow.__table__, Run.__table__
# What ingest may change: the rest of a customer's row is the upsert's, of a run the dispatcher's.
CUSTOMER_FIELDS = ("email", "name", "timezone", "locale", "attributes", "open_tickets")
_RUN_COLUMNS = [_RUNS.c[name] for name in ("id", "customer_id", "journey_id", "version_id", "status",
                                           "step_id", "waiting_for", "entered_at")]
_SUMMARY = "finished"   # the status of a finished-runs summary: never written, never unfinished

# Built once: a statement built per call costs more than a small batch's whole query.
_IDS = bindparam("ids", expanding=True)
_SELECT_CUSTOMERS = select(_CUSTOMERS.c.id, *(_CUSTOMERS.c[name] for name in CUSTOMER_FIELDS)).where(
    _CUSTOMERS.c.id.in_(_IDS))
_SELECT_UNFINISHED = (
    select(*_RUN_COLUMNS, case((_RUNS.c.status == RunStatus.waiting.value, _RUNS.c.context)).label("context"))
    .where(_RUNS.c.customer_id.in_(_IDS), _RUNS.c.status.in_(UNFINISHED))
    .order_by(_RUNS.c.customer_id, _RUNS.c.entered_at, _RUNS.c.id))
_SELECT_FINISHED = (select(_RUNS.c.customer_id, _RUNS.c.journey_id, func.max(_RUNS.c.entered_at))
                    .where(_RUNS.c.customer_id.in_(_IDS), _RUNS.c.status.not_in(UNFINISHED))
                    .group_by(_RUNS.c.customer_id, _RUNS.c.journey_id))
_SELECT_CONTEXTS = select(_RUNS.c.id, _RUNS.c.context).where(_RUNS.c.id.in_(_IDS))
_SELECT_RUN_IDS = select(_RUNS.c.id).where(_RUNS.c.id.in_(_IDS))
_UPDATE_CUSTOMER = _CUSTOMERS.update().where(_CUSTOMERS.c.id == bindparam("b_id"))
_UPDATE_RUN = _RUNS.update().where(_RUNS.c.id == bindparam("b_id"))
_INSERT_TIMELINE = insert(Timeline.__table__)
_INSERT_IGNORE: dict[tuple[str, str], Any] = {}   # (dialect, table): built on first use


def timeline(at: datetime, customer_id: str | None, journey_id: str | None, action: str, *,
             run_id: str | None = None, step_id: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """A timeline row as an executemany parameter set (every column named, so all rows match)."""
    return {"at": at, "customer_id": customer_id, "journey_id": journey_id, "run_id": run_id,
            "step_id": step_id, "action": action, "template": None, "subject": None, "reason": reason}


def _insert_ignore(session: Any, table: Any, conflict: list[str]) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING without RETURNING: a plain executemany."""
    name = session.get_bind().dialect.name
    stmt = _INSERT_IGNORE.get((name, table.name))
    if stmt is None:
        dialect = postgresql if name == "postgresql" else sqlite
        stmt = _INSERT_IGNORE[name, table.name] = dialect.insert(table).on_conflict_do_nothing(index_elements=conflict)
    return stmt


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


class BatchState:
    def __init__(self, session: Any, now: datetime) -> None:
        self.session = session
        self.now = now
        self.customers: dict[str, dict[str, Any]] = {}
        self._stored: dict[str, tuple] = {}            # customer fields as the database has them
        self._runs: dict[str, list[dict[str, Any]]] = {}
        self.taken: set[str] = set()                   # run ids that exist (or will at flush)
        self._new_runs: list[dict[str, Any]] = []
        self._new_ids: set[str] = set()
        self._changed_runs: dict[str, tuple[dict[str, Any], set[str]]] = {}   # by id: the run, its changed fields
        self._timeline: list[dict[str, Any]] = []
        self._purchases: list[dict[str, Any]] = []
        self._suppressions: dict[str, dict[str, Any]] = {}   # by email hash: the first one wins

    # ------------------------------------------------------------ reading (locks held)

    def load_customers(self, ids: list[str]) -> None:
        for chunk in _chunks(sorted(ids)):
            for row in self.session.execute(_SELECT_CUSTOMERS, {"ids": chunk}):
                values = row._asdict()
                self.customers[values["id"]] = values
                self._stored[values["id"]] = tuple(values[name] for name in CUSTOMER_FIELDS)

    def load_runs(self, customer_ids: Iterable[str]) -> None:
        """Read the runs of customers not read yet: unfinished ones to decide on, finished ones summed up."""
        ids = sorted({cid for cid in customer_ids if cid not in self._runs})
        for cid in ids:
            self._runs[cid] = []
        for chunk in _chunks(ids):
            for row in self.session.execute(_SELECT_UNFINISHED, {"ids": chunk}):
                run = row._asdict()
                run["entered_at"] = aware(run["entered_at"])
                if run["context"] is None and run["status"] != RunStatus.waiting.value:
                    del run["context"]   # not read yet: see ``context``
                self._runs[run["customer_id"]].append(run)
            for cid, journey_id, last in self.session.execute(_SELECT_FINISHED, {"ids": chunk}):
                self._runs[cid].append({"journey_id": journey_id, "status": _SUMMARY, "entered_at": aware(last)})

    def contexts(self, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The runs, each with its ``context`` read (one query for those that lack it)."""
        missing = {run["id"]: run for run in runs if "context" not in run}
        for chunk in _chunks(sorted(missing)):
            for run_id, context in self.session.execute(_SELECT_CONTEXTS, {"ids": chunk}):
                missing[run_id]["context"] = context
        return runs

    def check_run_ids(self, ids: Iterable[str]) -> None:
        """Note which of these run ids exist already (a cause that started a run never starts another)."""
        for chunk in _chunks(sorted(set(ids) - self.taken)):
            self.taken.update(self.session.scalars(_SELECT_RUN_IDS, {"ids": chunk}))

    # ------------------------------------------------------------ the view events read and change

    def unfinished(self, customer_id: str) -> list[dict[str, Any]]:
        return [run for run in self._runs[customer_id] if run["status"] in UNFINISHED]

    def previous(self, customer_id: str, journey_id: str) -> list[tuple[str, datetime]]:
        """(status, entered_at) of the customer's runs of this journey (a summary counts as one)."""
        return [(run["status"], run["entered_at"]) for run in self._runs[customer_id]
                if run["journey_id"] == journey_id]

    def add_run(self, run: dict[str, Any]) -> None:
        self._runs[run["customer_id"]].append(run)
        self._new_runs.append(run)
        self._new_ids.add(run["id"])
        self.taken.add(run["id"])

    def changed(self, run: dict[str, Any], *fields: str) -> None:
        """These fields of the run were changed in place (a new run goes in whole, as it ends up)."""
        if run["id"] not in self._new_ids:
            self._changed_runs.setdefault(run["id"], (run, set()))[1].update(fields)

    def add_timeline(self, row: dict[str, Any]) -> None:
        self._timeline.append(row)

    def add_purchases(self, rows: list[dict[str, Any]]) -> None:
        self._purchases.extend(rows)

    def add_suppression(self, row: dict[str, Any]) -> None:
        self._suppressions.setdefault(row["email_hash"], row)

    # ------------------------------------------------------------ writing

    def flush(self) -> None:
        """Write everything changed since the last flush, one statement a table."""
        session = self.session
        changed = [{"b_id": cid, **{name: row[name] for name in CUSTOMER_FIELDS}, "updated_at": self.now}
                   for cid, row in self.customers.items()
                   if tuple(row[name] for name in CUSTOMER_FIELDS) != self._stored[cid]]
        if changed:
            session.execute(_UPDATE_CUSTOMER, changed)
            for row in changed:
                self._stored[row["b_id"]] = tuple(row[name] for name in CUSTOMER_FIELDS)
        if self._new_runs:
            session.execute(_insert_ignore(session, _RUNS, ["id"]), self._new_runs)
        by_fields: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for run, fields in self._changed_runs.values():
            names = tuple(sorted(fields))
            by_fields.setdefault(names, []).append({"b_id": run["id"], **{name: run[name] for name in names}})
        for rows in by_fields.values():
            session.execute(_UPDATE_RUN, rows)
        if self._timeline:
            session.execute(_INSERT_TIMELINE, self._timeline)
        if self._purchases:
            session.execute(_insert_ignore(session, Purchase.__table__, ["event_id", "sku"]), self._purchases)
        if self._suppressions:
            session.execute(_insert_ignore(session, Suppression.__table__, ["email_hash"]),
                            list(self._suppressions.values()))
        self._new_runs, self._new_ids, self._changed_runs = [], set(), {}
        self._timeline, self._purchases, self._suppressions = [], [], {}
