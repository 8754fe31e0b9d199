"""Verify a Patron coupon token at a till that is offline.

Needs only the `cryptography` package and the standard library. Keep the program's public keys
from `GET /api/v1/programs/{code}/coupons/keys` (refresh them while online), then:

    payload = verify_coupon(scanned_text, keys)   # raises ValueError when it must be refused
    payload["c"]    # the coupon code; payload["t"] the reward kind; see docs/rewards.md

Verifying proves Patron issued the coupon with these terms and that it has not expired. It
cannot know whether the coupon was used elsewhere meanwhile: record the use and sync it with
`POST /api/v1/programs/{code}/coupons/uses/batch` once back online.
"""

from __future__ import annotations

import base64
import json
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def _unbase32(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))


def _unbase64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_coupon(token: str, keys: list[dict], now: float | None = None) -> dict:
    """The token's payload, if one of `keys` ({"kid": ..., "public_key": ...} as the API
    lists them) signed it and it has not expired at `now` (Unix seconds; default: the clock)."""
    token = token.strip().upper()
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "PC1":
        raise ValueError("not a Patron coupon token")
    signed = f"{parts[0]}.{parts[1]}".encode("ascii")
    try:
        payload = json.loads(_unbase32(parts[1]))
        signature = _unbase32(parts[2])
    except ValueError:  # binascii.Error and JSONDecodeError are ValueErrors
        raise ValueError("the token cannot be read") from None
    if not isinstance(payload, dict):
        raise ValueError("the token cannot be read")
    key = next((k for k in keys if k["kid"] == payload.get("k")), None)
    if key is None:
        raise ValueError("no public key for this token: refresh the keys")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(_unbase64url(key["public_key"]))
        public_key.verify(signature, signed)
    except (InvalidSignature, ValueError):
        raise ValueError("the signature does not match: refuse the coupon") from None
    expires = payload.get("x")
    if expires is not None and (time.time() if now is None else now) >= expires:
        raise ValueError("the coupon has expired")
    return payload
