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
from operator import itemgetter
from typing import Any, Iterable

from models import Customer as CustomerRow
from models import Event as EventRow
from models import Purchase, Run, Suppression, Timeline
from postsale.engine.types import RunStatus
from postsale.store.driver import Driver
from postsale.store.runs import aware

UNFINISHED = (RunStatus.active.value, RunStatus.waiting.value, RunStatus.held.value)

_CUSTOMERS, _RUNS, _EVENTS = CustomerRow.__table__, Run.__table__, EventRow.__table__
_TIMELINE, _PURCHASES, _SUPPRESSIONS = Timeline.__table__, Purchase.__table__, Suppression.__table__
# What ingest may change: the rest of a customer's row is the upsert's, of a run the dispatcher's.
CUSTOMER_FIELDS = ("email", "name", "timezone", "locale", "attributes", "open_tickets")
WRITE_CHUNK = 10_000   # rows a statement writes where a batch can hold many more (incident fan-out)
_SUMMARY = "finished"   # the status of a finished-runs summary: never written, never unfinished

# The rows ingest writes, column by column (the tuples handed to the driver are in this order).
EVENT_COLUMNS = ("id", "type", "occurred_at", "received_at", "customer_id", "data", "customer_snapshot")
CUSTOMER_COLUMNS = ("id", *CUSTOMER_FIELDS, "created_at", "updated_at")
RUN_COLUMNS = ("id", "customer_id", "journey_id", "version_id", "touchpoint", "category", "status", "step_index",
               "step_id", "next_run_at", "entered_at", "ended_at", "exit_reason", "waiting_for",
               "trigger_event_id", "context", "updated_at")
TIMELINE_COLUMNS = ("at", "customer_id", "journey_id", "run_id", "step_id", "action", "template", "subject", "reason")
PURCHASE_COLUMNS = ("event_id", "customer_id", "sku", "purchased_at")
SUPPRESSION_COLUMNS = ("email_hash", "reason", "scope", "source", "created_at")

# The reads, as SQL both dialects speak (``{ids}``: see ``Driver.select_in``); the statuses are
# the code's own constants.
_IN_UNFINISHED = ", ".join(f"'{status}'" for status in UNFINISHED)
_RUN_FIELDS = ("id", "customer_id", "journey_id", "version_id", "status", "step_id", "waiting_for", "entered_at")
_SELECT_UNFINISHED = (f"SELECT {', '.join(_RUN_FIELDS)}, CASE WHEN status = '{RunStatus.waiting.value}' "
                      f"THEN context END FROM runs WHERE customer_id {{ids}} AND status IN ({_IN_UNFINISHED}) "
                      "ORDER BY customer_id, entered_at, id")
_UNFINISHED_READ = [*(_RUNS.c[name] if name == "entered_at" else None for name in _RUN_FIELDS), _RUNS.c.context]
_SELECT_FINISHED = ("SELECT customer_id, journey_id, max(entered_at) FROM runs WHERE customer_id {ids} "
                    f"AND status NOT IN ({_IN_UNFINISHED}) GROUP BY customer_id, journey_id")
_FINISHED_READ = [None, None, _RUNS.c.entered_at]
_SELECT_CONTEXTS = "SELECT id, context FROM runs WHERE id {ids}"
_SELECT_RUN_IDS = "SELECT id FROM runs WHERE id {ids}"


