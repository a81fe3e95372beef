"""Choose the transport ``POSTSALE_TRANSPORT`` names."""

from __future__ import annotations

from postsale.delivery.base import Transport
from postsale.errors import ConfigError
from postsale.settings import Settings


def make_transport(settings: Settings) -> Transport:
    if settings.transport == "outbox":
        from postsale.delivery.outbox import OutboxTransport
        return OutboxTransport(settings.outbox)
    if settings.transport == "memory":
        from postsale.delivery.memory import MemoryTransport
        return MemoryTransport()
    raise ConfigError(f"POSTSALE_TRANSPORT={settings.transport!r} is not available yet: use 'outbox'")
