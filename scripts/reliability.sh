#!/usr/bin/env sh
# The fault, outage, hostile-input and soak suites (issue 9) in one command: tests/reliability.
#   scripts/reliability.sh            the short versions (what CI runs): a few minutes
#   scripts/reliability.sh --long     the long ones too (POSTSALE_LONG=1): hundreds of SIGKILLs
#                                     over thousands of customers, a one-minute database outage,
#                                     a 10-minute soak, 10,000 fuzz examples a property
# The PostgreSQL variants run when POSTSALE_TEST_PG_URL is set (.ci/run sets it).
# Sizes: POSTSALE_LONG_KILLS/_CUSTOMERS (dispatcher), POSTSALE_LONG_SERVE_KILLS/_CUSTOMERS,
# POSTSALE_SOAK_SECONDS, POSTSALE_FUZZ_EXAMPLES. Extra arguments go to pytest (-k, -x, ...).
# Everything binds to 127.0.0.1; the only network peers are local fakes and the local PostgreSQL.
set -eu
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [ "${1:-}" = "--long" ]; then
    shift
    POSTSALE_LONG=1
    export POSTSALE_LONG
fi
# -s: each suite prints its figures (kills, emails, duplicates, RSS, latency) as it ends.
exec "$PY" -m pytest tests/reliability -p no:cacheprovider -s -rsxX --durations=10 "$@"
