"""SmtpTransport against an aiosmtpd server on loopback; the received MIME is parsed and checked."""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import socket
import ssl
from email import policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from postsale.delivery.outcomes import is_uncertain
from postsale.delivery.smtp import SmtpConfig, SmtpTransport
from postsale.errors import ConfigError
from postsale.store.delivery import deliver, outgoing
from tests.delivery.conftest import LIST_UNSUBSCRIBE, queue_messages, rows


class Inbox:
    """An aiosmtpd handler that keeps what it receives and refuses what it is told to."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.refuse: dict[str, str] = {}
        self.hang_up_on: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if set(envelope.rcpt_tos) & self.hang_up_on:
            server.transport.close()          # the connection drops while the message is handed over
            return "250 OK"
        self.messages.append({"peer": session.peer, "mail_from": envelope.mail_from, "rcpt": list(envelope.rcpt_tos),
                              "raw": envelope.content, "tls": session.ssl is not None,
                              "login": session.login_data})
        return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    started = []

    def start(**kwargs) -> tuple[Inbox, int]:
        inbox, port = Inbox(), _free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, server_hostname="localhost", **kwargs)
        controller.start()
        started.append(controller)
        return inbox, port

    yield start
    for controller in started:
        controller.stop()


def test_a_batch_goes_over_one_connection_as_standard_mime(ctx, smtp_server):
    inbox, port = smtp_server()
    ids = queue_messages(ctx, 3)
    report = deliver(ctx, SmtpTransport(f"smtp://127.0.0.1:{port}", timeout=5))
    assert report.sent == 3
    assert len({m["peer"] for m in inbox.messages}) == 1            # one connection for the batch
    first = inbox.messages[0]
    assert first["mail_from"] == "hello@acme.example" and first["rcpt"] == ["c-m0@example.com"]
    raw = first["raw"]
    msg = email.message_from_bytes(raw, policy=policy.default)
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")             # headers are 7-bit on the wire
    assert "=?utf-8?" in head.lower()                                 # encoded words for Zoë and ☕
    assert msg["Subject"] == "Grazie per l'ordine ☕"
    assert msg["To"].addresses[0].display_name == "Zoë 0"
    assert msg["To"].addresses[0].addr_spec == "c-m0@example.com"
    assert str(msg["From"]) == "Acme <hello@acme.example>"
    assert str(msg["Reply-To"]) == "care@acme.example"
    assert msg["Message-ID"] == f"<{ids[0]}@acme.example>"
    assert msg["X-Postsale-Message-Id"] == ids[0]
    assert " ".join(str(msg["List-Unsubscribe"]).split()) == LIST_UNSUBSCRIBE
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.iter_parts()
    assert text.get_content_type() == "text/plain" and "Hello 0, thanks for your order" in text.get_content()
    assert html.get_content_type() == "text/html" and "<p>Hello 0, thanks for your order</p>" in html.get_content()
    row = rows(ctx)[ids[0]]
    assert row.status == "sent" and row.provider_id == "smtp:2.0.0 Ok: queued as Q1"


def test_starttls_and_login_when_configured(ctx, smtp_server, tmp_path):
    server_tls, client_tls = _tls_pair(tmp_path)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cr:t")

    inbox, port = smtp_server(tls_context=server_tls, require_starttls=True, authenticator=authenticator,
                              auth_require_tls=True)
    queue_messages(ctx, 2)
    transport = SmtpTransport(f"smtp://mailer%40acme:s3cr%3At@127.0.0.1:{port}", timeout=5, ssl_context=client_tls)
    assert deliver(ctx, transport).sent == 2
    assert logins == [(b"mailer@acme", b"s3cr:t")]
    assert all(m["tls"] for m in inbox.messages)


def test_refusals_fail_or_wait_per_message_and_the_rest_go_through(ctx, smtp_server):
    inbox, port = smtp_server()
    inbox.refuse = {"c-m1@example.com": "550 5.1.1 No such user", "c-m2@example.com": "451 4.7.1 Greylisted"}
    ids = queue_messages(ctx, 4)
    report = deliver(ctx, SmtpTransport(f"smtp://127.0.0.1:{port}", timeout=5))
    assert (report.sent, report.failed, report.retried) == (2, 1, 1)
    by_id = rows(ctx)
    assert by_id[ids[1]].status == "failed" and by_id[ids[1]].error == "SMTP 550 at RCPT TO: 5.1.1 No such user"
    assert by_id[ids[2]].status == "queued" and "451" in by_id[ids[2]].error
    assert [m["rcpt"] for m in inbox.messages] == [["c-m0@example.com"], ["c-m3@example.com"]]


def test_a_connection_lost_during_data_is_uncertain_and_the_rest_wait(ctx, smtp_server):
    inbox, port = smtp_server()
    inbox.hang_up_on = {"c-m1@example.com"}
    ids = queue_messages(ctx, 3)
    results = SmtpTransport(f"smtp://127.0.0.1:{port}", timeout=5).send([outgoing(rows(ctx)[i]) for i in ids])
    assert results[0].ok
    assert is_uncertain(results[1]) and results[1].transient
    assert results[2].transient and not is_uncertain(results[2]) and results[2].error.startswith("not attempted")


def test_an_unreachable_server_delays_the_whole_batch(ctx):
    queue_messages(ctx, 2)
    report = deliver(ctx, SmtpTransport(f"smtp://127.0.0.1:{_free_port()}", timeout=2))
    assert report.retried == 2 and report.failed == 0
    assert all(m.error.startswith("SMTP unavailable") for m in rows(ctx).values())


def test_smtp_urls():
    cfg = SmtpConfig.from_url("smtp://u%40x:p%2Fw@mail.example.com:2525")
    assert (cfg.host, cfg.port, cfg.username, cfg.password, cfg.implicit_tls, cfg.loopback) == (
        "mail.example.com", 2525, "u@x", "p/w", False, False)
    assert SmtpConfig.from_url("smtp://mail.example.com").port == 587
    assert SmtpConfig.from_url("smtps://mail.example.com").port == 465
    assert SmtpConfig.from_url("smtp://localhost:25").loopback
    with pytest.raises(ConfigError) as err:
        SmtpConfig.from_url("http://user:hunter2@mail.example.com")
    assert "hunter2" not in str(err.value)


def _tls_pair(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: the server's context and a client that trusts it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client
