"""SSRF: which URLs a webhook may point at, at registration and again at every send.

The DNS answers in the rebinding and pinning tests come from a stand-in resolver (the thing
being attacked is DNS itself); the HTTP server they end up at is real."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from patron.config import Settings
from patron.errors import Invalid
from patron.webhooks import sender, signing, ssrf
from patron.webhooks.models import WebhookEndpoint
from tests.support.http_receiver import Receiver, start_receiver

REFUSED_ADDRESSES = [
    "http://127.0.0.1/hook",
    "http://127.0.0.1:8000/hook",
    "http://localhost/hook",
    "http://LOCALHOST./hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.0.10/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 form of 169.254.169.254
    "http://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://0.0.0.0/",
    "http://2130706433/",  # 127.0.0.1 as one number: the resolver reads it so
    "http://0x7f.1/",
    "http://100.64.0.1/",  # carrier-grade NAT, not public
    "http://224.0.0.1/",
    "http://240.0.0.1/",
]
BAD_SHAPES = [
    ("ftp://example.com/hook", "only http"),
    ("file:///etc/passwd", "only http"),
    ("gopher://127.0.0.1:6379/_INFO", "only http"),
    ("http:///hook", "no host"),
    ("https://", "no host"),
    ("http://user:secret@example.com/hook", "user name or password"),
    ("http://example.com@127.0.0.1/", "user name or password"),
    ("http://exa mple.com/", "spaces"),
    ("http://example.com:99999/", "not a valid URL"),
    ("http://example.com/" + "a" * 500, "at most 500"),
    ("", "enter the URL"),
    ("not a url", "spaces"),
    ("example.com/hook", "only http"),
]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on loopback (tests.support.http_receiver)."""
    got, server = start_receiver()
    yield got
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("url", REFUSED_ADDRESSES)
def test_loopback_private_and_other_non_public_targets_are_refused(url):
    with pytest.raises(Invalid) as refused:
        ssrf.check_url(url, allow_private=False)
    assert refused.value.code == "invalid_url"
    assert refused.value.status == 422
    assert "not a public address" in refused.value.detail


@pytest.mark.parametrize("url", REFUSED_ADDRESSES)
def test_the_setting_allows_them_for_development(url):
    assert ssrf.check_url(url, allow_private=True).startswith("http://")


@pytest.mark.parametrize(("url", "says"), BAD_SHAPES)
@pytest.mark.parametrize("allow_private", [False, True])
def test_a_bad_shape_is_refused_whatever_the_setting(url, says, allow_private):
    with pytest.raises(Invalid) as refused:
        ssrf.check_url(url, allow_private=allow_private)
    assert refused.value.code == "invalid_url"
    assert says in refused.value.detail


def test_public_addresses_pass_and_the_url_is_normalised():
    # IP literals resolve to themselves without a DNS server.
    assert ssrf.check_url("HTTPS://93.184.216.34/Hook?a=1#frag", allow_private=False) == (
        "https://93.184.216.34/Hook?a=1"
    )
    assert ssrf.check_url("http://8.8.8.8:8080", allow_private=False) == "http://8.8.8.8:8080/"
    assert ssrf.check_url("http://[2606:4700::1111]/x", allow_private=False) == (
        "http://[2606:4700::1111]/x"
    )
    assert ssrf.check_url("https://例え.jp/a", allow_private=True) == "https://xn--r8jz45g.jp/a"


def test_a_name_with_one_private_address_among_public_ones_is_refused(monkeypatch):
    answers = [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.5")]
    monkeypatch.setattr(ssrf, "resolve", lambda host, port: answers)
    with pytest.raises(Invalid) as refused:
        ssrf.check_url("https://hooks.example.com/", allow_private=False)
    assert "10.0.0.5" in refused.value.detail


def test_a_name_that_does_not_resolve_is_refused_at_registration(monkeypatch):
    def nowhere(host, port):
        raise OSError("Name or service not known")

    monkeypatch.setattr(ssrf, "resolve", nowhere)
    with pytest.raises(Invalid) as refused:
        ssrf.check_url("https://hooks.example.com/", allow_private=False)
    assert "does not resolve" in refused.value.detail


def _endpoint(url: str) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=1, url=url, secret=signing.new_secret(), previous_secret=None, active=True
    )


