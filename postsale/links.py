"""Signed links: unsubscribe, preferences and one-click survey answers.

A token binds purpose, customer and message with an HMAC over ``POSTSALE_SECRET``
(itsdangerous), so that a tampered or foreign token is refused and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

PURPOSES = ("unsubscribe", "preferences", "survey")


@dataclass(frozen=True)
class LinkClaims:
    purpose: str
    customer_id: str
    message_id: str
    extra: str = ""                        # survey id for survey links


class Links:
    def __init__(self, secret: str, public_url: str) -> None:
        self._signer = URLSafeSerializer(secret, salt="postsale-links")
        self.public_url = public_url.rstrip("/")

    def token(self, purpose: str, customer_id: str, message_id: str, extra: str = "") -> str:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown link purpose {purpose!r}")
        return self._signer.dumps([purpose, customer_id, message_id, extra])

    def read(self, token: str, purpose: str) -> LinkClaims | None:
        """The claims of a valid token of this purpose; None for anything tampered or foreign."""
        try:
            value = self._signer.loads(token)
        except BadSignature:
            return None
        if not (isinstance(value, list) and len(value) == 4 and all(isinstance(v, str) for v in value)):
            return None
        if value[0] != purpose:
            return None
        return LinkClaims(*value)

    def unsubscribe_url(self, customer_id: str, message_id: str) -> str:
        return f"{self.public_url}/u/{self.token('unsubscribe', customer_id, message_id)}"

    def preferences_url(self, customer_id: str, message_id: str) -> str:
        return f"{self.public_url}/u/{self.token('preferences', customer_id, message_id)}?prefs=1"

    def survey_url(self, customer_id: str, message_id: str, survey_id: str, answer: int | str | None = None) -> str:
        url = f"{self.public_url}/s/{self.token('survey', customer_id, message_id, survey_id)}"
        return url if answer is None else f"{url}?a={answer}"
