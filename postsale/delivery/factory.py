"""Choose the transport ``POSTSALE_TRANSPORT`` names, configured from ``Settings``."""

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
    if settings.transport == "sendgrid":
        if not settings.sendgrid_api_key:
            raise ConfigError("POSTSALE_TRANSPORT=sendgrid needs SENDGRID_API_KEY")
        settings.require_production_secret()      # links in this mail leave the machine
        from postsale.delivery.sendgrid import SendGridTransport
        return SendGridTransport(settings.sendgrid_api_key, host=settings.sendgrid_host,
                                 sandbox=settings.sendgrid_sandbox, timeout=settings.delivery_timeout,
                                 concurrency=settings.sendgrid_concurrency,
                                 unsubscribe_group=settings.sendgrid_unsubscribe_group)
    if settings.transport == "smtp":
        if not settings.smtp_url:
            raise ConfigError("POSTSALE_TRANSPORT=smtp needs POSTSALE_SMTP_URL (smtp://user:pass@host:port)")
        from postsale.delivery.smtp import SmtpConfig, SmtpTransport
        config = SmtpConfig.from_url(settings.smtp_url)
        if not config.loopback:
            settings.require_production_secret()
        return SmtpTransport(config, timeout=max(settings.delivery_timeout, 30.0))
    raise ConfigError(f"POSTSALE_TRANSPORT={settings.transport!r} is not one of outbox, sendgrid, smtp")
