"""A real SMTP server (aiosmtpd) on loopback that catches every message, for e-mail tests.

Use it in a test module or a conftest with

    from tests.support.mail import (  # noqa: F401
        make_smtp_server_fixture, smtp_server_fixture, smtp_tls_fixture,
    )

(the fixtures are named smtp_server, make_smtp_server and smtp_tls; bound to other names, a
test's parameters shadow no import and ruff stays quiet):

    def test_mail(smtp_server):
        result = send_email("kim@example.kr", "안녕", "본문", settings=smtp_server.settings())
        (mail,) = smtp_server.wait_for(1)
        assert mail.subject == "안녕" and mail.text.strip() == "본문"

`smtp_server.settings(**overrides)` is a Settings pointing at the server (email_channel "smtp");
`smtp_server.env()` the same as PATRON_* environment variables, for a `patron` subprocess.
Options (STARTTLS or implicit TLS with a throwaway CA, AUTH with a username and password) come
from `make_smtp_server(security=..., username=..., password=...)`, or from indirect
parametrization: `@pytest.mark.parametrize("smtp_server", [{"security": "starttls"}],
indirect=True)`. With TLS on, SSL_CERT_FILE names the throwaway CA for the test's duration,
which is how the client (ssl.create_default_context()) comes to trust the server's certificate.
`smtp_server.refuse(address)` makes the server refuse a recipient (550, or any reply given).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from patron.config import Settings

SECURITIES = ("none", "starttls", "tls")


@dataclass
class CaughtMail:
    """One message as it arrived: the envelope, the raw bytes and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    login: str | None  # the AUTH username, if the client logged in
    tls: bool  # whether it came over TLS (STARTTLS or implicit)

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def text(self) -> str:
        """The text/plain part, decoded, with line ends as "\\n" (a mail client's view: MIME
        text travels with CRLF)."""
        part = self.message.get_body(("plain",))
        return "" if part is None else _lines(part.get_content())

    @property
    def html(self) -> str | None:
        part = self.message.get_body(("html",))
        return None if part is None else _lines(part.get_content())

    def header(self, name: str) -> str | None:
        """The decoded header; a long one arrives folded, and unfolds with a leading space."""
        value = self.message[name]
        return None if value is None else str(value).strip()


def _lines(text: object) -> str:
    return str(text).replace("\r\n", "\n")


@dataclass
class ThrowawayCA:
    """A throwaway certificate authority and a server certificate for localhost/127.0.0.1."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_test_ca(directory: Path) -> ThrowawayCA:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Patron test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca = ThrowawayCA(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    ca.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca


class _Catcher:
    """The aiosmtpd handler: refuses the recipients it was told to, keeps everything else."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[CaughtMail] = []
        self.refusals: dict[str, str] = {}
        self.queued = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            refusal = self.refusals.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        login = getattr(session.auth_data, "login", session.auth_data)
        if isinstance(login, bytes):
            login = login.decode("utf-8")
        mail = CaughtMail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            raw=raw,
            message=parsed,
            login=login,
            tls=tls,
        )
        with self.lock:
            self.messages.append(mail)
            self.queued += 1
            number = self.queued
        return f"250 2.0.0 Ok: queued as T{number:05d}"


