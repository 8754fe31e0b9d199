"""Idempotent writes: the first answer to a key is stored in the same transaction.

The key row is inserted *before* the work. On PostgreSQL a concurrent insert of
the same (actor, key) waits on the unique index until the first transaction
ends, then sees its row; on SQLite writers are serialised. Either way exactly
one request does the work and every replay gets its answer.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.audit.models import IdempotencyKey
from patron.errors import IdempotencyConflict, Invalid

MAX_KEY_LENGTH = 200


def request_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Replay(Exception):
    """Raised when the key was answered before; carries that answer."""

    def __init__(self, status_code: int, response: Any) -> None:
        super().__init__("replay")
        self.status_code = status_code
        self.response = response


def claim(session: Session, *, actor: str, key: str, payload: Any, now: datetime) -> IdempotencyKey:
    """Take the key for this request, or raise Replay / IdempotencyConflict."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Invalid(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    digest = request_hash(payload)
    row = IdempotencyKey(actor=actor, key=key, request_hash=digest, created_at=now)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
        return row
    except IntegrityError:
        pass
    existing = session.scalars(
        select(IdempotencyKey).where(IdempotencyKey.actor == actor, IdempotencyKey.key == key)
    ).one()
    if existing.request_hash != digest:
        raise IdempotencyConflict(
            f"Idempotency-Key {key!r} was used for a different request; use a new key"
        )
    if existing.status_code is None:  # pragma: no cover - only visible mid-transaction
        raise IdempotencyConflict(f"a request with Idempotency-Key {key!r} is still running")
    raise Replay(existing.status_code, existing.response)


def answer(session: Session, row: IdempotencyKey, status_code: int, response: Any) -> None:
    row.status_code = status_code
    row.response = response
    session.flush()


def purge(session: Session, *, before: datetime) -> int:
    """Forget answers older than `before`; a retry after that is treated as a new request."""
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < before))
    return int(getattr(result, "rowcount", 0) or 0)