def timeline(at: datetime, customer_id: str | None, journey_id: str | None, action: str, *,
             run_id: str | None = None, step_id: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """A timeline row as an executemany parameter set (every column named, so all rows match)."""
    return {"at": at, "customer_id": customer_id, "journey_id": journey_id, "run_id": run_id,
            "step_id": step_id, "action": action, "template": None, "subject": None, "reason": reason}


class BatchState:
    def __init__(self, session: Any, now: datetime) -> None:
        self.session = session
        self.db = Driver.of(session)
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

    # ------------------------------------------------------------ storing and locking

    def store_events(self, rows: list[tuple]) -> set[str]:
        """Insert the events (tuples in ``EVENT_COLUMNS`` order, one per id, in key order: their
        unique index is locked in that order); the ids that were new to the database."""
        db = self.db
        written = db.insert_returning(_EVENTS, EVENT_COLUMNS, db.writer(_EVENTS, EVENT_COLUMNS)(rows),
                                      conflict=("id",), returning=("id",))
        return {row[0] for row in written}

    def lock_customers(self, rows: list[tuple]) -> None:
        """Create the customers that are new and lock every one until commit (``INSERT ... ON
        CONFLICT DO UPDATE`` holds each row's lock, in the rows' key order), reading them as they
        are (``RETURNING``: the row after the upsert, what a ``SELECT`` would read next)."""
        db = self.db
        written = db.insert_returning(_CUSTOMERS, CUSTOMER_COLUMNS, db.writer(_CUSTOMERS, CUSTOMER_COLUMNS)(rows),
                                      conflict=("id",), update=("updated_at",), returning=("id", *CUSTOMER_FIELDS))
        for values in db.reader(_CUSTOMER_READ)(written):
            cid = values[0]
            self.customers[cid] = dict(zip(_CUSTOMER_KEYS, values))
            self._stored[cid] = tuple(values[1:])

    # ------------------------------------------------------------ reading (locks held)

    def load_runs(self, customer_ids: Iterable[str]) -> None:
        """Read the runs of customers not read yet: unfinished ones to decide on, finished ones summed up."""
        ids = sorted({cid for cid in customer_ids if cid not in self._runs})
        runs = self._runs
        for cid in ids:
            runs[cid] = []
        db, waiting = self.db, RunStatus.waiting.value
        for values in db.reader(_UNFINISHED_READ)(db.select_in(_SELECT_UNFINISHED, ids)):
            run = dict(zip(_UNFINISHED_KEYS, values))
            run["entered_at"] = aware(run["entered_at"])
            if run["context"] is None and run["status"] != waiting:
                del run["context"]   # not read yet: see ``context``
            runs[run["customer_id"]].append(run)
        for cid, journey_id, last in db.reader(_FINISHED_READ)(db.select_in(_SELECT_FINISHED, ids)):
            runs[cid].append({"journey_id": journey_id, "status": _SUMMARY, "entered_at": aware(last)})

    def contexts(self, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The runs, each with its ``context`` read (one query for those that lack it)."""
        missing = {run["id"]: run for run in runs if "context" not in run}
        if missing:
            db = self.db
            for run_id, context in db.reader(_CONTEXT_READ)(db.select_in(_SELECT_CONTEXTS, sorted(missing))):
                missing[run_id]["context"] = context
        return runs

    def forget(self, customer_ids: Iterable[str]) -> None:
        """Drop the runs read for these customers, but those of the batch's own customers (what a
        later event of the batch decides on); after a ``flush`` they are read again if needed."""
        for cid in customer_ids:
            if cid not in self.customers:
                self._runs.pop(cid, None)

    def check_run_ids(self, ids: Iterable[str]) -> None:
        """Note which of these run ids exist already (a cause that started a run never starts another)."""
        todo = sorted(set(ids) - self.taken)
        self.taken.update(row[0] for row in self.db.select_in(_SELECT_RUN_IDS, todo))

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

    def insert_timeline(self, rows: list[tuple]) -> None:
        """Write what is pending, then these timeline rows (tuples in ``TIMELINE_COLUMNS`` order)."""
        self.flush()
        for start in range(0, len(rows), WRITE_CHUNK):
            self.db.insert(_TIMELINE, TIMELINE_COLUMNS, rows[start:start + WRITE_CHUNK])

    def flush(self) -> None:
        """Write everything changed since the last flush, one executemany a table."""
        db, now = self.db, self.now
        changed = []
        for cid, row in self.customers.items():
            values = _CUSTOMER_VALUES(row)
            if values != self._stored[cid]:
                changed.append((*values, now, cid))
                self._stored[cid] = values
        if changed:
            db.update(_CUSTOMERS, (*CUSTOMER_FIELDS, "updated_at"), changed)
        if self._new_runs:
            db.insert(_RUNS, RUN_COLUMNS, list(map(_RUN_ROW, self._new_runs)), conflict=("id",))
        by_fields: dict[tuple[str, ...], list[tuple]] = {}
        for run, fields in self._changed_runs.values():
            names = tuple(sorted(fields))
            by_fields.setdefault(names, []).append((*(run[name] for name in names), run["id"]))
        for names, rows in by_fields.items():
            db.update(_RUNS, names, rows)
        if self._timeline:
            db.insert(_TIMELINE, TIMELINE_COLUMNS, list(map(TIMELINE_ROW, self._timeline)))
        if self._purchases:
            db.insert(_PURCHASES, PURCHASE_COLUMNS, list(map(_PURCHASE_ROW, self._purchases)),
                      conflict=("event_id", "sku"))
        if self._suppressions:
            db.insert(_SUPPRESSIONS, SUPPRESSION_COLUMNS, list(map(_SUPPRESSION_ROW, self._suppressions.values())),
                      conflict=("email_hash",))
        self._new_runs, self._new_ids, self._changed_runs = [], set(), {}
        self._timeline, self._purchases, self._suppressions = [], [], {}


# a dict's values in a statement's column order, as a tuple
_RUN_ROW, TIMELINE_ROW = itemgetter(*RUN_COLUMNS), itemgetter(*TIMELINE_COLUMNS)
_PURCHASE_ROW, _SUPPRESSION_ROW = itemgetter(*PURCHASE_COLUMNS), itemgetter(*SUPPRESSION_COLUMNS)
_CUSTOMER_VALUES = itemgetter(*CUSTOMER_FIELDS)
_CUSTOMER_KEYS = ("id", *CUSTOMER_FIELDS)
_CUSTOMER_READ = [None, *(_CUSTOMERS.c[name] for name in CUSTOMER_FIELDS)]
_UNFINISHED_KEYS = (*_RUN_FIELDS, "context")
_CONTEXT_READ = [None, _RUNS.c.context]
