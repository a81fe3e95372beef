#!/usr/bin/env sh
# The fault, hostile-input and outage suites (issue 9) in one command.
#   scripts/reliability.sh            the short versions (CI): about two minutes
#   scripts/reliability.sh --long     also the long ones (POSTSALE_LONG=1): hundreds of kills
# PostgreSQL variants run when POSTSALE_TEST_PG_URL is set. Extra arguments go to pytest.
set -eu
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [ "${1:-}" = "--long" ]; then
    shift
    POSTSALE_LONG=1
    export POSTSALE_LONG
fi
exec "$PY" -m pytest tests/reliability -p no:cacheprovider -rs "$@"
