"""One Settings object, read from the environment and ``.env`` at the edge, passed inward.

Domain code never reads environment variables. SPEC.md §8 names every variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from postsale.errors import ConfigError

DEV_SECRET = "dev-only-insecure-secret-change-me"
_PLACEHOLDERS = {"", "changeme", "change-me", "secret", DEV_SECRET}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      populate_by_name=True)

    database_url: str = Field("sqlite:///postsale.db", alias="POSTSALE_DATABASE_URL")
    journeys: Path = Field(Path("journeys"), alias="POSTSALE_JOURNEYS")
    templates: Path = Field(Path("templates"), alias="POSTSALE_TEMPLATES")
    transport: Literal["outbox", "sendgrid", "smtp", "memory"] = Field("outbox", alias="POSTSALE_TRANSPORT")
    outbox: Path = Field(Path("outbox"), alias="POSTSALE_OUTBOX")
    secret: str = Field(DEV_SECRET, alias="POSTSALE_SECRET")
    api_token: str | None = Field(None, alias="POSTSALE_API_TOKEN")
    sendgrid_api_key: str | None = Field(None, alias="SENDGRID_API_KEY")
    sendgrid_sandbox: bool = Field(False, alias="SENDGRID_SANDBOX")
    sendgrid_host: str = Field("https://api.sendgrid.com", alias="POSTSALE_SENDGRID_HOST")
    sendgrid_webhook_public_key: str | None = Field(None, alias="POSTSALE_SENDGRID_WEBHOOK_PUBLIC_KEY")
    smtp_url: str | None = Field(None, alias="POSTSALE_SMTP_URL")
    # delivery (issue 5): provider timeout and concurrency, SendGrid's unsubscribe group for
    # marketing mail, the webhook's timestamp age limit, and how long a message whose send
    # had an unknown outcome waits for provider evidence before it is resent once.
    delivery_timeout: float = Field(10.0, gt=0, alias="POSTSALE_DELIVERY_TIMEOUT")
    sendgrid_concurrency: int = Field(8, ge=1, le=64, alias="POSTSALE_SENDGRID_CONCURRENCY")
    sendgrid_unsubscribe_group: int | None = Field(None, alias="POSTSALE_SENDGRID_UNSUBSCRIBE_GROUP")
    sendgrid_webhook_max_age: float = Field(600.0, gt=0, alias="POSTSALE_SENDGRID_WEBHOOK_MAX_AGE")
    delivery_reconcile_after: float = Field(900.0, gt=0, alias="POSTSALE_DELIVERY_RECONCILE_AFTER")
    dispatch_batch_size: int = Field(500, alias="POSTSALE_DISPATCH_BATCH_SIZE")
    # processes that decide (engine + render) a large dispatch batch: 0 = one per core, at most
    # 4 (two on a two-core machine: the dispatcher and one worker); 1 = the dispatcher alone
    dispatch_workers: int = Field(0, ge=0, alias="POSTSALE_DISPATCH_WORKERS")
    dispatch_interval_seconds: float = Field(5.0, alias="POSTSALE_DISPATCH_INTERVAL")
    shopify_secret: str | None = Field(None, alias="POSTSALE_SHOPIFY_SECRET")   # webhook HMAC key
    stripe_secret: str | None = Field(None, alias="POSTSALE_STRIPE_SECRET")     # whsec_... signing secret

    def require_production_secret(self) -> None:
        """Refuse placeholder secrets where links leave the machine (a real provider)."""
        if self.secret.strip().lower() in _PLACEHOLDERS or len(self.secret) < 16:
            raise ConfigError("POSTSALE_SECRET is a placeholder: set a random value of 16+ characters "
                              "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
