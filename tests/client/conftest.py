"""A real Patron server (uvicorn on a loopback port, SQLite) and a real HTTP proxy that can fail.

The client is engine-independent (it only speaks HTTP), so these tests run on SQLite only; the
server's own tests cover PostgreSQL.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from patron import clock
from patron.audit.service import CLI
from patron.auth.service import create_key
from patron.db.engine import Database

# `make install` puts the client in the venv (`pip install -e clients/python`); until then the
# tests use the source tree, so they never run against a stale installed copy by accident.
if importlib.util.find_spec("patron_client") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python" / "src"))


@dataclass
class LiveServer:
    url: str
    keys: dict[str, str]
    db: Database


@pytest.fixture(scope="module")
def live(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server per test module, with an admin, a pos and a read API key."""
    import uvicorn

    from patron.app import create_app

    path = tmp_path_factory.mktemp("client") / "patron.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    keys = {}
    with db.unit_of_work() as session:
        for scope in ("admin", "pos", "read"):
            _row, keys[scope] = create_key(
                session, name=f"{scope} key", scopes=[scope], actor=CLI, now=clock.now()
            )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(db=db), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield LiveServer(f"http://127.0.0.1:{port}", keys, db)
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
    db.dispose()


@dataclass
class FlakyProxy:
    """Forwards to the server; the next `lose_answers` requests are forwarded and their answer
    replaced by a 502 (the write happened, the till never heard); the next `stall` requests are
    forwarded and answered only after `stall_seconds` (the till times out first)."""

    upstream: str
    url: str = ""
    lose_answers: int = 0
    stall: int = 0
    stall_seconds: float = 1.5
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def proxy(live: LiveServer) -> Iterator[FlakyProxy]:
    state = FlakyProxy(upstream=live.url)
    upstream = httpx.Client(base_url=live.url, timeout=30)

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in ("host", "content-length", "connection")
            }
            with state.lock:
                state.seen.append((self.command, self.path, self.headers.get("Idempotency-Key")))
                lose = state.lose_answers > 0
                stall = not lose and state.stall > 0
                state.lose_answers -= lose
                state.stall -= stall
            answer = upstream.request(self.command, self.path, content=body, headers=headers)
            if stall:
                time.sleep(state.stall_seconds)
            status, payload = (
                (502, b'{"error": "bad_gateway", "detail": "the answer was lost"}')
                if lose
                else (answer.status_code, answer.content)
            )
            try:
                self.send_response(status)
                self.send_header("Content-Type", answer.headers.get("content-type", "text/plain"))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and went away: that is the point of a stall

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    upstream.close()
