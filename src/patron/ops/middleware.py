"""The outermost ASGI layer: a request id for every request, and its metrics.

A plain ASGI callable (no BaseHTTPMiddleware, which would run each request through a task, a
stream and a response object): it wraps `send` to see the status line, adds `X-Request-ID` to
the answer and, if metrics are on, counts the request under its route template once the answer
is sent. It sits outside the till's raw purchase route (patron.sales.till_route), which answers
without the framework and so never sets `scope["route"]`: such requests are labelled by the
till route's own pattern. Measured on the earn hot path in decision 0029.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from patron.ops.logging import request_id
from patron.ops.metrics import UNMATCHED, RequestMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEADER = b"x-request-id"
# An id a client or proxy sends is kept if it is short and plain (it lands in log lines).
_ACCEPTED = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")

METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
TILL_ROUTE = "/api/v1/programs/{code}/purchases"
_TILL_PATH = re.compile(r"/api/v1/programs/[^/]+/purchases")


# A request id is 24 hex digits: 8 random bytes drawn once per process, then a counter (no
# system call per request; unique within the process, and across processes but for a 1 in 2^64
# draw). A forked child draws its own.
_prefix = os.urandom(8).hex()
_counter = itertools.count()


def _draw() -> None:
    global _prefix, _counter
    _prefix, _counter = os.urandom(8).hex(), itertools.count()


os.register_at_fork(after_in_child=_draw)


def new_request_id() -> str:
    return f"{_prefix}{next(_counter) & 0xFFFFFFFF:08x}"


def incoming_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == HEADER:
            return value.decode("ascii") if _ACCEPTED.fullmatch(value) else None
    return None


def route_template(scope: Scope) -> str:
    """The matched route's path template; a mounted app's (admin UI, member pages) under its
    mount prefix; the till route's pattern for the purchases it answered itself."""
    route = scope.get("route")
    if route is not None:
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return scope.get("root_path", "") + path
    if scope["method"] == "POST" and _TILL_PATH.fullmatch(scope["path"]):
        return TILL_ROUTE
    return UNMATCHED


class OpsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: bool = True) -> None:
        self.app = app
        self.metrics = RequestMetrics() if metrics else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = incoming_id(scope["headers"]) or new_request_id()
        token = request_id.set(rid)
        header = (HEADER, rid.encode("ascii"))
        status = 500  # if the app raises before answering, the server answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.metrics is not None:
                method = scope["method"]
                self.metrics.observe(
                    method if method in METHODS else "other",
                    route_template(scope),
                    status,
                    time.perf_counter() - started,
                )
            request_id.reset(token)
