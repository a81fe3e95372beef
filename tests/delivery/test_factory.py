"""POSTSALE_TRANSPORT picks and configures the transport from Settings."""

from __future__ import annotations

import pytest

from postsale.delivery.factory import make_transport
from postsale.delivery.sendgrid import SendGridTransport
from postsale.delivery.smtp import SmtpTransport
from postsale.errors import ConfigError
from postsale.settings import Settings

SECRET = "x" * 32


def settings(**kw) -> Settings:
    return Settings(_env_file=None, **kw)


def test_sendgrid_is_configured_from_settings():
    transport = make_transport(settings(transport="sendgrid", sendgrid_api_key="SG.k", secret=SECRET,
                                        sendgrid_host="http://127.0.0.1:9/", sendgrid_sandbox=True,
                                        delivery_timeout=3, sendgrid_concurrency=5, sendgrid_unsubscribe_group=12))
    assert isinstance(transport, SendGridTransport)
    assert transport.client.host == "http://127.0.0.1:9" and transport.sandbox and transport.timeout == 3
    assert transport.concurrency == 5 and transport.unsubscribe_group == 12
    transport.close()


def test_sendgrid_needs_a_key_and_a_real_secret():
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY"):
        make_transport(settings(transport="sendgrid", secret=SECRET))
    with pytest.raises(ConfigError, match="POSTSALE_SECRET"):
        make_transport(settings(transport="sendgrid", sendgrid_api_key="SG.k"))


def test_smtp_is_configured_from_its_url():
    transport = make_transport(settings(transport="smtp", smtp_url="smtp://u:p@127.0.0.1:2525"))
    assert isinstance(transport, SmtpTransport) and transport.config.port == 2525
    with pytest.raises(ConfigError, match="POSTSALE_SMTP_URL"):
        make_transport(settings(transport="smtp"))
    with pytest.raises(ConfigError, match="POSTSALE_SECRET"):      # links leave the machine
        make_transport(settings(transport="smtp", smtp_url="smtp://mail.example.com"))
