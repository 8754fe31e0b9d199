"""The offline token's wire format, `PC1.<payload>.<signature>` (docs/rewards.md): telling a
token from a code and reading its parts, with no keys and no database. Signing and verifying
are patron.rewards.offline's."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from patron.errors import Invalid

PREFIX = "PC1."
TOKEN_MAX = 1000  # characters; a token is about 300 (longer with a long reward code or sku)


def b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


def unb32(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))


def is_token(raw: str) -> bool:
    return raw.strip().upper().startswith(PREFIX)


def parts(token: str) -> tuple[str, str, dict[str, Any]]:
    """(signed part, signature, payload) of a token, not yet verified."""
    text = token.strip().upper()
    if len(text) > TOKEN_MAX or not text.startswith(PREFIX):
        raise ValueError("not an offline coupon token")
    signed, dot, signature = text.rpartition(".")
    if not dot or signed.count(".") != 1:
        raise ValueError("a token has three parts separated by dots")
    try:
        document = json.loads(unb32(signed.removeprefix(PREFIX)))
    except (binascii.Error, ValueError):
        raise ValueError("the token's payload cannot be read") from None
    if not isinstance(document, dict) or not all(
        isinstance(document.get(k), str) for k in ("k", "p", "c", "r", "t", "cu")
    ):
        raise ValueError("the token's payload lacks its required fields")
    return signed, signature, document


def coupon_code(token: str) -> str:
    """The coupon code inside a token, unverified: online, the database decides, and the code
    is what the member holds anyway."""
    try:
        return str(parts(token)[2]["c"])
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_token") from None
