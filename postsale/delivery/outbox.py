"""The embedded default: every email becomes a ``.eml`` file you can open in a mail client."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from postsale.delivery.base import OutgoingEmail, SendResult
from postsale.render.mime import build_mime


class OutboxTransport:
    name = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        self.folder.mkdir(parents=True, exist_ok=True)
        results = []
        for email in batch:
            try:
                mime = build_mime(message_id=email.message_id, from_=email.from_, to=email.to_email,
                                  to_name=email.to_name, reply_to=email.reply_to, subject=email.subject,
                                  html=email.html, text=email.text, headers=email.headers, date=email.date)
            except ValueError as exc:
                results.append(SendResult(email.message_id, False, error=f"bad message: {exc}"))
                continue
            stamp = email.date.strftime("%Y%m%dT%H%M%S")
            path = self.folder / f"{stamp}-{email.message_id}.eml"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(bytes(mime))
            os.replace(tmp, path)  # atomic: a reader never sees half a message
            results.append(SendResult(email.message_id, True, provider_id=f"file:{path.name}"))
        return results