@dataclass
class SmtpServer:
    host: str
    port: int
    security: str
    username: str | None
    password: str | None
    ca: ThrowawayCA | None
    _catcher: _Catcher = field(repr=False)
    _controller: Controller = field(repr=False)

    @property
    def messages(self) -> list[CaughtMail]:
        with self._catcher.lock:
            return list(self._catcher.messages)

    def settings(self, **overrides: Any) -> Settings:
        """Settings that send e-mail to this server over SMTP (overrides win)."""
        values: dict[str, Any] = {
            "email_channel": "smtp",
            "smtp_host": self.host,
            "smtp_port": self.port,
            "smtp_security": self.security,
            "smtp_username": self.username or "",
            "smtp_password": self.password or "",
            "smtp_from": "Patron <noreply@patron.test>",
            "smtp_timeout_seconds": 5.0,
        }
        values.update(overrides)
        return Settings(**values)

    def env(self) -> dict[str, str]:
        """The same settings as environment variables (plus SSL_CERT_FILE for TLS)."""
        out = {f"PATRON_{k.upper()}": str(v) for k, v in self.settings().model_dump().items()}
        keep = {k: v for k, v in out.items() if k.startswith(("PATRON_SMTP_", "PATRON_EMAIL_"))}
        if self.ca is not None:
            keep["SSL_CERT_FILE"] = str(self.ca.ca_file)
        return keep

    def wait_for(self, n: int = 1, timeout: float = 10.0) -> list[CaughtMail]:
        """Block until at least n messages arrived (or fail the test); answers them all."""
        deadline = time.monotonic() + timeout
        while True:
            caught = self.messages
            if len(caught) >= n:
                return caught
            if time.monotonic() >= deadline:
                raise AssertionError(f"expected {n} e-mails, got {len(caught)}")
            time.sleep(0.02)

    def refuse(self, address: str, reply: str = "550 5.1.1 No such user here") -> None:
        """Answer RCPT TO for this address with `reply` (a 4xx defers, a 5xx refuses)."""
        with self._catcher.lock:
            self._catcher.refusals[address.lower()] = reply

    def clear(self) -> None:
        with self._catcher.lock:
            self._catcher.messages.clear()

    def stop(self) -> None:
        self._controller.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_smtp_server(
    *,
    security: str = "none",
    username: str | None = None,
    password: str | None = None,
    ca: ThrowawayCA | None = None,
    smtputf8: bool = False,
) -> SmtpServer:
    """Start a catcher; TLS needs `ca`. With a username, AUTH is offered (and, over STARTTLS,
    required) and only that username and password are accepted."""
    if security not in SECURITIES:
        raise ValueError(f"security must be one of {SECURITIES}")
    if security != "none" and ca is None:
        raise ValueError("TLS needs a ThrowawayCA")
    catcher = _Catcher()
    smtp_kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
    if username is not None:

        def authenticate(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and data.login.decode("utf-8") == username
                and data.password.decode("utf-8") == password
            )
            if ok:
                return AuthResult(success=True, auth_data=data)
            return AuthResult(success=False, handled=False)

        smtp_kwargs["authenticator"] = authenticate
        # With STARTTLS, AUTH is offered only after the upgrade and is required to send (as on
        # a real submission server). aiosmtpd only knows about STARTTLS, so on implicit TLS and
        # on a plain server AUTH is offered from the start and optional (it warns otherwise).
        smtp_kwargs["auth_require_tls"] = security == "starttls"
        smtp_kwargs["auth_required"] = security == "starttls"
    controller_kwargs: dict[str, Any] = {}
    if security == "starttls":
        assert ca is not None
        smtp_kwargs["tls_context"] = ca.server_context()
        smtp_kwargs["require_starttls"] = True
    elif security == "tls":
        assert ca is not None
        controller_kwargs["ssl_context"] = ca.server_context()

    last_error: Exception | None = None
    for _ in range(5):  # the free port can be taken between probe and bind
        port = _free_port()
        controller = Controller(
            catcher,
            hostname="127.0.0.1",
            port=port,
            server_hostname="localhost",
            **controller_kwargs,
            **smtp_kwargs,
        )
        try:
            controller.start()
        except Exception as exc:  # aiosmtpd re-raises the server thread's error as is
            last_error = exc
            continue
        return SmtpServer(
            host="127.0.0.1",
            port=port,
            security=security,
            username=username,
            password=password,
            ca=ca,
            _catcher=catcher,
            _controller=controller,
        )
    raise RuntimeError(f"cannot start the SMTP catcher: {last_error}")


@pytest.fixture(scope="session", name="smtp_tls")
def smtp_tls_fixture(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayCA:
    """The throwaway CA and server certificate (one per test session)."""
    return make_test_ca(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture(name="make_smtp_server")
def make_smtp_server_fixture(
    smtp_tls: ThrowawayCA, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., SmtpServer]]:
    """A factory: make_smtp_server(security="starttls", username="u", password="p")."""
    servers: list[SmtpServer] = []

    def make(
        *,
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
        smtputf8: bool = False,
    ) -> SmtpServer:
        ca = smtp_tls if security != "none" else None
        if ca is not None:
            # The client's ssl.create_default_context() reads this when it is made.
            monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))
        server = start_smtp_server(
            security=security, username=username, password=password, ca=ca, smtputf8=smtputf8
        )
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(name="smtp_server")
def smtp_server_fixture(
    request: pytest.FixtureRequest, make_smtp_server: Callable[..., SmtpServer]
) -> SmtpServer:
    """A plain SMTP catcher; options through indirect parametrization (see the docstring)."""
    options: dict[str, Any] = getattr(request, "param", None) or {}
    return make_smtp_server(**options)
