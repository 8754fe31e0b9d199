"""What every HTTP edge shares: the database, the caller, transactions and idempotency."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from patron import clock
from patron.audit import idempotency
from patron.audit.service import Actor
from patron.auth import service as auth
from patron.db.engine import Database
from patron.errors import Forbidden

T = TypeVar("T")

# Authenticated keys are remembered briefly so a till's earn costs no extra query.
_KEY_CACHE_SECONDS = 30.0
_key_cache: dict[str, tuple[float, Actor]] = {}
_key_lock = threading.Lock()


def forget_keys() -> None:
    with _key_lock:
        _key_cache.clear()


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def database(request: Request) -> Database:
    """`get_db` as an async dependency: FastAPI runs a plain `def` dependency in the thread
    pool, a hand-off per request that the hot endpoints skip."""
    db: Database = request.app.state.db
    return db


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key")


async def caller(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    x_api_key: str | None = Depends(_header),
) -> Actor:
    # async: a cached key costs no thread hand-off; a new key is checked in the thread pool.
    raw = x_api_key or (bearer.credentials if bearer is not None else None)
    if raw:
        with _key_lock:
            hit = _key_cache.get(raw)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
    return await run_in_threadpool(_authenticate, get_db(request), raw)


def _authenticate(db: Database, raw: str | None) -> Actor:
    with db.unit_of_work(readonly=True) as session:
        actor = auth.authenticate(session, raw)
    assert raw is not None
    with _key_lock:
        _key_cache[raw] = (time.monotonic() + _KEY_CACHE_SECONDS, actor)
    return actor


def require(*scopes: str) -> Callable[..., Any]:
    """A dependency: the caller must hold one of `scopes` (admin holds all)."""

    async def check(actor: Actor = Depends(caller)) -> Actor:
        if not any(actor.has_scope(s) for s in scopes):
            raise Forbidden(
                f"this call needs the {' or '.join(scopes)} scope", code="missing_scope"
            )
        return actor

    return check


def now() -> datetime:
    return clock.now()


def read(db: Database, fn: Callable[[Session], T]) -> T:
    with db.unit_of_work(readonly=True) as session:
        return fn(session)


def write(
    db: Database,
    fn: Callable[[Session], Any],
    *,
    actor: Actor,
    idempotency_key: str | None,
    payload: Any,
    status_code: int = 200,
    encoded: bool = False,
) -> JSONResponse:
    """Run `fn` in one transaction; with an Idempotency-Key, store or replay its answer.

    `payload` may be a function that builds it (only called with an Idempotency-Key);
    `encoded=True` says `fn` returns JSON-ready data already (no `jsonable_encoder` walk).
    """
    with db.unit_of_work() as session:
        return write_in(
            session,
            fn,
            actor=actor,
            idempotency_key=idempotency_key,
            payload=payload,
            status_code=status_code,
            encoded=encoded,
        )


def write_in(
    session: Session,
    fn: Callable[[Session], Any],
    *,
    actor: Actor,
    idempotency_key: str | None,
    payload: Any,
    status_code: int = 200,
    encoded: bool = False,
) -> JSONResponse:
    """`write` inside a transaction the caller owns (and commits)."""
    claim = None
    if idempotency_key is not None:
        if callable(payload):
            payload = payload()
        try:
            claim = idempotency.claim(
                session, actor=str(actor), key=idempotency_key, payload=payload, now=now()
            )
        except idempotency.Replay as replay:
            return JSONResponse(
                replay.response,
                status_code=replay.status_code,
                headers={"Idempotent-Replayed": "true"},
            )
    body = fn(session) if encoded else jsonable_encoder(fn(session))
    if claim is not None:
        idempotency.answer(session, claim, status_code, body)
    return JSONResponse(body, status_code=status_code)


IdempotencyKey = Header(
    None,
    alias="Idempotency-Key",
    description="Any unique string; a retry with the same key returns the first answer, "
    "a different request with the same key gets 409.",
    max_length=200,
)


IfMatch = Header(
    None,
    alias="If-Match",
    description="The version this change was made from (the ETag of the GET): when the stored "
    "version is another one, nothing is written and the answer is 409 stale_version. "
    "Leave out to write whatever the current version is.",
    max_length=100,
)


def if_match(value: str | None) -> str | None:
    """The version an If-Match header names: `"3"`, `W/"3"` or `3` -> "3"; None or `*` -> None
    (any version)."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"').strip()
    return None if text in ("", "*") else text


def etag(version: object) -> str:
    return f'"{version}"'
