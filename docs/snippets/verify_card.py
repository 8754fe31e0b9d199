"""Check a member card's signed QR code at a till, offline: the program's public keys (from
GET /api/v1/programs/{program}/coupons/keys, kept while online) are all it needs.
Needs only the `cryptography` package. See docs/portal.md, "How a till checks the signed code"."""

from __future__ import annotations

import base64
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GRACE = 60  # seconds a token may seem to come from the future (a till clock behind)


def b32decode(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))


def verify_card(
    token: str, keys: list[dict[str, str]], program: str, now: float | None = None
) -> str:
    """The card number the token was made for; raises ValueError (or InvalidSignature) to
    refuse it. `keys` as the keys endpoint answers: [{"kid": …, "public_key": …}, …]."""
    text = token.strip().upper()
    signed, _, signature = text.rpartition(".")
    if not text.startswith("PM1.") or signed.count(".") != 1:
        raise ValueError("not a card token")
    fields = b32decode(signed[4:]).decode().split(":", 4)
    if len(fields) != 5:
        raise ValueError("not a card token")
    kid, prog, issued, lifetime, number = fields
    if prog != program:
        raise ValueError("another program's card")
    public = next((k["public_key"] for k in keys if k["kid"] == kid), None)
    if public is None:
        raise ValueError("signed by a key this till does not have: refresh the keys")
    raw = base64.urlsafe_b64decode(public + "=" * (-len(public) % 4))
    Ed25519PublicKey.from_public_bytes(raw).verify(b32decode(signature), signed.encode())
    now = time.time() if now is None else now
    if not int(issued) - GRACE <= now < int(issued) + int(lifetime):
        raise ValueError("expired: ask the member to open her card again")
    return number
