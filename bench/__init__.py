"""postsale benchmarks: how fast, how big, and how close to the limit (issue 8).

``python -m bench`` (or ``make bench``) runs every scenario on SQLite and, when one is
reachable, PostgreSQL; prints a table; writes ``bench/results/latest.json``. Speed is measured
here, in benchmarks that print figures and save them, never asserted in timed tests.

Each scenario is one module; measured work runs in child processes (``bench.child``) so that
peak memory and caches are each measurement's own. See ``bench/README.md``.
"""

# In the order they run (cheap and independent first).
SCENARIOS = ("ingest", "dispatch", "delivery", "latency", "broadcast", "scale", "limit", "baseline")
