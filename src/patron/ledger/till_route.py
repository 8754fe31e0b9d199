"""`POST /api/v1/programs/{code}/purchases` without the framework in between.

A till waits on every sale, and on this endpoint FastAPI's routing, dependency solving and
middleware cost more CPU than recording the sale (docs/benchmarks.md). This ASGI layer sits in
front of the FastAPI app and answers the common request itself: a JSON body that validates, an
API key this worker already knows with the `pos` scope. It calls the very functions the FastAPI
route calls (`ledger.wire.decode` and `ledger.wire.purchase`), so the answer — byte for
byte, a malformed body's 400 included — the rows and the idempotency are the same.

**Group commit** (on SQLite by default; `PATRON_GROUP_COMMIT=true|false` decides on either
engine): the sales that arrive while this worker is writing earlier ones wait for that write,
then go to the database together in one transaction with one commit — one fsync on SQLite
instead of one per sale. Nothing is answered before its group is committed. If a sale of the
group fails, the transaction is rolled back and the group runs again with a savepoint per sale,
so the failure touches that sale alone.

Everything else goes on to the FastAPI app untouched, with the body already read handed over:
a key not yet cached, a body that is not a valid sale (the route words the 422), an unusual
content type, a database error.
Nothing has been written when that happens (the transaction rolled back, or never started), so
the FastAPI route simply runs the request again and gives its usual answer or error. The route
is still declared in FastAPI, which is what `/openapi.json` documents.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from patron import http
from patron.audit.service import Actor
from patron.config import get_settings
from patron.db.engine import Database
from patron.ledger import wire
from patron.sales.schemas import PurchaseRequest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PATH = re.compile(r"/api/v1/programs/([a-z0-9][a-z0-9_-]{0,39})/purchases")
_MAX_BODY = 1 << 20  # larger bodies go to the framework, which answers them as usual
_IDEMPOTENCY_KEY_MAX = 200  # as http.IdempotencyKey


class _Decline(Exception):
    """This request is for the FastAPI app."""


class TillRoute:
    """ASGI middleware: the purchase endpoint's common case, answered directly."""

    def __init__(self, app: ASGIApp, db: Database, groups: GroupCommit | None = None) -> None:
        self.app = app
        self.db = db
        self.groups = groups

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        match = _PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        try:
            response = await self._purchase(scope, match.group(1), body)
        except _Decline:
            await self.app(scope, _replay(body, receive), send)
            return
        await response(scope, receive, send)

    async def _purchase(self, scope: Scope, code: str, body: bytes) -> Response:
        if isinstance(body, _Partial):
            raise _Decline
        headers = _headers(scope)
        content_type = headers.get("content-type")
        # Without a content type FastAPI reads the body as bytes, and refuses it (422).
        if content_type is None or content_type.split(";")[0].strip() != "application/json":
            raise _Decline
        actor = _cached_actor(headers)
        if actor is None or not actor.has_scope("pos"):
            raise _Decline
        idempotency_key = headers.get("idempotency-key")
        if idempotency_key is not None and len(idempotency_key) > _IDEMPOTENCY_KEY_MAX:
            raise _Decline
        try:
            decoded = wire.decode(body, content_type)
        except wire.InvalidJSON as exc:  # as the app's handler answers it
            return JSONResponse(exc.body(), status_code=exc.status)
        if isinstance(decoded, wire.Rejected):
            # Not a valid sale: the framework words the 422 (the route decodes it the same way).
            raise _Decline
        run = wire.in_transaction(self.db) if self.groups is None else self.groups.run
        try:
            return await wire.purchase(
                decoded,
                code,
                actor=actor,
                idempotency_key=idempotency_key,
                run=run,
                record=self._record_in,
            )
        except Exception:  # a database error: rolled back; the app's handlers answer it
            raise _Decline from None

    def _record_in(
        self,
        session: Session,
        code: str,
        req: PurchaseRequest,
        actor: Actor,
        idempotency_key: str | None,
    ) -> Response:
        return wire.record(session, code, req, actor, idempotency_key)


