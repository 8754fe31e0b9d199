"""API keys: shown once, stored as a SHA-256 of a 256-bit secret, found by a public prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.auth.models import ApiKey
from patron.errors import Invalid, NotFound, Unauthorized

SCOPES = ("pos", "read", "admin")
KEY_PREFIX = "ptr"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    session: Session, *, name: str, scopes: list[str], actor: Actor, now: datetime
) -> tuple[ApiKey, str]:
    """Returns the row and the full key; the key is never stored or shown again."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise Invalid(
            f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}",
            code="invalid_scope",
        )
    if not name.strip():
        raise Invalid("an API key needs a name", code="invalid_name")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        name=name.strip(),
        prefix=prefix,
        secret_hash=_digest(secret),
        scopes=sorted(set(scopes)),
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="apikey.created",
        subject_type="api_key",
        subject_id=row.id,
        at=now,
        after={"name": row.name, "scopes": row.scopes, "prefix": prefix},
    )
    return row, f"{KEY_PREFIX}_{prefix}_{secret}"


def authenticate(session: Session, raw: str | None) -> Actor:
    if not raw:
        raise Unauthorized(
            "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key'",
            code="missing_api_key",
        )
    parts = raw.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        raise Unauthorized("the API key is malformed", code="invalid_api_key")
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == parts[1])).one_or_none()
    if row is None or not hmac.compare_digest(row.secret_hash, _digest(parts[2])):
        raise Unauthorized("the API key is not valid", code="invalid_api_key")
    if row.revoked_at is not None:
        raise Unauthorized("the API key was revoked", code="revoked_api_key")
    return Actor("api_key", str(row.id), frozenset(row.scopes))


def revoke_key(session: Session, key_id: int, *, actor: Actor, now: datetime) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no API key {key_id}", code="api_key_not_found")
    if row.revoked_at is None:
        row.revoked_at = now
        audit.record(
            session,
            actor=actor,
            action="apikey.revoked",
            subject_type="api_key",
            subject_id=row.id,
            at=now,
            before={"revoked": False},
            after={"revoked": True},
        )
    return row


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))
