"""What every HTTP edge shares: the database, the caller, transactions and idempotency."""

from __future__ import annotations

import asyncio
import logging
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
from patron.errors import Forbidden, StoreNotAllowed

T = TypeVar("T")
log = logging.getLogger(__name__)

# Authenticated keys are remembered briefly so a till's earn costs no extra query; every
# REVOCATION_CHECK seconds a request first reads how many keys were ever revoked, and a change
# forgets them all: a revocation reaches every worker within that time.
_KEY_CACHE_SECONDS = 30.0
REVOCATION_CHECK = 0.5
_key_cache: dict[str, tuple[float, Actor]] = {}
_key_lock = threading.Lock()
_revoked = {"count": -1, "next_check": 0.0}


def forget_keys() -> None:
    with _key_lock:
        _key_cache.clear()
        _revoked["count"], _revoked["next_check"] = -1, 0.0


def cached_actor(raw: str) -> Actor | None:
    """The caller `raw` names if this worker authenticated it recently; otherwise None."""
    with _key_lock:
        hit = _key_cache.get(raw)
    if hit is None or hit[0] <= time.monotonic():
        return None
    return hit[1]


def _revocations_due() -> bool:
    """Whether the revocation count is to be read now: true once per REVOCATION_CHECK."""
    clock_now = time.monotonic()
    with _key_lock:
        if _revoked["next_check"] > clock_now:
            return False
        _revoked["next_check"] = clock_now + REVOCATION_CHECK
        return True


def check_revocations(db: Database) -> None:
    """Read how many keys were ever revoked; a new number forgets every remembered key."""
    with db.unit_of_work(readonly=True) as session:
        count = auth.revocations(session)
    with _key_lock:
        if count != _revoked["count"]:
            _key_cache.clear()
            _revoked["count"] = count


_checks: set[asyncio.Future[None]] = set()


def _checked(future: asyncio.Future[None]) -> None:
    _checks.discard(future)
    if not future.cancelled() and future.exception() is not None:
        log.warning("reading the API key revocations failed: %s", future.exception())


def remembered(db: Database, raw: str) -> Actor | None:
    """The caller `raw` names, if this worker remembers it. Once per REVOCATION_CHECK the
    revocation count is read in the thread pool, beside the request (which goes on with what
    is remembered: no request waits for it), so a revoked key is forgotten within that time."""
    if _revocations_due():
        future = asyncio.get_running_loop().run_in_executor(None, check_revocations, db)
        _checks.add(future)
        future.add_done_callback(_checked)
    return cached_actor(raw)


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
    # async: a remembered key costs no thread hand-off; a new key is checked in the thread pool.
    raw = x_api_key or (bearer.credentials if bearer is not None else None)
    if raw:
        actor = remembered(get_db(request), raw)
        if actor is not None:
            return actor
    return await run_in_threadpool(_authenticate, get_db(request), raw)


def _authenticate(db: Database, raw: str | None) -> Actor:
    with db.unit_of_work(readonly=True) as session:
        actor = auth.authenticate(session, raw)
        # The revocation count in the same snapshot as the key (counts only grow).
        count = auth.revocations(session)
    assert raw is not None
    with _key_lock:
        if _revoked["count"] == -1:
            # The worker's first key: the count is known from here, so the first background
            # check does not forget this key again.
            _revoked["count"] = count
        if count >= _revoked["count"]:
            # A key read before a revocation the checks have already counted is not remembered:
            # it is checked again on its next request.
            _key_cache[raw] = (time.monotonic() + _KEY_CACHE_SECONDS, actor)
    return actor


# Calls outside a program's path that a key limited to programs may make: the member and card
# routes check that the member belongs to one of its programs; the program list is filtered.
_MEMBER_ROUTES = ("/api/v1/members", "/api/v1/cards/")


def within_reach(actor: Actor, request: Request) -> None:
    """A key limited to programs acts only in them: a program's path names one of them, and a
    deployment-wide call (other programs, keys, audit, check, expiry) is refused."""
    if actor.programs is None:
        return
    code = request.path_params.get("code")
    if code is not None:
        if code not in actor.programs:
            raise Forbidden(
                f"this key is limited to {_listed(actor.programs)}: not {code}",
                code="program_not_allowed",
            )
        return
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    if path.startswith(_MEMBER_ROUTES) or (path == "/api/v1/programs" and request.method == "GET"):
        return
    raise Forbidden(
        f"this key is limited to {_listed(actor.programs)}; this call spans the whole "
        "deployment and needs a key without a program limit",
        code="key_not_allowed",
    )


def _listed(codes: frozenset[str]) -> str:
    return ("program " if len(codes) == 1 else "programs ") + ", ".join(sorted(codes))


def require(*scopes: str) -> Callable[..., Any]:
    """A dependency: the caller must hold one of `scopes` (admin holds all), and act within
    the programs its key is limited to."""

    async def check(request: Request, actor: Actor = Depends(caller)) -> Actor:
        if not any(actor.has_scope(s) for s in scopes):
            raise Forbidden(
                f"this call needs the {' or '.join(scopes)} scope", code="missing_scope"
            )
        within_reach(actor, request)
        return actor

    return check


def check_store(actor: Actor, store: str | None) -> None:
    """A key limited to stores records sales only at them, and names the store."""
    if not actor.reaches_store(store):
        assert actor.stores is not None
        raise StoreNotAllowed(
            f"this key is limited to store{'s' if len(actor.stores) > 1 else ''} "
            f"{', '.join(sorted(actor.stores))}: "
            + (f"not {store}" if store is not None else "name the store of the sale")
        )


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
