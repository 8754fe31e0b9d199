"""The message channels against real servers: aiosmtpd for e-mail, the loopback HTTP receiver for
SMS providers. No database."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from patron.config import Settings
from patron.notify.channels import send, send_email, send_sms, sms_parts
from tests.support.http_receiver import Receiver, http_receiver  # noqa: F401
from tests.support.mail import (  # noqa: F401
    SmtpServer,
    make_smtp_server_fixture,
    smtp_server_fixture,
    smtp_tls_fixture,
)

KO_SUBJECT = "포인트 1,200점이 곧 소멸됩니다"
KO_BODY = "김민지 님, 2026년 4월 1일에 1,200 포인트가 소멸됩니다.\n감사합니다 — 빵집 드림"
ZH_SUBJECT = "您的积分即将过期：1,200 分"
ZH_BODY = "王小明您好，您有 1,200 积分将于 2026年4月1日 过期。\n谢谢！"
USER, PASSWORD = "mailer", "s3cret-암호"


def header(request_headers: dict[str, str], name: str) -> str | None:
    for key, value in request_headers.items():
        if key.lower() == name.lower():
            return value
    return None


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel does the handshake) and never speaks."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield int(listener.getsockname()[1])
    listener.close()


# --- e-mail over SMTP -------------------------------------------------------------------------


@pytest.mark.parametrize(("subject", "body"), [(KO_SUBJECT, KO_BODY), (ZH_SUBJECT, ZH_BODY)])
def test_cjk_mail_arrives_intact_over_plain_smtp(
    smtp_server: SmtpServer, subject: str, body: str
) -> None:
    result = send_email("member@example.kr", subject, body, settings=smtp_server.settings())

    assert result.ok, result.error
    assert result.status_code == 250
    assert result.response is not None and "queued as T00001" in result.response
    (mail,) = smtp_server.wait_for(1)
    assert mail.subject == subject
    assert mail.text.rstrip("\n") == body
    assert mail.mail_from == "noreply@patron.test"
    assert mail.rcpt_tos == ["member@example.kr"]
    assert mail.header("From") == "Patron <noreply@patron.test>"
    assert mail.header("To") == "member@example.kr"
    message_id = mail.header("Message-ID")
    assert message_id is not None and message_id.endswith("@patron.test>")
    assert mail.header("Date")
    assert mail.html is None
    assert not mail.tls
    # Every byte on the wire is 7-bit: the UTF-8 goes encoded, so no relay can mangle it.
    assert max(mail.raw) < 128
    assert subject.encode() not in mail.raw


def test_starttls_with_auth(make_smtp_server: Callable[..., SmtpServer]) -> None:
    server = make_smtp_server(security="starttls", username=USER, password=PASSWORD)

    result = send_email("member@example.kr", KO_SUBJECT, KO_BODY, settings=server.settings())

    assert result.ok, result.error
    (mail,) = server.wait_for(1)
    assert mail.tls
    assert mail.login == USER
    assert mail.subject == KO_SUBJECT
    assert mail.text.rstrip("\n") == KO_BODY


def test_implicit_tls_with_auth(make_smtp_server: Callable[..., SmtpServer]) -> None:
    server = make_smtp_server(security="tls", username=USER, password="ascii-only")

    result = send_email("member@example.cn", ZH_SUBJECT, ZH_BODY, settings=server.settings())

    assert result.ok, result.error
    (mail,) = server.wait_for(1)
    assert mail.tls
    assert mail.login == USER
    assert mail.subject == ZH_SUBJECT
    assert mail.text.rstrip("\n") == ZH_BODY


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_untrusted_certificate_is_a_retryable_tls_failure(
    make_smtp_server: Callable[..., SmtpServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    security: str,
) -> None:
    server = make_smtp_server(security=security)
    # A trust store without the test CA (an empty bundle): the certificate cannot verify.
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))

    result = send_email("member@example.kr", "hi", "hello", settings=server.settings())

    assert not result.ok
    assert result.retryable
    assert result.error is not None and "TLS" in result.error
    assert "certificate" in result.error.lower()
    time.sleep(0.1)
    assert server.messages == []


def test_starttls_never_falls_back_to_plain_text(smtp_server: SmtpServer) -> None:
    settings = smtp_server.settings(smtp_security="starttls")

    result = send_email("member@example.kr", "hi", "hello", settings=settings)

    assert not result.ok
    assert result.retryable
    assert result.error is not None and "STARTTLS" in result.error
    time.sleep(0.1)
    assert smtp_server.messages == []


def test_wrong_password_is_retryable(make_smtp_server: Callable[..., SmtpServer]) -> None:
    """A refused login is a settings problem, not the message's: retried, so the queue drains
    once the password is fixed."""
    server = make_smtp_server(security="starttls", username=USER, password=PASSWORD)

    wrong = send_email(
        "member@example.kr", "hi", "hello", settings=server.settings(smtp_password="nope")
    )
    wrong_utf8 = send_email(
        "member@example.kr", "hi", "hello", settings=server.settings(smtp_password="틀린-암호")
    )
    anonymous = send_email(
        "member@example.kr",
        "hi",
        "hello",
        settings=server.settings(smtp_username="", smtp_password=""),
    )

    assert not wrong.ok
    assert wrong.retryable
    assert wrong.status_code == 535
    assert wrong.error is not None and "login" in wrong.error
    assert not wrong_utf8.ok
    assert wrong_utf8.retryable
    assert wrong_utf8.status_code == 535
    # The server requires AUTH: the sender is refused with 530, also a settings problem.
    assert not anonymous.ok
    assert anonymous.retryable
    assert anonymous.status_code == 530
    time.sleep(0.1)
    assert server.messages == []


def test_refused_recipient_is_final_and_deferred_is_retried(smtp_server: SmtpServer) -> None:
    smtp_server.refuse("gone@example.kr")
    smtp_server.refuse("busy@example.kr", "451 4.2.1 Mailbox busy, try later")
    settings = smtp_server.settings()

    gone = send_email("gone@example.kr", "hi", "hello", settings=settings)
    busy = send_email("busy@example.kr", "hi", "hello", settings=settings)
    fine = send_email("fine@example.kr", "hi", "hello", settings=settings)

    assert not gone.ok
    assert not gone.retryable
    assert gone.status_code == 550
    assert gone.error is not None and "No such user" in gone.error
    assert not busy.ok
    assert busy.retryable
    assert busy.status_code == 451
    # The connection is left clean after a refusal: the next message goes through.
    assert fine.ok
    (mail,) = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["fine@example.kr"]


def test_connection_refused_is_retryable_and_fast(closed_port: int) -> None:
    settings = Settings(email_channel="smtp", smtp_host="127.0.0.1", smtp_port=closed_port)

    started = time.monotonic()
    result = send_email("member@example.kr", "hi", "hello", settings=settings)

    assert time.monotonic() - started < 2
    assert not result.ok
    assert result.retryable
    assert result.status_code is None
    assert result.error is not None and "cannot connect" in result.error


def test_a_server_that_never_answers_times_out(silent_server: int) -> None:
    settings = Settings(
        email_channel="smtp",
        smtp_host="127.0.0.1",
        smtp_port=silent_server,
        smtp_timeout_seconds=0.3,
    )

    started = time.monotonic()
    result = send_email("member@example.kr", "hi", "hello", settings=settings)

    assert time.monotonic() - started < 2
    assert not result.ok
    assert result.retryable
    assert result.error is not None and "timed out" in result.error
    assert result.duration_ms >= 300


def test_headers_and_html_arrive(smtp_server: SmtpServer) -> None:
    headers = {
        "List-Unsubscribe": "<https://loyalty.example/u/abc123>, <mailto:unsub@example.kr>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        # The dispatcher may fix the Message-ID per delivery, so a retry is recognisably the same.
        "Message-ID": "<delivery-42@patron.test>",
    }

    result = send_email(
        "member@example.kr",
        KO_SUBJECT,
        KO_BODY,
        settings=smtp_server.settings(),
        html=f"<p>{KO_BODY}</p>",
        headers=headers,
    )

    assert result.ok, result.error
    (mail,) = smtp_server.wait_for(1)
    assert mail.header("List-Unsubscribe") == headers["List-Unsubscribe"]
    assert mail.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert mail.message.get_all("Message-ID") == ["<delivery-42@patron.test>"]
    assert mail.message.get_content_type() == "multipart/alternative"
    assert mail.text.rstrip("\n") == KO_BODY
    assert mail.html is not None and mail.html.rstrip("\n") == f"<p>{KO_BODY}</p>"


def test_a_header_with_a_line_break_is_final_and_nothing_is_sent(smtp_server: SmtpServer) -> None:
    result = send_email(
        "member@example.kr",
        "hi",
        "hello",
        settings=smtp_server.settings(),
        headers={"X-Campaign": "spring\r\nBcc: everyone@example.kr"},
    )

    assert not result.ok
    assert not result.retryable
    time.sleep(0.1)
    assert smtp_server.messages == []


def test_a_subject_with_newlines_is_folded_to_one_line(smtp_server: SmtpServer) -> None:
    result = send_email(
        "member@example.kr", "포인트\n안내\n", "hello", settings=smtp_server.settings()
    )

    assert result.ok, result.error
    (mail,) = smtp_server.wait_for(1)
    assert mail.subject == "포인트 안내"


def test_international_address_needs_smtputf8(
    make_smtp_server: Callable[..., SmtpServer],
) -> None:
    plain = make_smtp_server()
    capable = make_smtp_server(smtputf8=True)

    refused = send_email("김민지@example.kr", "hi", "hello", settings=plain.settings())
    sent = send_email("김민지@example.kr", KO_SUBJECT, KO_BODY, settings=capable.settings())

    assert not refused.ok
    assert not refused.retryable
    assert refused.error is not None and "SMTPUTF8" in refused.error
    assert sent.ok, sent.error
    (mail,) = capable.wait_for(1)
    assert mail.rcpt_tos == ["김민지@example.kr"]
    assert mail.subject == KO_SUBJECT
    assert mail.text.rstrip("\n") == KO_BODY


def test_send_dispatches_email_to_smtp(smtp_server: SmtpServer) -> None:
    result = send(
        "email", "member@example.kr", ZH_SUBJECT, ZH_BODY, settings=smtp_server.settings()
    )

    assert result.ok, result.error
    (mail,) = smtp_server.wait_for(1)
    assert mail.subject == ZH_SUBJECT


# --- the log channels -------------------------------------------------------------------------


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_log_channels_write_one_json_line_each(tmp_path: Path) -> None:
    log = tmp_path / "out" / "messages.log"
    settings = Settings(email_channel="log", sms_channel="log", message_log=str(log))
    long_korean = "가" * 71  # one past a single UCS-2 message

    email = send_email(
        "member@example.kr",
        KO_SUBJECT,
        KO_BODY,
        settings=settings,
        headers={"List-Unsubscribe": "<https://loyalty.example/u/1>"},
    )
    sms = send_sms("+821012345678", long_korean, settings=settings)
    dev = send("log", "member-7", None, ZH_BODY, settings=settings)

    assert email.ok and sms.ok and dev.ok
    first, second, third = read_lines(log)
    assert first["channel"] == "email"
    assert first["to"] == "member@example.kr"
    assert first["subject"] == KO_SUBJECT
    assert first["body"] == KO_BODY
    assert first["headers"] == {"List-Unsubscribe": "<https://loyalty.example/u/1>"}
    assert isinstance(first["at"], str) and first["at"].endswith("+00:00")
    assert second["channel"] == "sms"
    assert second["to"] == "+821012345678"
    assert second["body"] == long_korean
    assert second["length"] == 71
    assert second["encoding"] == "ucs2"
    assert second["parts"] == 2
    assert third["channel"] == "log"
    assert third["body"] == ZH_BODY
    # Readable, not \\u-escaped: a developer reads this file.
    assert KO_SUBJECT in log.read_text(encoding="utf-8")


def test_an_unwritable_log_is_a_retryable_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = Settings(email_channel="log", message_log=str(blocker / "messages.log"))

    result = send_email("member@example.kr", "hi", "hello", settings=settings)

    assert not result.ok
    assert result.retryable


def test_an_unknown_channel_is_final() -> None:
    result = send("webhook", "https://example.kr/hook", None, "{}", settings=Settings())

    assert not result.ok
    assert not result.retryable


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("a" * 160, ("gsm7", 1)),
        ("a" * 161, ("gsm7", 2)),
        ("a" * 306, ("gsm7", 2)),
        ("a" * 307, ("gsm7", 3)),
        ("€" * 80, ("gsm7", 1)),  # extension characters take two septets
        ("€" * 81, ("gsm7", 2)),
        ("가" * 70, ("ucs2", 1)),
        ("가" * 71, ("ucs2", 2)),
        ("积" * 134, ("ucs2", 2)),
        ("积" * 135, ("ucs2", 3)),
        ("a" * 69 + "😀", ("ucs2", 2)),  # an emoji is two UTF-16 units
    ],
)
def test_sms_parts(body: str, expected: tuple[str, int]) -> None:
    assert sms_parts(body) == expected


# --- SMS providers ----------------------------------------------------------------------------


def twilio_settings(receiver: Receiver, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "sms_channel": "twilio",
        "sms_url": receiver.url,
        "sms_account": "AC0123456789abcdef",
        "sms_token": "tw-token",
        "sms_from": "+15005550006",
        "sms_timeout_seconds": 5.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def test_twilio_fails_with_500_then_sends(http_receiver: Receiver) -> None:  # noqa: F811
    http_receiver.answer(
        (500, '{"code": 20500, "message": "Internal Server Error"}'),
        (201, '{"sid": "SM5a1b2c3d4e5f", "status": "queued"}'),
    )
    settings = twilio_settings(http_receiver)

    down = send_sms("+821012345678", KO_BODY, settings=settings)
    up = send_sms("+821012345678", KO_BODY, settings=settings)

    assert not down.ok
    assert down.retryable
    assert down.status_code == 500
    assert up.ok, up.error
    assert up.status_code == 201
    assert up.response == "SM5a1b2c3d4e5f"
    requests = http_receiver.wait_for(2)
    for request in requests:
        assert request.method == "POST"
        assert request.path == "/2010-04-01/Accounts/AC0123456789abcdef/Messages.json"
        expected = base64.b64encode(b"AC0123456789abcdef:tw-token").decode()
        assert header(request.headers, "Authorization") == f"Basic {expected}"
        content_type = header(request.headers, "Content-Type") or ""
        assert content_type.startswith("application/x-www-form-urlencoded")
        form = parse_qs(request.text(), strict_parsing=True)
        assert form == {"To": ["+821012345678"], "From": ["+15005550006"], "Body": [KO_BODY]}


def test_twilio_messaging_service_and_final_errors(http_receiver: Receiver) -> None:  # noqa: F811
    http_receiver.answer((400, '{"code": 21211, "message": "Invalid To Phone Number"}'))
    settings = twilio_settings(http_receiver, sms_from="MG0123456789")

    result = send_sms("+8210", "hi", settings=settings)

    assert not result.ok
    assert not result.retryable
    assert result.status_code == 400
    assert result.response is not None and "21211" in result.response
    (request,) = http_receiver.wait_for(1)
    assert parse_qs(request.text())["MessagingServiceSid"] == ["MG0123456789"]
    assert "From" not in parse_qs(request.text())


def http_settings(receiver: Receiver, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "sms_channel": "http",
        "sms_url": f"{receiver.url}/sms/send",
        "sms_token": "bearer-token",
        "sms_from": "PATRON",
        "sms_timeout_seconds": 5.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def test_generic_http_adapter(http_receiver: Receiver) -> None:  # noqa: F811
    http_receiver.answer((200, '{"id": "m-1"}'), (429, "slow down"), (400, "bad number"))
    settings = http_settings(http_receiver)

    ok = send_sms("+8613812345678", ZH_BODY, settings=settings)
    busy = send_sms("+8613812345678", ZH_BODY, settings=settings)
    bad = send_sms("+8613812345678", ZH_BODY, settings=settings)

    assert ok.ok and ok.status_code == 200 and ok.response == '{"id": "m-1"}'
    assert not busy.ok and busy.retryable and busy.status_code == 429
    assert not bad.ok and not bad.retryable and bad.status_code == 400
    assert bad.error is not None and "bad number" in bad.error
    first = http_receiver.wait_for(3)[0]
    assert first.path == "/sms/send"
    assert header(first.headers, "Authorization") == "Bearer bearer-token"
    assert (header(first.headers, "Content-Type") or "").startswith("application/json")
    assert json.loads(first.text()) == {"to": "+8613812345678", "from": "PATRON", "body": ZH_BODY}


def test_generic_http_adapter_without_token_sends_no_authorization(
    http_receiver: Receiver,  # noqa: F811
) -> None:
    result = send_sms("+821012345678", "hi", settings=http_settings(http_receiver, sms_token=""))

    assert result.ok
    (request,) = http_receiver.wait_for(1)
    assert header(request.headers, "Authorization") is None


def test_refused_credentials_are_retryable(http_receiver: Receiver) -> None:  # noqa: F811
    http_receiver.answer((401, '{"code": 20003, "message": "Authenticate"}'))

    result = send_sms("+821012345678", "hi", settings=twilio_settings(http_receiver))

    assert not result.ok
    assert result.retryable
    assert result.status_code == 401


def test_a_slow_provider_times_out_quickly_and_retryably(
    http_receiver: Receiver,  # noqa: F811
) -> None:
    http_receiver.delay_seconds = 3.0
    settings = http_settings(http_receiver, sms_timeout_seconds=0.3)

    started = time.monotonic()
    result = send_sms("+821012345678", "hi", settings=settings)

    assert time.monotonic() - started < 2
    assert not result.ok
    assert result.retryable
    assert result.status_code is None
    assert result.error is not None and "did not answer" in result.error
    # It did reach the provider: a timeout may still be delivered (at-least-once).
    assert len(http_receiver.wait_for(1)) == 1


def test_an_unreachable_provider_is_retryable(closed_port: int) -> None:
    settings = Settings(sms_channel="http", sms_url=f"http://127.0.0.1:{closed_port}/sms")

    result = send_sms("+821012345678", "hi", settings=settings)

    assert not result.ok
    assert result.retryable
    assert result.status_code is None


def test_sms_settings_missing_are_retryable() -> None:
    result = send_sms("+821012345678", "hi", settings=Settings(sms_channel="http", sms_url=""))

    assert not result.ok
    assert result.retryable
    assert result.error is not None and "sms_url" in result.error


# --- the fixture itself, as other tests will use it -------------------------------------------


@pytest.mark.parametrize(
    "smtp_server", [{"security": "starttls", "username": USER, "password": PASSWORD}], indirect=True
)
def test_fixture_options_by_indirect_parametrization(smtp_server: SmtpServer) -> None:
    result = send_email("member@example.kr", "hi", "hello", settings=smtp_server.settings())

    assert result.ok, result.error
    (mail,) = smtp_server.wait_for(1)
    assert mail.tls and mail.login == USER


def test_fixture_env_drives_a_subprocess(make_smtp_server: Callable[..., SmtpServer]) -> None:
    """smtp_server.env() is what an end-to-end test hands a `patron` process."""
    server = make_smtp_server(security="tls", username=USER, password=PASSWORD)
    env = {**os.environ, **server.env()}
    script = (
        "from patron.config import Settings\n"
        "from patron.notify.channels import send_email\n"
        f"r = send_email('member@example.kr', {KO_SUBJECT!r}, 'x', settings=Settings())\n"
        "assert r.ok, r.error\n"
    )

    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=30)

    (mail,) = server.wait_for(1)
    assert mail.subject == KO_SUBJECT and mail.tls and mail.login == USER
