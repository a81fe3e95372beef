"""Shared test setup: no network, no analytics, and a real SQLite file per test."""

from __future__ import annotations

import os

# Prefect reads these at import: keep tests offline and quiet.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
