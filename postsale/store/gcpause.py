"""The cyclic garbage collector held off while a batch is worked on.

A batch of 500 events allocates a few hundred thousand short-lived containers (rows, dicts,
tuples), nearly all freed by reference counting as soon as the batch is written. Each 700
allocations still trigger a young collection and every tenth of those an older one, and now and
then a full collection walks every object the process holds: in ``postsale serve`` (FastAPI,
Prefect, the catalogue: ~130,000 tracked objects) that costs ingest about a fifth of its CPU
(``bench`` ingest: ~4,800 events per CPU-second collecting, ~5,900 paused). The batch creates
no garbage that needs the cycle collector to be freed in time, so collection waits until the
batch is done; the next allocation after it collects as usual.

Process-wide and thread-safe: nested or concurrent pauses (the API's worker threads) count, and
the last one out re-enables collection, only if it was enabled when the first came in.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()


__all__ = ["gc_paused"]
