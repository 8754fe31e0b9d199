"""API keys: shown once, stored as a SHA-256 of a 256-bit secret, found by a public prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.auth.models import ApiKey
from patron.errors import Invalid, NotFound, Unauthorized
from patron.programs.models import Program, Store

# privacy: data-subject exports, erasure and legal holds (patron.privacy); admin holds it too.
SCOPES = ("pos", "read", "admin", "privacy")
KEY_PREFIX = "ptr"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    session: Session,
    *,
    name: str,
    scopes: list[str],
    actor: Actor,
    now: datetime,
    programs: list[str] | None = None,
    stores: list[str] | None = None,
) -> tuple[ApiKey, str]:
    """Returns the row and the full key; the key is never stored or shown again.

    `programs` limits the key to those programs (codes) and `stores` to those stores (codes,
    of those programs); None leaves the key unrestricted."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise Invalid(
            f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}",
            code="invalid_scope",
        )
    if not name.strip():
        raise Invalid("an API key needs a name", code="invalid_name")
    programs, stores = _reach(session, programs, stores)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        name=name.strip(),
        prefix=prefix,
        secret_hash=_digest(secret),
        scopes=sorted(set(scopes)),
        programs=programs,
        stores=stores,
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
        after={
            "name": row.name,
            "scopes": row.scopes,
            "prefix": prefix,
            "programs": programs,
            "stores": stores,
        },
    )
    return row, f"{KEY_PREFIX}_{prefix}_{secret}"


def _reach(
    session: Session, programs: list[str] | None, stores: list[str] | None
) -> tuple[list[str] | None, list[str] | None]:
    """The programs and stores a new key is limited to, each one checked to exist: a key
    limited to a misspelt program would reach nothing, silently."""
    if programs is None:
        if stores is not None:
            raise Invalid(
                "a key limited to stores must name its programs too", code="invalid_key_reach"
            )
        return None, None
    wanted = sorted(set(programs))
    if not wanted:
        raise Invalid(
            "programs is empty: the key could reach nothing (omit it for every program)",
            code="invalid_key_reach",
        )
    found = dict(
        session.execute(select(Program.code, Program.id).where(Program.code.in_(wanted))).all()
    )
    missing = [code for code in wanted if code not in found]
    if missing:
        raise NotFound(f"no program {', '.join(missing)}", code="program_not_found")
    if stores is None:
        return wanted, None
    shops = sorted(set(stores))
    if not shops:
        raise Invalid(
            "stores is empty: the key could record no sale (omit it for every store)",
            code="invalid_key_reach",
        )
    known = set(
        session.scalars(
            select(Store.code).where(Store.program_id.in_(found.values()), Store.code.in_(shops))
        )
    )
    missing = [code for code in shops if code not in known]
    if missing:
        raise NotFound(
            f"no store {', '.join(missing)} in {', '.join(wanted)}", code="store_not_found"
        )
    return wanted, shops


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
    return Actor(
        "api_key",
        str(row.id),
        frozenset(row.scopes),
        programs=None if row.programs is None else frozenset(row.programs),
        stores=None if row.stores is None else frozenset(row.stores),
    )


def revocations(session: Session) -> int:
    """How many keys were ever revoked: a worker that sees this number change forgets the keys
    it remembered, so a revocation reaches every worker at its next check."""
    return int(
        session.scalar(
            select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_not(None))
        )
        or 0
    )


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
