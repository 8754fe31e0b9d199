"""A real HTTP server on loopback for tests of webhooks and SMS providers.

It records every request (method, path, headers, body) and answers from a script: a list of
(status, body) pairs used in turn, the last one repeated. `receiver.fail_next(n)` makes the next
n requests answer 500, so a test can have an endpoint go down and recover.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8")


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    script: list[tuple[int, str]] = field(default_factory=lambda: [(200, "ok")])
    delay_seconds: float = 0.0
    _failures: int = 0
    _failure_status: int = 500
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *script: tuple[int, str]) -> None:
        with self._lock:
            self.script = list(script) or [(200, "ok")]

    def fail_next(self, n: int, status: int = 500) -> None:
        with self._lock:
            self._failures = n
            self._failure_status = status

    def _next(self, request: Received) -> tuple[int, str]:
        with self._lock:
            self.requests.append(request)
            if self._failures > 0:
                self._failures -= 1
                return self._failure_status, "down"
            if len(self.script) > 1:
                return self.script.pop(0)
            return self.script[0]

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        """Block until at least n requests arrived (or fail the test)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"expected {n} requests, got {len(self.requests)}")


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            got = Received(self.command, self.path, {k: v for k, v in self.headers.items()}, body)
            status, text = receiver._next(got)
            if receiver.delay_seconds:
                time.sleep(receiver.delay_seconds)
            data = text.encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a killed worker, a timeout): nothing to answer

        do_POST = do_GET = do_PUT = _handle

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


@pytest.fixture
def http_receiver() -> Iterator[Receiver]:
    receiver, server = start_receiver()
    yield receiver
    server.shutdown()
    server.server_close()
