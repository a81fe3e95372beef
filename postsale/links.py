"""Signed links: unsubscribe, preferences and one-click survey answers.

A token binds purpose, customer and message (and the survey, for survey links) with an HMAC
over ``POSTSALE_SECRET``, so that a tampered or foreign token is refused and changes nothing.

Tokens are ``2`` + base64url(JSON ``[purpose, customer, message, extra]``) + ``.`` +
base64url(the first 16 bytes of HMAC-SHA256 over everything before the dot), with a key derived
from the secret for this use alone. Two are signed for every email rendered, so this is one
C-level HMAC call, not itsdangerous's per-call key derivation, SHA-1 and zlib attempt (about
ten times the CPU). Tokens that itsdangerous signed before (in mail already delivered, whose
unsubscribe links must keep working) are still read: they start with ``W`` (base64 of ``["``)
or ``.`` (compressed), never with ``2``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

PURPOSES = ("unsubscribe", "preferences", "survey")

VERSION = "2"
_MAC_BYTES = 16                            # 128 bits: far beyond guessing over HTTP
_MAC_CHARS = 22                            # base64url of 16 bytes, unpadded
_KEY_CONTEXT = b"postsale-links/v2"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_BLOCK = 64                                # SHA-256's block size, for the HMAC pads


@dataclass(frozen=True)
class LinkClaims:
    purpose: str
    customer_id: str
    message_id: str
    extra: str = ""                        # survey id for survey links


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    """``base64.urlsafe_b64encode`` unpadded, without its two Python-level wrappers."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _payload(fields: tuple[str, ...]) -> bytes:
    """Compact JSON of the fields; written by hand when no field needs escaping (ids do not).

    A field holds no quote when the joined text holds only the separators' two each.
    """
    joined = '","'.join(fields)
    if joined.count('"') == 2 * (len(fields) - 1) and "\\" not in joined and joined.isprintable():
        return f'["{joined}"]'.encode("utf-8")
    return _dumps(list(fields)).encode("utf-8")


class _HmacSha256:
    """HMAC-SHA256 (RFC 2104) with the keyed inner and outer states computed once.

    ``hmac.digest`` sets both up again on every call: four times the CPU of copying them.
    """

    def __init__(self, key: bytes) -> None:
        key = key.ljust(_BLOCK, b"\0")         # keys here are 32 bytes: never hashed first
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class Links:
    def __init__(self, secret: str, public_url: str) -> None:
        # A key of its own: a MAC made here is never valid for another use of the secret.
        self._hmac = _HmacSha256(hmac.digest(secret.encode("utf-8"), _KEY_CONTEXT, "sha256"))
        self._legacy = URLSafeSerializer(secret, salt="postsale-links")
        self.public_url = public_url.rstrip("/")

    def token(self, purpose: str, customer_id: str, message_id: str, extra: str = "") -> str:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown link purpose {purpose!r}")
        body = VERSION + _b64(_payload((purpose, customer_id, message_id, extra)))
        return f"{body}.{self._mac(body)}"

    def read(self, token: str, purpose: str) -> LinkClaims | None:
        """The claims of a valid token of this purpose; None for anything tampered or foreign."""
        if token.startswith(VERSION):
            value = self._read_v2(token)
        else:
            try:
                value = self._legacy.loads(token)
            except BadSignature:
                return None
        if not (isinstance(value, list) and len(value) == 4 and all(isinstance(v, str) for v in value)):
            return None
        if value[0] != purpose:
            return None
        return LinkClaims(*value)

    def _mac(self, body: str) -> str:
        return _b64(self._hmac.digest(body.encode("ascii"))[:_MAC_BYTES])

    def _read_v2(self, token: str) -> object:
        body, dot, mac = token.rpartition(".")
        if not dot or len(mac) != _MAC_CHARS or not body.isascii():
            return None
        # Compare the canonical encoding of the right MAC: no second spelling of one MAC passes.
        if not hmac.compare_digest(mac.encode("ascii", "replace"), self._mac(body).encode("ascii")):
            return None
        payload = body[len(VERSION):]
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            return json.loads(raw.decode("utf-8"))
        except (binascii.Error, ValueError):     # signed by us, so never; but never a 500 either
            return None

    def unsubscribe_url(self, customer_id: str, message_id: str) -> str:
        return f"{self.public_url}/u/{self.token('unsubscribe', customer_id, message_id)}"

    def preferences_url(self, customer_id: str, message_id: str) -> str:
        return f"{self.public_url}/u/{self.token('preferences', customer_id, message_id)}?prefs=1"

    def survey_url(self, customer_id: str, message_id: str, survey_id: str, answer: int | str | None = None) -> str:
        url = f"{self.public_url}/s/{self.token('survey', customer_id, message_id, survey_id)}"
        return url if answer is None else f"{url}?a={answer}"
