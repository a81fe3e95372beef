"""A transport that keeps mail in memory: what tests read, and can be told to fail."""

from __future__ import annotations

from typing import Sequence

from postsale.delivery.base import OutgoingEmail, SendResult


class MemoryTransport:
    name = "memory"

    def __init__(self) -> None:
        self.sent: list[OutgoingEmail] = []
        self._fail_next: list[SendResult | None] = []

    def fail_next(self, count: int = 1, *, transient: bool = True, error: str = "simulated failure") -> None:
        """Make the next ``count`` messages fail (transiently by default)."""
        self._fail_next.extend([SendResult("", False, error=error, transient=transient)] * count)

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        results = []
        for email in batch:
            failure = self._fail_next.pop(0) if self._fail_next else None
            if failure is not None:
                results.append(SendResult(email.message_id, False, error=failure.error, transient=failure.transient))
                continue
            self.sent.append(email)
            results.append(SendResult(email.message_id, True, provider_id=f"mem-{email.message_id}"))
        return results
