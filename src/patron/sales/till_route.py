"""`POST /api/v1/programs/{code}/purchases` without the framework in between.

A till waits on every sale, and on this endpoint FastAPI's routing, dependency solving and
middleware cost more CPU than recording the sale (docs/benchmarks.md). This ASGI layer sits in
front of the FastAPI app and answers the common request itself: a JSON body that validates, an
API key this worker already knows with the `pos` scope. It calls the very functions the FastAPI
route calls (`ledger.wire.decode` and `ledger.wire.purchase`), so the answer — byte for
byte, a malformed body's 400 included — the rows and the idempotency are the same.

**Group commit** (`PATRON_GROUP_COMMIT=true|false`; the default per engine is in
`group_commit_for`, decision 0017): the sales that arrive while this worker is writing earlier
ones wait for that write, then go to the database together as one batch of the sale pipeline
(`patron.sales.pipeline.record`: planned together, written with one set of statements) in one
transaction with one commit. Nothing is answered before its group is committed. A sale the
pipeline refuses is answered alone and the others still commit; if the group's transaction
fails (a database error), each of its sales runs again alone.

Everything else goes on to the FastAPI app untouched, with the body already read handed over:
a key not yet cached, a body that is not a valid sale (the route words the 422), an unusual
content type, a database error.
Nothing has been written when that happens (the transaction rolled back, or never started), so
the FastAPI route simply runs the request again and gives its usual answer or error. The route
is still declared in FastAPI, which is what `/openapi.json` documents.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse, Response

from patron import clock, http
from patron.audit.models import IdempotencyKey
from patron.audit.service import Actor
from patron.config import get_settings
from patron.db.engine import Database
from patron.errors import PatronError
from patron.sales import pipeline, program_cache, purchases, wire
from patron.sales.schemas import PurchaseRequest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# In /metrics beside patron.ops.metrics' own (the process registry, or every worker's files):
# sales ÷ groups is the mean group; waits ended by the bound rather than by the tills'
# arrival say PATRON_GROUP_COMMIT_WAIT_MS is waited out.
GROUP_COMMIT_GROUPS = Counter(
    "patron_group_commit_groups",
    "Groups of till sales written together, one transaction and one commit each.",
)
GROUP_COMMIT_SALES = Counter("patron_group_commit_sales", "Till sales written in those groups.")
GROUP_COMMIT_WAITS = Counter(
    "patron_group_commit_waits",
    "Waits for the tills a group answered, by how they ended: arrived or bound.",
    ("ended",),
)
_ARRIVED = GROUP_COMMIT_WAITS.labels("arrived")
_WAITED_OUT = GROUP_COMMIT_WAITS.labels("bound")
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
        actor = _remembered(self.db, headers)
        if actor is None or not actor.has_scope("pos") or not actor.reaches(code):
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
        if self.groups is None:
            run = wire.in_transaction(self.db)
        else:
            run = self.groups.runner(Sale(code, decoded, actor, idempotency_key))
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


Job = wire.Job
Outcome = Response | BaseException


@dataclass(frozen=True, slots=True)
class Sale:
    """A till sale waiting for its group: what the pipeline batch takes."""

    code: str
    req: PurchaseRequest
    actor: Actor
    idempotency_key: str | None


def group_commit_for(db: Database, wanted: bool | None = None) -> GroupCommit | None:
    """A GroupCommit if `wanted`; if None, as the setting says, and on by default on both
    engines (decision 0017: on PostgreSQL too, a group as one pipeline batch spent less CPU
    per earn with a lower p99)."""
    if wanted is None:
        wanted = get_settings().group_commit
    if wanted is False:
        return None
    return GroupCommit(db, wait=get_settings().group_commit_wait_ms / 1000)


class GroupCommit:
    """One worker's sales written in groups: whatever arrived while the previous group was
    being written goes next, together, as one pipeline batch per program and caller.

    A lone sale goes at once. When a group has been written and sales are waiting, the tills
    the group answered are about to send their next sales: the writer waits up to `wait`
    seconds for them, so a steady load runs as full groups instead of half groups taking turns
    (decision 0017, second addendum). The wait ends as soon as they are here, and there is
    none when nothing is waiting (an idle till pays nothing)."""

    def __init__(self, db: Database, limit: int = 64, wait: float = 0.0) -> None:
        self.db = db
        self.limit = limit
        self.wait = wait
        # While the writer waits: the number of waiting sales that ends the wait, and the
        # event `run` sets when it is reached.
        self._expected = 0
        self._arrived: asyncio.Event | None = None
        self._waiting: list[tuple[Sale, Job, asyncio.Future[Response]]] = []
        self._writer: asyncio.Task[None] | None = None
        # One thread writes the groups, one group at a time (there is one writer task): a
        # plain executor hand-off costs a fraction of the thread pool's (decision 0032).
        self._thread: ThreadPoolExecutor | None = None
        # Groups committed, the sales in them, the pipeline batches they made (one per program
        # and caller in a group), and the groups whose transaction failed and whose sales ran
        # again one by one (for tests and operators).
        self.groups = 0
        self.sales = 0
        self.batches = 0
        self.retried = 0
        # Waits for a fuller group, and those that ended at `wait` without it.
        self.waits = 0
        self.waits_timed_out = 0

    def runner(self, sale: Sale) -> wire.Run:
        """`run` for `wire.purchase`: `sale` written with its group; its `job` (the sale
        recorded alone) is what a group of one runs, and what runs if its group fails."""

        async def run(job: Job) -> Response:
            return await self.run(sale, job)

        return run

    async def run(self, sale: Sale, job: Job) -> Response:
        """`sale`'s answer once its group is committed; its error if the pipeline refused it
        (the others unharmed); its own error or the database's if it ran alone."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Response] = loop.create_future()
        self._arrive((sale, job, done))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_groups())
        return await done

    def _arrive(self, waiting: tuple[Sale, Job, asyncio.Future[Response]]) -> None:
        self._waiting.append(waiting)
        if self._arrived is not None and len(self._waiting) >= self._expected:
            self._arrived.set()

    def _next_group(self) -> list[tuple[Sale, Job, asyncio.Future[Response]]]:
        """Up to `limit` of the waiting sales, in order of arrival. A sale whose Idempotency-Key
        an earlier sale of the group holds waits for the next group: it then finds that sale's
        committed answer, as it would have alone."""
        group: list[tuple[Sale, Job, asyncio.Future[Response]]] = []
        later: list[tuple[Sale, Job, asyncio.Future[Response]]] = []
        keys: set[tuple[Actor, str]] = set()
        for waiting in self._waiting:
            sale = waiting[0]
            key = None if sale.idempotency_key is None else (sale.actor, sale.idempotency_key)
            if len(group) >= self.limit or key in keys:
                later.append(waiting)
                continue
            if key is not None:
                keys.add(key)
            group.append(waiting)
        self._waiting = later
        return group

    async def _write_groups(self) -> None:
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="patron-group-commit")
        try:
            answered = 0
            while self._waiting:
                await self._gather(answered)
                group = self._next_group()
                answered = len(group)
                outcomes: list[Outcome]
                # In the writer task's context (the first sale's: its request id, a frozen
                # clock in tests), as the thread pool would run it.
                context = contextvars.copy_context()
                try:
                    outcomes = await loop.run_in_executor(
                        self._thread,
                        context.run,
                        self._write,
                        [(sale, job) for sale, job, _ in group],
                    )
                except Exception as exc:  # a group of one failed: nothing was written
                    outcomes = [exc] * len(group)
                for (_sale, _job, done), outcome in zip(group, outcomes, strict=True):
                    if done.cancelled():  # the client went away; its sale is recorded
                        continue
                    if isinstance(outcome, BaseException):
                        done.set_exception(outcome)
                    else:
                        done.set_result(outcome)
        finally:
            self._writer = None

    async def _gather(self, answered: int) -> None:
        """Wait (at most `self.wait`) until as many sales are waiting as the group just
        answered had plus those already waiting: the answered tills' next sales join them."""
        expected = min(self.limit, answered + len(self._waiting))
        if not answered or not self._waiting or len(self._waiting) >= expected or self.wait <= 0:
            return
        self._expected, self._arrived = expected, asyncio.Event()
        try:
            await asyncio.wait_for(self._arrived.wait(), self.wait)
        except TimeoutError:
            self.waits_timed_out += 1
            _WAITED_OUT.inc()
        else:
            _ARRIVED.inc()
        finally:
            self._arrived = None
        self.waits += 1

    def _write(self, group: list[tuple[Sale, Job]]) -> list[Outcome]:
        """The group in one transaction, as one pipeline batch per program and caller. A group
        of one is the sale alone (its job). If the transaction fails, each sale runs again
        alone, in a transaction of its own."""
        try:
            if len(group) == 1:
                _sale, job = group[0]
                with self.db.unit_of_work() as session:
                    outcomes: list[Outcome] = [job(session)]
                self.batches += 1
            else:
                with self.db.unit_of_work() as session:
                    outcomes = self._write_batches(session, [sale for sale, _ in group])
        except Exception:
            if len(group) == 1:
                raise  # its own error, nothing written: as if it had run alone
            outcomes = [self._alone(job) for _, job in group]
            self.retried += 1
        self.groups += 1
        self.sales += len(group)
        GROUP_COMMIT_GROUPS.inc()
        GROUP_COMMIT_SALES.inc(len(group))
        return outcomes

    def _write_batches(self, session: Session, sales: list[Sale]) -> list[Outcome]:
        """Each sale's answer or error, as `wire.record` gives it alone: its Idempotency-Key
        taken first (a replay answers the stored response), then one `pipeline.record` for
        the group's sales of each program and caller, then each answer stored under its key.
        A refused sale's key is given back, as its rollback would have."""
        now = clock.now()
        outcomes: list[Outcome | None] = [None] * len(sales)
        claims: dict[int, IdempotencyKey] = {}
        batches: dict[tuple[str, Actor], list[int]] = {}
        for i, sale in enumerate(sales):
            if sale.idempotency_key is not None:
                try:
                    taken = wire.take_key(
                        session, sale.code, sale.req, sale.actor, sale.idempotency_key
                    )
                except PatronError as exc:
                    outcomes[i] = exc
                    continue
                if isinstance(taken, Response):
                    outcomes[i] = taken
                    continue
                claims[i] = taken
            batches.setdefault((sale.code, sale.actor), []).append(i)
        for (code, actor), indices in batches.items():
            try:
                program_id = program_cache.program_id(session, code)
            except PatronError as exc:
                for i in indices:
                    outcomes[i] = exc
                continue
            items = [(sales[i].req, purchases.sale_digest(sales[i].req)) for i in indices]
            sold = pipeline.record(session, program_id, items, actor=actor, now=now)
            self.batches += 1
            for i, one in zip(indices, sold, strict=True):
                if one.error is not None:
                    outcomes[i] = one.error
                else:
                    assert one.answer is not None
                    outcomes[i] = wire.answered(session, claims.pop(i, None), one.answer)
        for i, claim in claims.items():  # refused: the key is free again
            assert isinstance(outcomes[i], BaseException)
            session.delete(claim)
        session.flush()
        return [o for o in outcomes if o is not None]

    def _alone(self, job: Job) -> Outcome:
        try:
            with self.db.unit_of_work() as session:
                return job(session)
        except Exception as exc:  # its own error, or the database's: answered as alone
            return exc


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers; a repeated header keeps its first value, as Starlette's."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def _remembered(db: Database, headers: dict[str, str]) -> Actor | None:
    """The caller, if this worker authenticated the key recently (as `http.caller` reads it)."""
    raw = headers.get("x-api-key")
    if not raw:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return None
        raw = credentials
    return http.remembered(db, raw)


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