def test_dns_rebinding_after_registration_is_refused_at_send_time(monkeypatch, receiver):
    port = receiver.url.rsplit(":", 1)[1]
    url = f"http://hooks.example.com:{port}/hook"
    # At registration the name answers with a public address …
    monkeypatch.setattr(ssrf, "resolve", lambda h, p: [ipaddress.ip_address("93.184.216.34")])
    stored = ssrf.check_url(url, allow_private=False)
    # … and by the time of the send it answers with loopback, where the receiver listens.
    monkeypatch.setattr(ssrf, "resolve", lambda h, p: [ipaddress.ip_address("127.0.0.1")])
    result = sender.post(
        _endpoint(stored),
        message_id="evt_1",
        body="{}",
        now=datetime.now(UTC),
        settings=Settings(webhook_allow_private=False),
    )
    assert not result.ok and not result.retryable
    assert "not a public address" in (result.error or "")
    assert receiver.requests == []  # nothing reached the loopback server


def test_the_send_connects_to_the_checked_address_and_keeps_the_host_name(monkeypatch, receiver):
    """The pinning itself: the resolver's one answer is where the connection goes, and the
    receiver still sees the endpoint's host name. Loopback stands in for a public address here
    (the check is told to accept it), since a test cannot listen on one."""
    port = receiver.url.rsplit(":", 1)[1]
    calls: list[str] = []

    def resolve(host, p):
        calls.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(ssrf, "resolve", resolve)
    monkeypatch.setattr(ssrf, "is_forbidden", lambda ip: False)
    result = sender.post(
        _endpoint(f"http://hooks.example.com:{port}/in"),
        message_id="evt_7",
        body='{"ok":true}',
        now=datetime.now(UTC),
        settings=Settings(webhook_allow_private=False),
    )
    assert result.ok, result
    assert calls == ["hooks.example.com"]  # resolved once, at the send
    (got,) = receiver.requests
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["host"] == f"hooks.example.com:{port}"
    assert got.path == "/in"


def test_a_name_that_stops_resolving_is_worth_another_try(monkeypatch):
    def nowhere(host, port):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(ssrf, "resolve", nowhere)
    result = sender.post(
        _endpoint("https://hooks.example.com/"),
        message_id="evt_1",
        body="{}",
        now=datetime.now(UTC),
        settings=Settings(webhook_allow_private=False),
    )
    assert (result.ok, result.retryable) == (False, True)
    assert "does not resolve" in (result.error or "")


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("8.8.8.8", False),
        ("2606:4700::1111", False),
        ("::ffff:8.8.8.8", False),
        ("::ffff:10.0.0.1", True),
        ("64:ff9b::808:808", False),
        ("64:ff9b::7f00:1", True),
        ("2002:0a00:0001::", True),
        ("ff02::1", True),
        ("::", True),
    ],
)
def test_embedded_ipv4_addresses_are_judged_by_what_they_embed(address, forbidden):
    assert ssrf.is_forbidden(ipaddress.ip_address(address)) is forbidden


# --- HTTPS to a pinned address: the certificate is still checked against the host name ------


def _certificates(tmp_path, host: str) -> tuple[str, str, str]:
    """A throwaway CA and a server certificate for `host`: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("Patron test CA"))
        .issuer_name(name("Patron test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(paths[0]), str(paths[1]), str(paths[2])


@pytest.fixture
def tls_server(tmp_path) -> Iterator[tuple[str, list[dict[str, str]], int]]:
    """An HTTPS server on 127.0.0.1 whose certificate names hooks.example.com only; yields
    (the CA file that signed it, the headers of every request it got, its port)."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    ca, cert, key = _certificates(tmp_path, "hooks.example.com")
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield ca, seen, int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("host", "ok"), [("hooks.example.com", True), ("evil.example.com", False)])
def test_https_to_the_pinned_address_verifies_the_certificate_for_the_host_name(
    monkeypatch, tls_server, host, ok
):
    import ssl

    ca, seen, port = tls_server
    trusting = ssl.create_default_context(cafile=ca)
    monkeypatch.setattr(sender, "_tls", lambda: trusting)
    monkeypatch.setattr(ssrf, "resolve", lambda h, p: [ipaddress.ip_address("127.0.0.1")])
    monkeypatch.setattr(ssrf, "is_forbidden", lambda ip: False)
    result = sender.post(
        _endpoint(f"https://{host}:{port}/hook"),
        message_id="evt_1",
        body="{}",
        now=datetime.now(UTC),
        settings=Settings(webhook_allow_private=False),
    )
    if ok:
        assert result.ok, result
        assert seen[0]["host"] == f"hooks.example.com:{port}"
    else:
        # The address was right but the certificate is not for this name: refused by TLS.
        assert (result.ok, result.retryable) == (False, True)
        assert (
            "CERTIFICATE_VERIFY_FAILED" in (result.error or "")
            or "certificate" in (result.error or "").lower()
        )
        assert seen == []
