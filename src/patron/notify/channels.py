"""The message channels: e-mail over SMTP, SMS through a provider, and a log for development.

Each function sends one message and answers a SendResult; none raises for a delivery failure
(a refused address, a server that is down, a timeout), so the delivery runner can record the
try and decide on a retry. The rule for `retryable`: a problem with this message or this
recipient (an address the server refused for good, a 4xx from the SMS provider about the
request) is final; a problem with the server, the network or our own settings (a 4xx deferral,
a refused connection, a timeout, a TLS failure, a refused login) is retried, so that once the
server is back or the settings are fixed the queue drains by itself.

TLS certificates are checked against the system's trust store (`ssl.create_default_context()`);
OpenSSL reads the SSL_CERT_FILE / SSL_CERT_DIR environment variables, which is how a relay
with a private CA (and the tests' throwaway CA) is trusted.
"""

from __future__ import annotations

import base64
import json
import math
import os
import smtplib
import ssl
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any

import httpx

from patron import clock
from patron.config import Settings
from patron.events.sending import SendResult

RESPONSE_LIMIT = 1000
# Headers the channel writes itself from the content; a caller setting them would break the
# MIME structure.
_OWN_HEADERS = frozenset({"content-type", "content-transfer-encoding", "mime-version"})
# 7bit transfer encoding for every part: a UTF-8 body goes as base64 or quoted-printable, so it
# arrives intact through relays that do not offer 8BITMIME.
_POLICY = SMTP_POLICY.clone(cte_type="7bit")
TWILIO_API = "https://api.twilio.com"


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    return text[:RESPONSE_LIMIT]


# --- dispatch ---------------------------------------------------------------------------------


def send(
    channel: str,
    to: str,
    subject: str | None,
    body: str,
    *,
    settings: Settings,
    headers: dict[str, str] | None = None,
    html: str | None = None,
) -> SendResult:
    """Send one message on a delivery's channel: "email", "sms" or "log" (development)."""
    if channel == "email":
        return send_email(to, subject or "", body, settings=settings, html=html, headers=headers)
    if channel == "sms":
        return send_sms(to, body, settings=settings)
    if channel == "log":
        started = time.monotonic()
        line: dict[str, Any] = {"channel": "log", "to": to, "subject": subject, "body": body}
        if headers:
            line["headers"] = headers
        return _log_result(settings, line, started)
    # A webhook (or a channel this module does not know) reaching here is a bug in the caller;
    # answered, not raised, so one bad row cannot stop the runner.
    return SendResult(
        ok=False, error=f"{channel!r} is not a message channel", retryable=False, duration_ms=0
    )


# --- the log channel --------------------------------------------------------------------------

_log_lock = threading.Lock()


def write_message_log(settings: Settings, line: dict[str, Any]) -> None:
    """Append one JSON line to settings.message_log (raises OSError if it cannot)."""
    record = {"at": clock.now().isoformat(), **line}
    data = json.dumps(record, ensure_ascii=False) + "\n"
    path = Path(settings.message_log)
    # One write of one line under a lock and O_APPEND: lines from threads and processes do not
    # interleave.
    with _log_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(data)


def _log_result(settings: Settings, line: dict[str, Any], started: float) -> SendResult:
    try:
        write_message_log(settings, line)
    except OSError as exc:
        return SendResult(
            ok=False,
            error=f"cannot write {settings.message_log}: {exc}",
            retryable=True,
            duration_ms=_elapsed_ms(started),
        )
    return SendResult(ok=True, response="logged", duration_ms=_elapsed_ms(started))


# --- e-mail -----------------------------------------------------------------------------------


def send_email(
    to: str,
    subject: str,
    body: str,
    *,
    settings: Settings,
    html: str | None = None,
    headers: dict[str, str] | None = None,
) -> SendResult:
    """Send one e-mail through settings.email_channel ("smtp" or "log")."""
    started = time.monotonic()
    if settings.email_channel == "log":
        line: dict[str, Any] = {
            "channel": "email",
            "from": settings.smtp_from,
            "to": to,
            "subject": subject,
            "body": body,
            "headers": headers or {},
        }
        if html is not None:
            line["html"] = html
        return _log_result(settings, line, started)
    if settings.email_channel != "smtp":
        return _settings_error(f"email_channel {settings.email_channel!r} is not smtp or log")

    sender = parseaddr(settings.smtp_from)[1]
    if "@" not in sender:
        return _settings_error(f"smtp_from {settings.smtp_from!r} has no address")
    recipient = parseaddr(to)[1]
    if "@" not in recipient:
        return SendResult(
            ok=False, error=f"not an e-mail address: {to!r}", retryable=False, duration_ms=0
        )
    try:
        message = build_email(
            to, subject, body, sender=settings.smtp_from, html=html, headers=headers
        )
    except (ValueError, TypeError, IndexError) as exc:
        # A header with a line break, an address the email package cannot parse: this message
        # can never be sent as it is.
        return SendResult(
            ok=False,
            error=f"cannot build the message: {exc}",
            retryable=False,
            duration_ms=_elapsed_ms(started),
        )
    return _smtp_send(message, sender, recipient, settings, started)


