"""The sender against a real HTTP server on loopback: what arrives is signed so that an
integrator's standardwebhooks.verify (or a few lines of hmac) accepts it, and every kind of
failure comes back as a SendResult with the right retry decision."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from patron import __version__
from patron.config import Settings
from patron.webhooks import sender, signing
from patron.webhooks.models import WebhookEndpoint
from tests.support.http_receiver import Receiver, start_receiver

LOCAL = Settings(webhook_allow_private=True, webhook_timeout_seconds=2.0)
BODY = json.dumps(
    {"id": "evt_42", "type": "points.earned", "data": {"points": 258, "name": "김민지"}},
    ensure_ascii=False,
    separators=(",", ":"),
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on loopback (tests.support.http_receiver)."""
    got, server = start_receiver()
    yield got
    server.shutdown()
    server.server_close()


def endpoint(url: str, **fields) -> WebhookEndpoint:
    values = {
        "id": 1,
        "url": url,
        "secret": signing.new_secret(),
        "previous_secret": None,
        "previous_secret_until": None,
        "active": True,
    }
    values.update(fields)
    return WebhookEndpoint(**values)


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def verify_by_hand(secret: str, body: bytes, headers: dict[str, str]) -> dict:
    """The plain-Python check docs/webhooks.md gives integrators without the package."""
    headers = {k.lower(): v for k, v in headers.items()}
    msg_id = headers["webhook-id"]
    stamp = headers["webhook-timestamp"]
    if abs(time.time() - int(stamp)) > 300:
        raise ValueError("timestamp too far from now")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in headers["webhook-signature"].split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise ValueError("no valid signature")


def test_a_delivery_arrives_signed_and_verifies_as_an_integrator_would(receiver):
    ep = endpoint(receiver.url + "/hooks/patron")
    result = sender.post(ep, message_id="evt_42", body=BODY, now=datetime.now(UTC), settings=LOCAL)
    assert result.ok and result.status_code == 200
    assert result.response == "ok" and result.duration_ms >= 0
    (got,) = receiver.requests
    assert (got.method, got.path) == ("POST", "/hooks/patron")
    assert got.body == BODY.encode("utf-8")  # byte for byte what was signed
    headers = lower(got.headers)
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == f"Patron-Webhooks/{__version__}"
    assert headers["webhook-id"] == "evt_42"
    assert Webhook(ep.secret).verify(got.body, got.headers)["data"]["name"] == "김민지"
    assert verify_by_hand(ep.secret, got.body, got.headers)["id"] == "evt_42"
    # A tampered body or another secret does not verify.
    with pytest.raises(WebhookVerificationError):
        Webhook(ep.secret).verify(got.body.replace(b"258", b"9258"), got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(got.body, got.headers)


def test_the_timestamp_is_the_try_time_so_an_old_capture_is_refused(receiver):
    ep = endpoint(receiver.url)
    old = datetime.now(UTC) - timedelta(minutes=10)
    assert sender.post(ep, message_id="evt_1", body=BODY, now=old, settings=LOCAL).ok
    (got,) = receiver.requests
    assert lower(got.headers)["webhook-timestamp"] == str(int(old.timestamp()))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(ep.secret).verify(got.body, got.headers)


def test_during_a_rotation_both_secrets_sign_then_only_the_new_one(receiver):
    now = datetime.now(UTC)
    old_secret, new_secret = signing.new_secret(), signing.new_secret()
    ep = endpoint(
        receiver.url,
        secret=new_secret,
        previous_secret=old_secret,
        previous_secret_until=now + timedelta(hours=24),
    )
    assert sender.post(ep, message_id="evt_1", body=BODY, now=now, settings=LOCAL).ok
    got = receiver.requests[-1]
    assert len(lower(got.headers)["webhook-signature"].split(" ")) == 2
    Webhook(new_secret).verify(got.body, got.headers)
    Webhook(old_secret).verify(got.body, got.headers)
    verify_by_hand(old_secret, got.body, got.headers)

    # Once the grace period is over the previous secret no longer signs.
    ep.previous_secret_until = now - timedelta(seconds=1)
    assert sender.post(ep, message_id="evt_2", body=BODY, now=now, settings=LOCAL).ok
    got = receiver.requests[-1]
    assert len(lower(got.headers)["webhook-signature"].split(" ")) == 1
    Webhook(new_secret).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old_secret).verify(got.body, got.headers)


# (status, delivered, worth another try)
ANSWERS = [
    (200, True, True),
    (202, True, True),
    (204, True, True),
    (400, False, False),
    (401, False, False),
    (404, False, False),
    (410, False, False),
    (408, False, True),
    (429, False, True),
    (500, False, True),
    (502, False, True),
    (503, False, True),
]


def test_what_the_answer_means_for_another_try(receiver):
    # One receiver for every status: each server takes half a second to shut down.
    ep = endpoint(receiver.url)
    for status, ok, retryable in ANSWERS:
        receiver.answer((status, f"answer {status}" if status != 204 else ""))
        result = sender.post(
            ep, message_id="evt_1", body=BODY, now=datetime.now(UTC), settings=LOCAL
        )
        assert (result.ok, result.status_code) == (ok, status)
        if not ok:
            assert result.retryable is retryable, status
            assert result.error == f"answered {status}"
            assert result.response == f"answer {status}"
    assert len(receiver.requests) == len(ANSWERS)


def test_a_redirect_is_not_followed_and_not_retried(receiver):
    receiver.answer((302, "moved"))
    result = sender.post(
        endpoint(receiver.url),
        message_id="evt_1",
        body=BODY,
        now=datetime.now(UTC),
        settings=LOCAL,
    )
    assert (result.ok, result.status_code, result.retryable) == (False, 302, False)
    assert "not followed" in (result.error or "")
    assert len(receiver.requests) == 1


def test_a_slow_endpoint_times_out_and_is_retried(receiver):
    receiver.delay_seconds = 1.5
    started = time.monotonic()
    result = sender.post(
        endpoint(receiver.url),
        message_id="evt_1",
        body=BODY,
        now=datetime.now(UTC),
        settings=Settings(webhook_allow_private=True, webhook_timeout_seconds=0.3),
    )
    assert (result.ok, result.retryable, result.status_code) == (False, True, None)
    assert "timed out after 0.3 s" in (result.error or "")
    assert time.monotonic() - started < 1.4  # it did not wait for the answer
    assert 250 <= result.duration_ms < 1400


def test_nothing_listening_is_a_connection_error_worth_retrying():
    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = sender.post(
        endpoint(f"http://127.0.0.1:{port}/"),
        message_id="evt_1",
        body=BODY,
        now=datetime.now(UTC),
        settings=LOCAL,
    )
    assert (result.ok, result.retryable, result.status_code) == (False, True, None)
    assert "ConnectError" in (result.error or "")


def test_a_long_answer_is_cut_to_1000_characters(receiver):
    receiver.answer((500, "x" * 5000))
    result = sender.post(
        endpoint(receiver.url),
        message_id="evt_1",
        body=BODY,
        now=datetime.now(UTC),
        settings=LOCAL,
    )
    assert result.response is not None and len(result.response) == 1000


def test_a_stored_url_that_is_no_longer_valid_is_not_retried():
    result = sender.post(
        endpoint("ftp://example.com/"),
        message_id="evt_1",
        body=BODY,
        now=datetime.now(UTC),
        settings=LOCAL,
    )
    assert (result.ok, result.retryable) == (False, False)
    assert "only http" in (result.error or "")


def test_secrets_follow_the_standard_format():
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert signing.new_secret() != secret
    assert signing.secret_hint(secret) == secret[:10] + "…"
