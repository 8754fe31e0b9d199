"""Secrets an installation makes for itself once, shared by all its workers through the
database (so nothing needs configuring to start)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.events.models import InstanceKey


def instance_key(session: Session, name: str, *, now: datetime) -> bytes:
    """The key called `name`, made on first use. Two workers racing to make it agree: the
    loser's insert fails on the primary key and it reads the winner's."""
    row = session.get(InstanceKey, name)
    if row is None:
        value = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        try:
            with session.begin_nested():
                session.add(InstanceKey(name=name, value=value, created_at=now))
        except IntegrityError:
            pass
        row = session.get(InstanceKey, name, populate_existing=True)
        assert row is not None
    return base64.urlsafe_b64decode(row.value)


def sign(key: bytes, message: str, *, length: int = 22) -> str:
    """A URL-safe HMAC-SHA256 tag of `message` (22 chars = 132 bits)."""
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:length]


def verify(key: bytes, message: str, tag: str) -> bool:
    return hmac.compare_digest(sign(key, message, length=len(tag) or 22), tag) and len(tag) >= 16