def build_email(
    to: str,
    subject: str,
    body: str,
    *,
    sender: str,
    html: str | None = None,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """The MIME message: UTF-8 text (and an HTML alternative), Date and Message-ID set."""
    message = EmailMessage(policy=_POLICY)
    message["From"] = sender
    message["To"] = to
    # A template's stray newline must not make the subject an invalid header.
    message["Subject"] = " ".join(subject.splitlines()).strip()
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for name, value in (headers or {}).items():
        if name.lower() in _OWN_HEADERS:
            raise ValueError(f"header {name} is set by the e-mail channel")
        # Replaced, not added: a caller may set its own Message-ID (stable across retries).
        del message[name]
        message[name] = value
    if "Date" not in message:
        message["Date"] = format_datetime(clock.now())
    if "Message-ID" not in message:
        domain = sender.rpartition("@")[2].strip("> ") or "patron.localhost"
        # make_msgid's default domain is socket.getfqdn(), a DNS lookup per message.
        message["Message-ID"] = make_msgid(domain=domain)
    return message


def _settings_error(error: str) -> SendResult:
    # Our own configuration is wrong: retried, so fixing the settings lets the queue drain.
    return SendResult(ok=False, error=error, retryable=True, duration_ms=0)


def _tls_context() -> ssl.SSLContext:
    # The system trust store; SSL_CERT_FILE / SSL_CERT_DIR point OpenSSL elsewhere.
    return ssl.create_default_context()


def _connect(settings: Settings) -> smtplib.SMTP:
    security = settings.smtp_security
    timeout = settings.smtp_timeout_seconds
    # local_hostname avoids socket.getfqdn() (a DNS lookup) for the EHLO name.
    local = "localhost"
    if security == "tls":
        return smtplib.SMTP_SSL(
            settings.smtp_host,
            settings.smtp_port,
            local_hostname=local,
            timeout=timeout,
            context=_tls_context(),
        )
    smtp = smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, local_hostname=local, timeout=timeout
    )
    try:
        if security == "starttls":
            smtp.ehlo()
            # Never falls back to plain text: a server without STARTTLS is an error.
            smtp.starttls(context=_tls_context())
            smtp.ehlo()
    except BaseException:
        smtp.close()
        raise
    return smtp


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()


def _needs_smtputf8(*addresses: str) -> bool:
    return not all(a.isascii() for a in addresses)


class _Refused(Exception):
    """A reply that ends this try: the code, the server's words, and whether to retry."""

    def __init__(self, code: int | None, text: str, retryable: bool) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.retryable = retryable


