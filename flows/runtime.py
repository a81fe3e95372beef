"""What a flow acts on: the engine's ``Context`` and a transport, built at the edge.

A flow run asks ``runtime()`` once, at its start. In production that reads ``load_settings()``
(environment and ``.env``), builds the context and disposes its database engine when the run
ends. Tests inject their own context (a temporary SQLite file, a virtual clock) and a memory
transport with ``use_runtime(...)``; nothing else in ``flows`` reads settings.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from postsale.clock import Clock, SystemClock
from postsale.delivery.base import Transport
from postsale.settings import Settings, load_settings
from postsale.store.context import Context


@dataclass
class Runtime:
    ctx: Context
    settings: Settings | None = None
    _transport: Transport | None = field(default=None, repr=False)

    def transport(self) -> Transport:
        """The transport the settings name, built on first use (ingest and reports need none)."""
        if self._transport is None:
            from postsale.delivery.factory import make_transport
            self._transport = make_transport(self.settings or load_settings())
        return self._transport


_injected: Runtime | None = None


@contextmanager
def use_runtime(ctx: Context, transport: Transport | None = None) -> Iterator[Runtime]:
    """Run flows in this block on ``ctx`` (and ``transport``) instead of the settings'."""
    global _injected
    previous, _injected = _injected, Runtime(ctx, _transport=transport)
    try:
        yield _injected
    finally:
        _injected = previous


@contextmanager
def runtime() -> Iterator[Runtime]:
    """The injected runtime, or one built from the settings for the length of a flow run."""
    if _injected is not None:
        yield _injected
        return
    settings = load_settings()
    ctx = Context.from_settings(settings)
    try:
        yield Runtime(ctx, settings)
    finally:
        ctx.engine.dispose()


def clock() -> Clock:
    """The clock flow run names read before the run has built its context."""
    return _injected.ctx.clock if _injected is not None else SystemClock()
