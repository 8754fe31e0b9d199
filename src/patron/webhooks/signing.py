"""Standard Webhooks signatures (https://www.standardwebhooks.com).

Every POST carries three headers:

    webhook-id:        evt_123                      (the event's public id; the de-duplication key)
    webhook-timestamp: 1767225600                   (unix seconds when this try was signed)
    webhook-signature: v1,<base64 HMAC-SHA256>      (one per active secret, space-separated)

The HMAC key is the secret's bytes (base64 after "whsec_"), the message
"<webhook-id>.<webhook-timestamp>.<body>". During a rotation both the new and the previous secret
sign, so a receiver that still has the old secret keeps verifying until it is updated.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

from patron.clock import as_utc
from patron.webhooks.models import WebhookEndpoint

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_hint(secret: str) -> str:
    """What lists and audit records show of a secret: enough to tell two apart, not to sign."""
    return secret[: len(SECRET_PREFIX) + 4] + "…"


def active_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign a message sent at `now`: the current one, then the previous one
    while its grace period after a rotation lasts."""
    out = [endpoint.secret]
    until = endpoint.previous_secret_until
    if endpoint.previous_secret and until is not None and as_utc(until) > now:
        out.append(endpoint.previous_secret)
    return out


def signature(secrets_: list[str], *, message_id: str, timestamp: datetime, body: str) -> str:
    """The webhook-signature header value: "v1,<sig>" per secret, space-separated."""
    at = timestamp.astimezone(UTC)
    return " ".join(Webhook(s).sign(message_id, at, body) for s in secrets_)


def headers(
    endpoint: WebhookEndpoint, *, message_id: str, body: str, now: datetime
) -> dict[str, str]:
    """The three Standard Webhooks headers for one try at `now`."""
    at = now.astimezone(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature(
            active_secrets(endpoint, at), message_id=message_id, timestamp=at, body=body
        ),
    }