def _smtp_send(
    message: EmailMessage, sender: str, recipient: str, settings: Settings, started: float
) -> SendResult:
    if settings.smtp_security not in ("none", "starttls", "tls"):
        return _settings_error(
            f"smtp_security {settings.smtp_security!r} is not none, starttls or tls"
        )
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        smtp = _connect(settings)
    except (ssl.SSLError, ssl.CertificateError) as exc:
        return _failed(f"TLS with {where} failed: {exc}", started)
    except smtplib.SMTPNotSupportedError as exc:
        return _failed(f"{where} does not offer STARTTLS: {exc}", started)
    except smtplib.SMTPResponseException as exc:
        return _failed(
            f"{where} refused the connection: {_reply(exc.smtp_code, exc.smtp_error)}",
            started,
            exc.smtp_code,
        )
    except TimeoutError:
        return _failed(f"connecting to {where} timed out", started)
    except (OSError, smtplib.SMTPException) as exc:
        return _failed(f"cannot connect to {where}: {exc}", started)

    done = False
    try:
        if settings.smtp_username:
            try:
                _login(smtp, settings.smtp_username, settings.smtp_password)
            except smtplib.SMTPAuthenticationError as exc:
                # Our credentials, not the message: retried (see the module docstring).
                reply = _reply(exc.smtp_code, exc.smtp_error)
                return _failed(f"{where} refused the login: {reply}", started, exc.smtp_code)
            except smtplib.SMTPNotSupportedError:
                return _failed(f"{where} does not offer AUTH on this connection", started)
        queued = _transaction(smtp, message, sender, recipient)
        done = True
        return SendResult(
            ok=True, status_code=250, response=_clip(queued), duration_ms=_elapsed_ms(started)
        )
    except _Refused as exc:
        return SendResult(
            ok=False,
            status_code=exc.code,
            response=_clip(exc.text),
            error=_clip(exc.text),
            retryable=exc.retryable,
            duration_ms=_elapsed_ms(started),
        )
    except smtplib.SMTPResponseException as exc:
        return _failed(f"{where}: {_reply(exc.smtp_code, exc.smtp_error)}", started, exc.smtp_code)
    except TimeoutError:
        return _failed(f"{where} timed out", started)
    except (OSError, smtplib.SMTPException) as exc:
        return _failed(f"{where}: {exc}", started)
    finally:
        _close(smtp, polite=done)


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    if username.isascii() and password.isascii():
        smtp.login(username, password)
        return
    # smtplib encodes credentials as ASCII; RFC 4616 PLAIN carries UTF-8, so a Korean or
    # Chinese password goes that way.
    smtp.ehlo_or_helo_if_needed()
    if not smtp.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("AUTH")
    if "PLAIN" not in smtp.esmtp_features["auth"].upper().split():
        raise smtplib.SMTPException("a non-ASCII login needs AUTH PLAIN, which is not offered")
    token = base64.b64encode(b"\0" + username.encode() + b"\0" + password.encode())
    code, text = smtp.docmd("AUTH", "PLAIN " + token.decode("ascii"))
    if code not in (235, 503):  # 503: already authenticated
        raise smtplib.SMTPAuthenticationError(code, text)


def _transaction(smtp: smtplib.SMTP, message: EmailMessage, sender: str, recipient: str) -> str:
    """MAIL, RCPT, DATA for one recipient; answers the server's "queued" reply."""
    smtp.ehlo_or_helo_if_needed()
    options: list[str] = []
    policy = _POLICY
    if _needs_smtputf8(sender, recipient):
        if not smtp.has_extn("smtputf8"):
            raise _Refused(
                None, f"the server cannot take the address {recipient} (no SMTPUTF8)", False
            )
        options = ["SMTPUTF8", "BODY=8BITMIME"]
        policy = _POLICY.clone(utf8=True)
    data = message.as_bytes(policy=policy)

    code, text = smtp.mail(sender, options)
    if code != 250:
        smtp.rset()
        # Our From address (or a server problem): retried, the fix is in the settings.
        raise _Refused(code, f"sender refused: {_reply(code, text)}", True)
    code, text = smtp.rcpt(recipient)
    if code not in (250, 251):
        smtp.rset()
        # 5xx: this address is refused for good; 4xx: the server asks us to come back.
        raise _Refused(code, f"recipient refused: {_reply(code, text)}", not 500 <= code < 600)
    try:
        code, text = smtp.data(data)
        answer = _reply(code, text)
    except smtplib.SMTPDataError as exc:
        code, answer = exc.smtp_code, _reply(exc.smtp_code, exc.smtp_error)
    if code != 250:
        smtp.rset()
        raise _Refused(code, f"message refused: {answer}", not 500 <= code < 600)
    return answer


def _close(smtp: smtplib.SMTP, *, polite: bool) -> None:
    # QUIT only after a clean exchange; after an error the connection may be in any state, and
    # a QUIT could wait out another full timeout.
    try:
        if polite:
            smtp.quit()
    except (OSError, smtplib.SMTPException):
        pass
    finally:
        smtp.close()


def _failed(error: str, started: float, code: int | None = None) -> SendResult:
    return SendResult(
        ok=False,
        status_code=code,
        error=_clip(error),
        retryable=True,
        duration_ms=_elapsed_ms(started),
    )


# --- SMS --------------------------------------------------------------------------------------

# GSM 03.38: the default alphabet takes one 7-bit septet a character, its extension table two.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("^{}\\[~]|€\f")