Job = Callable[[Session], Response]


def group_commit_for(db: Database, wanted: bool | None = None) -> GroupCommit | None:
    """A GroupCommit if `wanted`, or if the setting asks for one on this engine (None)."""
    if wanted is None:
        wanted = get_settings().group_commit
    if wanted is None:
        wanted = db.dialect == "sqlite"
    return GroupCommit(db) if wanted else None


class GroupCommit:
    """One worker's sales written in groups: whatever arrived while the previous group was
    being written goes next, together (no waiting for a group to fill: a lone sale goes
    at once)."""

    def __init__(self, db: Database, limit: int = 64) -> None:
        self.db = db
        self.limit = limit
        self._waiting: list[tuple[Job, asyncio.Future[Response]]] = []
        self._writer: asyncio.Task[None] | None = None
        # Groups committed, the sales in them, and the groups run again sale by sale because
        # one of their sales failed (for tests and operators).
        self.groups = 0
        self.sales = 0
        self.retried = 0

    async def run(self, job: Job) -> Response:
        """`job`'s answer once its group is committed; its error if it failed (its savepoint
        rolled back, the others unharmed); the group's error if the commit failed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Response] = loop.create_future()
        self._waiting.append((job, done))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_groups())
        return await done

    async def _write_groups(self) -> None:
        try:
            while self._waiting:
                group = self._waiting[: self.limit]
                del self._waiting[: self.limit]
                outcomes: list[Response | BaseException]
                try:
                    outcomes = await run_in_threadpool(self._write, [job for job, _ in group])
                except Exception as exc:  # the commit failed: nothing of the group was written
                    outcomes = [exc] * len(group)
                for (_job, done), outcome in zip(group, outcomes, strict=True):
                    if done.cancelled():  # the client went away; its sale is recorded
                        continue
                    if isinstance(outcome, BaseException):
                        done.set_exception(outcome)
                    else:
                        done.set_result(outcome)
        finally:
            self._writer = None

    def _write(self, jobs: list[Job]) -> list[Response | BaseException]:
        """The group in one transaction. Sales rarely fail, so the group first runs without
        savepoints (each costs two round trips on PostgreSQL); if one fails, that transaction
        is rolled back and the group runs again with a savepoint per sale."""
        try:
            with self.db.unit_of_work() as session:
                outcomes: list[Response | BaseException] = [job(session) for job in jobs]
        except Exception:
            if len(jobs) == 1:
                raise  # its own error, nothing written: as if it had run alone
            outcomes = self._write_isolated(jobs)
            self.retried += 1
        self.groups += 1
        self.sales += len(jobs)
        return outcomes

    def _write_isolated(self, jobs: list[Job]) -> list[Response | BaseException]:
        outcomes: list[Response | BaseException] = []
        with self.db.unit_of_work() as session:
            for job in jobs:
                try:
                    with session.begin_nested():
                        outcomes.append(job(session))
                except Exception as exc:  # this sale's savepoint is rolled back, and only it
                    outcomes.append(exc)
        return outcomes


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers; a repeated header keeps its first value, as Starlette's."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def _cached_actor(headers: dict[str, str]) -> Actor | None:
    """The caller, if this worker authenticated the key recently (as `http.caller` reads it)."""
    raw = headers.get("x-api-key")
    if not raw:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return None
        raw = credentials
    with http._key_lock:
        hit = http._key_cache.get(raw)
    if hit is None or hit[0] <= time.monotonic():
        return None
    return hit[1]


async def _read_body(receive: Receive) -> bytes:
    """The whole body, or a _Partial one: past _MAX_BODY, or the client went away."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = message.get("more_body", False)
        if size > _MAX_BODY and more:
            break
    body = b"".join(chunks)
    return _Partial(body) if more else body


class _Partial(bytes):
    """A body read only in part: the framework gets it and reads the rest itself."""


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the app: the body already read, then whatever the client sends next."""
    pending = True
    complete = not isinstance(body, _Partial)

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": bytes(body), "more_body": not complete}
        return await receive()

    return replayed
