"""Sign like SendGrid's Signed Event Webhook, and serve the webhook router on loopback uvicorn."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from postsale.api.sendgrid_webhook import router
from postsale.delivery.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER
from postsale.settings import Settings
from postsale.store.context import Context


@dataclass
class Signer:
    private: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> "Signer":
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_key(self) -> str:
        """As SendGrid shows it under Mail Settings: base64 of the DER SubjectPublicKeyInfo."""
        der = self.private.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | str) -> dict[str, str]:
        ts = str(timestamp)
        signature = self.private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: ts,
                "Content-Type": "application/json"}


class WebhookServer:
    """The webhook router in a FastAPI app on a real uvicorn, in a thread."""

    def __init__(self, ctx: Context, settings: Settings, signer: Signer | None) -> None:
        self.ctx, self.signer = ctx, signer
        app = FastAPI()
        app.include_router(router)
        app.state.ctx, app.state.settings = ctx, settings
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.port}/webhooks/sendgrid"

    def post(self, events: Any, *, age: float = 0, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> httpx.Response:
        body = body if body is not None else json.dumps(events).encode()
        if headers is None:
            assert self.signer is not None
            headers = self.signer.headers(body, int(self.ctx.clock.now().timestamp() - age))
        return httpx.post(self.url, content=body, headers=headers, timeout=10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
