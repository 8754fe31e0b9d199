"""Text the API takes is text both databases store: no NUL, no lone surrogate (decision 0030).

PostgreSQL refuses a NUL character in text and cannot encode a lone UTF-16 surrogate in UTF-8;
SQLite stores both. So `"external_id": "A\\u0000B"` was a sale on SQLite and a 422 (or a 500)
on PostgreSQL. `TextGuard` refuses such text before any route, the same way on both engines, with
the one error shape: 422 `validation_error` naming the field. Valid Unicode (non-BMP emoji,
right-to-left text, combining marks) passes untouched.

It stays off the hot path's bill: a JSON body can only carry either as a `\\u` escape (a raw
control character or a UTF-8-encoded surrogate is not valid JSON), so a body is let through
after a byte scan unless it has an escape of NUL or of a surrogate (or NUL bytes, as a UTF-16
body has); only such a body is parsed here, to find and name the field.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BAD = re.compile("[\x00\ud800-\udfff]")
# A `\u` escape of NUL or of a surrogate, the only way a JSON body can carry either: a body
# without one needs no parse. (It also matches an escaped backslash followed by "u0000", and
# surrogate pairs: rare, and then the parse decides.)
_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def problem(text: str) -> str | None:
    """What makes `text` unstorable on one of the engines, or None."""
    found = _BAD.search(text)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "text must not contain NUL (U+0000)"
    return f"text must not contain a lone surrogate (U+{ord(char):04X})"


def json_problem(body: bytes) -> str | None:
    """`where: why` for the first unstorable string (key or value) in a JSON body, or None
    (also when the body is not JSON: the route answers that)."""
    if b"\x00" not in body and (b"\\u" not in body or _SUSPECT.search(body) is None):
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[tuple[str, ...], Any]] = [((), value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            why = problem(item)
            if why is not None:
                return f"{'.'.join(where) or 'body'}: {why}"
        elif isinstance(item, dict):
            for key in reversed(list(item)):
                why = problem(key)
                if why is not None:
                    return f"{'.'.join((*where, key.encode('unicode_escape').decode()))}: {why}"
                stack.append(((*where, key), item[key]))
        elif isinstance(item, list):
            stack.extend(((*where, str(i)), v) for i, v in reversed(list(enumerate(item))))
    return None


def url_problem(scope: Scope) -> str | None:
    """`where: why` if the path or query string carries a NUL (a percent-encoded surrogate
    already decodes to U+FFFD)."""
    if "\x00" in scope["path"]:
        return "path: text must not contain NUL (U+0000)"
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        return "query: text must not contain NUL (U+0000)"
    return None


class TextGuard:
    """ASGI middleware for `/api/`: refuse NUL and lone surrogates in the path, the query and a
    JSON body with 422 `validation_error`, before any route (the till's included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        why = url_problem(scope)
        if why is None and scope["method"] in _WRITES:
            chunks = []
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client left
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            why = json_problem(body)
            receive = _replay(body, receive)
        if why is not None:
            refusal = JSONResponse({"error": "validation_error", "detail": why}, status_code=422)
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` once, then waits on the client as before."""
    given = False

    async def again() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again
