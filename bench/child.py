"""The measured side: ``python -m bench.child MODULE:FUNCTION PARAMS_JSON``.

Every measurement runs in a fresh process, so that one scenario's caches, garbage and peak
memory never colour another's, and so that the peak RSS it reports (``ru_maxrss``) is its own.
The function gets its parameters and a ``progress(done, total, phase)`` callback; it returns a
JSON-able dict. The parent reads three kinds of lines on stdout::

    @@progress {"done": 500, "total": 10000, "phase": "dispatch"}
    @@skip the reason
    @@result {...}

Anything else a child prints goes to the parent's log file untouched.
"""

from __future__ import annotations

import importlib
import json
import logging
import resource
import sys
import time
import traceback
from typing import Any


class Skip(Exception):
    """A scenario that cannot run here (a missing module, no server): reported, not failed."""


def progress(done: int, total: int | None = None, phase: str = "") -> None:
    print("@@progress " + json.dumps({"done": done, "total": total, "phase": phase}), flush=True)


def peak_rss_mb() -> float:
    """The process's peak resident set so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def main(argv: list[str]) -> int:
    target, raw = argv[0], argv[1] if len(argv) > 1 else "{}"
    module_name, _, function_name = target.partition(":")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("postsale").setLevel(logging.ERROR)
    started = time.perf_counter()
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        result: dict[str, Any] = function(json.loads(raw), progress)
    except Skip as exc:
        print(f"@@skip {exc}", flush=True)
        return 0
    except Exception:
        traceback.print_exc()
        return 1
    result.setdefault("rss_peak_mb", peak_rss_mb())
    result.setdefault("child_wall_s", round(time.perf_counter() - started, 3))
    print("@@result " + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
