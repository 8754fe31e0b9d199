"""Typed errors: every refusal carries the server's machine code (`.code`) and message (`.detail`).

The server always answers an error as `{"error": code, "detail": message}`; the exception class
follows the HTTP status family, so a till can catch `Conflict` (e.g. `insufficient_points`) apart
from `NotFound` or a `ServerError` worth retrying later.
"""

from __future__ import annotations

from typing import Any

import httpx


class PatronError(Exception):
    """Base of every error the client raises."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        response: httpx.Response | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}" if status else f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.response = response
        self.body = body


class ClientError(PatronError):
    """4xx: the request is wrong for the current state; retrying it unchanged will not help."""


class BadRequest(ClientError):
    """400, e.g. `invalid_json`."""


class Unauthorized(ClientError):
    """401: missing, unknown or revoked API key."""


class Forbidden(ClientError):
    """403: the key's scope or program does not allow this call."""


class NotFound(ClientError):
    """404: no such program, member, purchase, ..."""


class Conflict(ClientError):
    """409: conflicts with current state (`insufficient_points`, `idempotency_conflict`, ...)."""


class ValidationFailed(ClientError):
    """422: the payload is malformed (`invalid`)."""


class RateLimited(ClientError):
    """429: too many requests of this kind; `.retry_after` in seconds when the server says."""

    @property
    def retry_after(self) -> float | None:
        value = self.response.headers.get("Retry-After") if self.response is not None else None
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class ServerError(PatronError):
    """5xx after the client's retries were spent."""


class TransportError(PatronError):
    """No answer (timeout, refused or dropped connection) after the client's retries were spent.

    For a write sent with an Idempotency-Key, retrying later with the same key is safe.
    """


_BY_STATUS: dict[int, type[PatronError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: ValidationFailed,
    429: RateLimited,
}


def error_for(response: httpx.Response) -> PatronError:
    """The typed error for an answer with status >= 400."""
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code, detail = body["error"], str(body.get("detail", ""))
    else:
        code, detail = f"http_{response.status_code}", response.text[:500]
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ClientError)
    return cls(status, code, detail, response=response, body=body)


__all__ = [
    "BadRequest",
    "ClientError",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PatronError",
    "RateLimited",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "ValidationFailed",
    "error_for",
]
