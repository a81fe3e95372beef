"""SMTP through the standard library: ``POSTSALE_SMTP_URL=smtp://user:pass@host:port``.

One connection per batch, reused for every message in it. ``smtp://`` (default port 587)
upgrades with STARTTLS whenever the server offers it; ``smtps://`` (default 465) is TLS from the
first byte. Credentials, when the URL has them, are only sent over TLS, or in clear to a
loopback server (a local relay or a test). Each message is the MIME that
``postsale.render.mime.build_mime`` makes (text and HTML parts, encoded headers, our stable
``Message-ID`` and ``X-Postsale-Message-Id``).

Outcomes: a 2xx reply to DATA is ok (the reply, usually "queued as ...", is the provider id);
a 4xx reply is transient, a 5xx reply permanent with the server's text; failing to connect,
to start TLS or to log in delays the whole batch (transient: an operator fixes the relay, no
mail is lost). A connection lost or timed out while a message was being handed over is
*uncertain*: the server may have queued it, so the outbox waits before resending. SMTP
reports no delivery events, so such a message is resent (flagged) after the reconcile window.
"""

from __future__ import annotations

import ipaddress
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Sequence
from urllib.parse import unquote, urlsplit

from postsale.delivery.base import OutgoingEmail, SendResult
from postsale.delivery.outcomes import uncertain
from postsale.errors import ConfigError
from postsale.render.mime import build_mime

log = logging.getLogger("postsale.delivery.smtp")


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    implicit_tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> "SmtpConfig":
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(f"POSTSALE_SMTP_URL must look like smtp://user:pass@host:port, not {_redact(url)!r}")
        try:
            port = parts.port or (465 if parts.scheme == "smtps" else 587)
        except ValueError:
            raise ConfigError(f"POSTSALE_SMTP_URL has a bad port: {_redact(url)!r}") from None
        return cls(host=parts.hostname, port=port,
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None,
                   implicit_tls=parts.scheme == "smtps")

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


class _BatchAbort(Exception):
    """The connection cannot carry more messages: the rest of the batch waits."""

    def __init__(self, reason: str, *, handed_over: bool) -> None:
        super().__init__(reason)
        self.handed_over = handed_over       # lost during DATA: the server may have queued it


class SmtpTransport:
    name = "smtp"

    def __init__(self, config: SmtpConfig | str, *, timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None,
                 local_hostname: str | None = None) -> None:
        self.config = SmtpConfig.from_url(config) if isinstance(config, str) else config
        self.timeout = timeout
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.local_hostname = local_hostname

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        results: list[SendResult] = []
        if not batch:
            return results
        try:
            smtp = self._connect()
        except (OSError, smtplib.SMTPException, ConfigError) as exc:
            log.error("SMTP %s:%s unavailable: %s", self.config.host, self.config.port, exc)
            return [SendResult(e.message_id, False, error=f"SMTP unavailable: {exc}", transient=True) for e in batch]
        try:
            for index, email in enumerate(batch):
                try:
                    results.append(self._send_one(smtp, email))
                except _BatchAbort as exc:
                    if exc.handed_over:
                        results.append(uncertain(email.message_id, f"SMTP connection lost during DATA: {exc}; "
                                                                   "the server may have queued it"))
                    else:
                        results.append(SendResult(email.message_id, False, error=f"SMTP connection lost: {exc}",
                                                  transient=True))
                    results.extend(SendResult(e.message_id, False, error=f"not attempted: SMTP connection lost ({exc})",
                                              transient=True) for e in batch[index + 1:])
                    break
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        return results

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        if cfg.implicit_tls:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=self.timeout, context=self.ssl_context,
                                                  local_hostname=self.local_hostname)
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=self.timeout, local_hostname=self.local_hostname)
        try:
            smtp.ehlo()
            secure = cfg.implicit_tls
            if not secure and smtp.has_extn("starttls"):
                smtp.starttls(context=self.ssl_context)
                smtp.ehlo()
                secure = True
            if cfg.username:
                if not secure and not cfg.loopback:
                    raise ConfigError(f"{cfg.host} does not offer STARTTLS: refusing to send the SMTP password in clear")
                smtp.login(cfg.username, cfg.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _send_one(self, smtp: smtplib.SMTP, email: OutgoingEmail) -> SendResult:
        try:
            mime = build_mime(message_id=email.message_id, from_=email.from_, to=email.to_email,
                              to_name=email.to_name, reply_to=email.reply_to, subject=email.subject,
                              html=email.html, text=email.text, headers=email.headers, date=email.date)
        except ValueError as exc:
            return SendResult(email.message_id, False, error=f"bad message: {exc}")
        sender = parseaddr(email.from_)[1]
        try:
            code, reply = smtp.mail(sender)
            if code != 250:
                return self._refused(smtp, email, "MAIL FROM", code, reply)
            code, reply = smtp.rcpt(email.to_email)
            if code not in (250, 251):
                return self._refused(smtp, email, "RCPT TO", code, reply)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # Nothing was handed over before DATA: a clean failure, but the connection is gone.
            raise _BatchAbort(str(exc) or type(exc).__name__, handed_over=False) from exc
        try:
            code, reply = smtp.data(bytes(mime))
        except smtplib.SMTPServerDisconnected as exc:
            raise _BatchAbort(str(exc) or type(exc).__name__, handed_over=True) from exc
        except smtplib.SMTPResponseException as exc:      # DATA itself refused (no 354)
            return self._refused(smtp, email, "DATA", exc.smtp_code, exc.smtp_error)
        except OSError as exc:                            # timeout or reset mid-message
            raise _BatchAbort(str(exc) or type(exc).__name__, handed_over=True) from exc
        if code != 250:
            return self._refused(smtp, email, "DATA", code, reply)
        text = reply.decode("utf-8", "replace").strip()
        return SendResult(email.message_id, True, provider_id=f"smtp:{text}"[:200])

    def _refused(self, smtp: smtplib.SMTP, email: OutgoingEmail, stage: str, code: int,
                 reply: bytes | str) -> SendResult:
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            pass
        said = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        text = f"SMTP {code} at {stage}: {said.strip()}"[:1000]
        return SendResult(email.message_id, False, error=text, transient=400 <= code < 500)
