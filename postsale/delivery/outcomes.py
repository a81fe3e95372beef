"""Send outcomes the transports share beyond ``SendResult``'s plain ok / transient / permanent.

An *uncertain* outcome is a failure after the request may have reached the provider: a
timeout waiting for the answer, a connection dropped mid-request, SMTP hanging up during DATA.
Retrying it at once could send the email twice, so the outbox (``postsale.store.delivery``)
waits for the provider's events before it resends, and flags the resend.
"""

from __future__ import annotations

from dataclasses import dataclass

from postsale.delivery.base import SendResult


@dataclass(frozen=True)
class UncertainResult(SendResult):
    """A transient failure whose request may have been accepted (read ``result.uncertain``)."""

    uncertain = True   # class attribute: ``getattr(result, "uncertain", False)`` for any SendResult


def uncertain(message_id: str, error: str) -> UncertainResult:
    return UncertainResult(message_id, False, error=error, transient=True)


def is_uncertain(result: SendResult) -> bool:
    return bool(getattr(result, "uncertain", False))