def sms_parts(body: str) -> tuple[str, int]:
    """("gsm7" or "ucs2", how many messages) the way carriers count: 160/153 septets a part in
    GSM-7, 70/67 UTF-16 units in UCS-2 (any Korean or Chinese character makes it UCS-2)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENSION for ch in body):
        units = sum(2 if ch in _GSM_EXTENSION else 1 for ch in body)
        single, part, encoding = 160, 153, "gsm7"
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, part, encoding = 70, 67, "ucs2"
    return encoding, 1 if units <= single else math.ceil(units / part)


def send_sms(to: str, body: str, *, settings: Settings) -> SendResult:
    """Send one SMS through settings.sms_channel ("twilio", "http" or "log").

    `to` is E.164 (+821012345678). A long text goes whole: the provider splits it.
    """
    started = time.monotonic()
    channel = settings.sms_channel
    if channel == "log":
        encoding, parts = sms_parts(body)
        line = {
            "channel": "sms",
            "from": settings.sms_from,
            "to": to,
            "body": body,
            "length": len(body),
            "encoding": encoding,
            "parts": parts,
        }
        return _log_result(settings, line, started)
    if not to:
        return SendResult(ok=False, error="no phone number", retryable=False, duration_ms=0)
    if channel == "twilio":
        if not settings.sms_account or not settings.sms_token:
            return _settings_error("twilio needs sms_account and sms_token")
        base = (settings.sms_url or TWILIO_API).rstrip("/")
        url = f"{base}/2010-04-01/Accounts/{settings.sms_account}/Messages.json"
        form = {"To": to, "Body": body}
        # A Messaging Service SID (MG…) sends from the service's number pool.
        if settings.sms_from.startswith("MG"):
            form["MessagingServiceSid"] = settings.sms_from
        else:
            form["From"] = settings.sms_from
        return _post(
            url,
            settings,
            started,
            data=form,
            auth=httpx.BasicAuth(settings.sms_account, settings.sms_token),
            reference="sid",
        )
    if channel == "http":
        if not settings.sms_url:
            return _settings_error("sms_channel http needs sms_url")
        headers = {"Authorization": f"Bearer {settings.sms_token}"} if settings.sms_token else {}
        payload = {"to": to, "from": settings.sms_from, "body": body}
        return _post(settings.sms_url, settings, started, json_body=payload, headers=headers)
    return _settings_error(f"sms_channel {channel!r} is not twilio, http or log")


_http_client: httpx.Client | None = None
_http_pid = 0
_http_lock = threading.Lock()


def _http() -> httpx.Client:
    # One pooled client per process (a new one per message would rebuild the TLS context each
    # time); a forked worker makes its own.
    global _http_client, _http_pid
    with _http_lock:
        if _http_client is None or _http_pid != os.getpid():
            _http_client = httpx.Client(
                follow_redirects=False, headers={"User-Agent": "Patron notifications"}
            )
            _http_pid = os.getpid()
        return _http_client


def _post(
    url: str,
    settings: Settings,
    started: float,
    *,
    data: dict[str, str] | None = None,
    json_body: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    auth: httpx.Auth | None = None,
    reference: str | None = None,
) -> SendResult:
    timeout = settings.sms_timeout_seconds
    try:
        answer = _http().post(
            url,
            data=data,
            json=json_body,
            headers=headers,
            auth=auth or httpx.USE_CLIENT_DEFAULT,
            timeout=timeout,
        )
    except httpx.TimeoutException:
        return _failed(f"the SMS provider did not answer within {timeout:g} s", started)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        return _failed(f"cannot reach the SMS provider at {url}: {exc}", started)
    status = answer.status_code
    text = answer.text
    if 200 <= status < 300:
        return SendResult(
            ok=True,
            status_code=status,
            response=_clip(_reference(text, reference) or text),
            duration_ms=_elapsed_ms(started),
        )
    return SendResult(
        ok=False,
        status_code=status,
        response=_clip(text),
        error=_clip(f"the SMS provider answered {status}: {text}"),
        retryable=_http_retryable(status),
        duration_ms=_elapsed_ms(started),
    )


def _http_retryable(status: int) -> bool:
    # 408/429/5xx: the provider is busy or down. 401: our credentials were refused, a settings
    # problem like a refused SMTP login. Any other answer is about this request and final.
    return status >= 500 or status in (401, 408, 429)


def _reference(text: str, key: str | None) -> str | None:
    """The provider's id for the message (Twilio's "sid"), kept as the delivery's response."""
    if key is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    found = value.get(key) if isinstance(value, dict) else None
    return str(found) if found else None


__all__ = [
    "build_email",
    "send",
    "send_email",
    "send_sms",
    "sms_parts",
    "write_message_log",
]
