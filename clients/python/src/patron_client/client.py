"""`Patron` and `AsyncPatron`: the generated operations over httpx, with retries and typed errors.

Retries: a timeout, a dropped connection or a 5xx is retried up to `max_retries` times with
exponential backoff and jitter. A write is retried only when the operation takes an
Idempotency-Key: the client then always sends one (yours, or a fresh UUID) and every retry sends
the SAME key, so the server replays the first answer instead of earning twice. A write without
that header is retried only when the connection was refused (nothing reached the server).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_jsonable_python

from ._generated.operations import AsyncOperations, SyncOperations
from ._version import __version__
from .errors import TransportError, error_for

READS = frozenset({"GET", "HEAD", "OPTIONS"})
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(returns: Any) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(returns)
    if adapter is None:
        adapter = _ADAPTERS[returns] = TypeAdapter(returns)
    return adapter


class _Policy:
    """What both clients share: building the request, deciding a retry, reading the answer."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        max_retries: int,
        backoff: float,
        max_backoff: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {
            "Authorization": f"Bearer {api_key}",
            "User-Agent": f"patron-client-python/{__version__}",
        }
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff

    def build(
        self,
        method: str,
        path: str,
        *,
        path_params: Mapping[str, Any],
        query: Mapping[str, Any],
        headers: Mapping[str, Any],
        body: Any,
        idempotent: bool,
    ) -> dict[str, Any]:
        url = path
        for name, value in path_params.items():
            url = url.replace("{" + name + "}", quote(str(to_jsonable_python(value)), safe=""))
        params = []
        for name, value in query.items():
            if value is None:
                continue
            for one in value if isinstance(value, list | tuple) else [value]:
                plain = to_jsonable_python(one)
                params.append((name, str(plain).lower() if isinstance(plain, bool) else plain))
        sent = {k: str(v) for k, v in headers.items() if v is not None}
        if idempotent and method not in READS and "Idempotency-Key" not in sent:
            sent["Idempotency-Key"] = str(uuid.uuid4())
        request: dict[str, Any] = {"method": method, "url": url, "params": params, "headers": sent}
        if body is not None:
            if isinstance(body, BaseModel):
                request["json"] = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
            else:
                request["json"] = to_jsonable_python(body, by_alias=True)
        return request

    def may_retry(self, method: str, request: dict[str, Any], exc: Exception | None) -> bool:
        if method in READS or "Idempotency-Key" in request["headers"]:
            return True
        # A write the server cannot deduplicate: only when it surely never arrived.
        return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        wait = min(self.max_backoff, self.backoff * (2**attempt))
        if response is not None and response.headers.get("Retry-After", "").isdigit():
            wait = min(self.max_backoff, float(response.headers["Retry-After"]))
        return wait * (0.5 + random.random() / 2)

    @staticmethod
    def result(response: httpx.Response, returns: Any) -> Any:
        if response.status_code >= 400:
            raise error_for(response)
        if returns is None or response.status_code == 204:
            return None
        kind = response.headers.get("content-type", "")
        if "json" not in kind:
            return response.content
        return _adapter(returns).validate_python(response.json())


class Patron(SyncOperations):
    """The synchronous client: `Patron("http://127.0.0.1:8000", api_key)`; use it as a context
    manager (or call `close()`) to release connections."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        http: httpx.Client | None = None,
    ) -> None:
        self._policy = _Policy(
            base_url, api_key, max_retries=max_retries, backoff=backoff, max_backoff=max_backoff
        )
        self._http = http or httpx.Client(
            base_url=self._policy.base_url, timeout=timeout, follow_redirects=True
        )

    def _call(
        self, method: str, template: str, *, returns: Any, idempotent: bool, **parts: Any
    ) -> Any:
        policy = self._policy
        request = policy.build(method, template, idempotent=idempotent, **parts)
        request["headers"].update(policy.headers)
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(**request)
            except httpx.TransportError as exc:
                if attempt >= policy.max_retries or not policy.may_retry(method, request, exc):
                    raise TransportError(0, "transport_error", repr(exc)) from exc
            else:
                if response.status_code < 500 or attempt >= policy.max_retries:
                    return policy.result(response, returns)
                if not policy.may_retry(method, request, None):
                    return policy.result(response, returns)
            time.sleep(policy.delay(attempt, response))
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Patron:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncPatron(AsyncOperations):
    """The asyncio client: `async with AsyncPatron(url, key) as patron: await patron.purchase(...)`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._policy = _Policy(
            base_url, api_key, max_retries=max_retries, backoff=backoff, max_backoff=max_backoff
        )
        self._http = http or httpx.AsyncClient(
            base_url=self._policy.base_url, timeout=timeout, follow_redirects=True
        )

    async def _call(
        self, method: str, template: str, *, returns: Any, idempotent: bool, **parts: Any
    ) -> Any:
        policy = self._policy
        request = policy.build(method, template, idempotent=idempotent, **parts)
        request["headers"].update(policy.headers)
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.request(**request)
            except httpx.TransportError as exc:
                if attempt >= policy.max_retries or not policy.may_retry(method, request, exc):
                    raise TransportError(0, "transport_error", repr(exc)) from exc
            else:
                if response.status_code < 500 or attempt >= policy.max_retries:
                    return policy.result(response, returns)
                if not policy.may_retry(method, request, None):
                    return policy.result(response, returns)
            await asyncio.sleep(policy.delay(attempt, response))
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncPatron:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
