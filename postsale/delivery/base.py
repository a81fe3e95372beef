"""One transport interface; one class per provider (STYLE.md §5).

``send(batch) -> results``: a transport takes a batch of ready-to-send emails and says, per
message, whether the provider took it (with its id), refused it for good, or failed in a way
worth retrying. It never touches the database: ``postsale.store.delivery`` owns the outbox
state machine (queued → sending → sent | failed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, Sequence


@dataclass(frozen=True)
class OutgoingEmail:
    message_id: str
    to_email: str
    to_name: str | None
    from_: str
    reply_to: str | None
    subject: str
    html: str
    text: str
    headers: dict[str, str]
    date: datetime
    categories: tuple[str, ...] = ()          # journey id, touchpoint
    custom_args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    message_id: str
    ok: bool
    provider_id: str | None = None
    error: str | None = None
    transient: bool = False                    # worth retrying (429, 5xx, timeouts)
    retry_after: float | None = None           # seconds, when the provider said


class Transport(Protocol):
    name: str

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]: ...
