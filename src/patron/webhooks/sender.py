"""One try of one webhook delivery: sign, POST, and say what happened.

The delivery runner (patron.delivery.runner) calls `post` for every try and keeps the log,
the backoff and the dead letters; this module never touches the database and never raises for a
failed delivery: every outcome is a SendResult.

- 2xx is delivered. 408, 429 and 5xx, time-outs and connection errors are worth another try;
  any other answer (4xx, and 3xx: redirects are not followed, since following one would let
  the target send Patron's POST anywhere, past the SSRF check) is not.
- Unless Settings.webhook_allow_private is on, the host is resolved and checked again just
  before the POST, and the connection goes to that checked address (Host header and TLS server
  name kept, so the certificate is still verified for the host name): DNS rebinding cannot slip
  past the check made when the endpoint was registered.
- The time-out (Settings.webhook_timeout_seconds) bounds connecting and each read; at most
  64 KiB of the answer is read and its first 1,000 characters are kept.
"""

from __future__ import annotations

import ssl
import time
from datetime import datetime
from functools import lru_cache
from typing import Any

import httpx

from patron import __version__
from patron.config import Settings
from patron.errors import Invalid
from patron.events.sending import SendResult
from patron.webhooks import signing, ssrf
from patron.webhooks.models import WebhookEndpoint

USER_AGENT = f"Patron-Webhooks/{__version__}"
KEEP_CHARS = 1000
READ_LIMIT = 64 * 1024


def retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    # Loading the CA bundle costs milliseconds; one context serves every send.
    return httpx.create_ssl_context()


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _short(text: str, limit: int = KEEP_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _request_target(
    endpoint: WebhookEndpoint, allow_private: bool
) -> tuple[str | httpx.URL, dict[str, str], dict[str, Any]]:
    """Where to connect: the URL itself, or (SSRF checks on) the URL with its host replaced by
    the address that just passed the check, plus the Host header and TLS server name."""
    target = ssrf.parse(endpoint.url)
    if allow_private:
        return target.url, {}, {}
    address = ssrf.pinned_address(target)
    url = httpx.URL(target.url).copy_with(host=str(address))
    host = f"[{target.host}]" if ":" in target.host else target.host
    headers = {"host": f"{host}:{target.port}" if target.explicit_port else host}
    extensions: dict[str, Any] = {}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host
    return url, headers, extensions


def post(
    endpoint: WebhookEndpoint, *, message_id: str, body: str, now: datetime, settings: Settings
) -> SendResult:
    """Sign `body` for `message_id` at `now` and POST it to the endpoint. Never raises for a
    delivery failure: a refused address, a time-out or a 500 is a SendResult."""
    started = time.monotonic()
    try:
        url, extra_headers, extensions = _request_target(endpoint, settings.webhook_allow_private)
    except Invalid as exc:  # the stored URL is malformed: trying again cannot help
        return SendResult(ok=False, error=exc.detail, retryable=False, duration_ms=_ms(started))
    except ssrf.Unresolvable as exc:  # DNS may answer next time
        return SendResult(ok=False, error=str(exc), retryable=True, duration_ms=_ms(started))
    except ssrf.RefusedAddress as exc:
        return SendResult(ok=False, error=str(exc), retryable=False, duration_ms=_ms(started))
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        **signing.headers(endpoint, message_id=message_id, body=body, now=now),
        **extra_headers,
    }
    timeout = settings.webhook_timeout_seconds
    try:
        with httpx.Client(
            verify=_tls(),
            trust_env=False,  # a proxy from the environment would bypass the address check
            follow_redirects=False,
            timeout=httpx.Timeout(timeout),
        ) as client:
            request = client.build_request(
                "POST", url, content=body.encode("utf-8"), headers=headers, extensions=extensions
            )
            response = client.send(request, stream=True)
            try:
                answer = _read_start(response, started + timeout)
            finally:
                response.close()
    except httpx.TimeoutException as exc:
        return SendResult(
            ok=False,
            error=f"timed out after {timeout:g} s ({type(exc).__name__})",
            retryable=True,
            duration_ms=_ms(started),
        )
    except httpx.HTTPError as exc:  # connection refused or reset, TLS failure, bad answer
        return SendResult(
            ok=False,
            error=_short(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__),
            retryable=True,
            duration_ms=_ms(started),
        )
    except OSError as exc:  # anything below httpx that it did not wrap
        return SendResult(
            ok=False,
            error=_short(f"{type(exc).__name__}: {exc}"),
            retryable=True,
            duration_ms=_ms(started),
        )
    duration = _ms(started)
    status = response.status_code
    if 200 <= status < 300:
        return SendResult(ok=True, status_code=status, response=answer, duration_ms=duration)
    if 300 <= status < 400:
        where = response.headers.get("location", "")
        error = f"answered {status} (redirect to {where or 'nowhere'}; redirects are not followed)"
        return SendResult(
            ok=False,
            status_code=status,
            response=answer,
            error=_short(error),
            retryable=False,
            duration_ms=duration,
        )
    return SendResult(
        ok=False,
        status_code=status,
        response=answer,
        error=f"answered {status}",
        retryable=retryable_status(status),
        duration_ms=duration,
    )


def _read_start(response: httpx.Response, deadline: float) -> str:
    """The start of the answer as text. The status decides the outcome, so a body that stops
    or drips past the deadline ends the reading, not the delivery."""
    data = bytearray()
    try:
        for chunk in response.iter_bytes():
            data.extend(chunk)
            if len(data) >= READ_LIMIT or time.monotonic() > deadline:
                break
    except httpx.HTTPError:
        pass
    return _short(bytes(data[:READ_LIMIT]).decode("utf-8", errors="replace"))
