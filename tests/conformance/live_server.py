"""`patron serve` as a real subprocess for the black-box tests: several workers in their own
process group on a free loopback port, so a test can SIGKILL the whole server at once.

The server twin of tests/delivery/test_kill.py's `patron worker` subprocess, after
benchmarks/run.py's `Server` (which the benchmarks own; tests do not import benchmark scripts).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

PATRON = str(Path(sys.executable).parent / "patron")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class LiveServer:
    def __init__(self, database_url: str, log: Path, *, workers: int = 2) -> None:
        self.database_url, self.log, self.workers = database_url, log, workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> LiveServer:
        env = {
            **os.environ,
            "PATRON_LOG_LEVEL": "warning",
            # The outbox is not what these tests look at: no delivery thread in each worker.
            "PATRON_DELIVERY_IN_PROCESS": "false",
        }
        cmd = [PATRON, "serve", "--database-url", self.database_url, "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--workers", str(self.workers)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"patron serve exited: {self.log.read_text()[-3000:]}")
            if self._answers() and self.worker_pids() >= self.workers:
                return self
            time.sleep(0.2)
        self.kill9()
        raise RuntimeError(f"patron serve did not come up: {self.log.read_text()[-3000:]}")

    def _answers(self) -> bool:
        try:
            return httpx.get(self.base + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def worker_pids(self) -> int:
        assert self.proc is not None
        if self.workers == 1:
            return 1
        return sum(1 for pid in _children(self.proc.pid) if _is_worker(pid))

    def kill9(self) -> None:
        """SIGKILL the server and every worker at once: no shutdown, no flush, no goodbye."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # uvicorn finishes what is in flight
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        # A worker left behind would hold database connections open.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
