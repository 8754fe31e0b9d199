"""`patron conformance` against a live server (uvicorn, 2 workers) on SQLite and PostgreSQL must
be green; pointed at a server that breaks a promise it must go red on exactly that check."""

from __future__ import annotations

import json
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from patron.auth.models import ApiKey
from patron.conformance.report import junit_xml
from patron.conformance.suite import CHECKS, CheckResult, SuiteReport
from patron.programs.models import Program
from tests.conformance.live_server import LiveServer, free_port


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str = ""


def conformance(url: str, key: str, junit: Path, *extra: str) -> Run:
    """`patron conformance …`, in this process (the suite only speaks HTTP; the server is real)."""
    from typer.testing import CliRunner

    from patron.cli import app

    args = ["conformance", "--url", url, "--admin-key", key, "--junit", str(junit), *extra]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "160"})
    return Run(result.exit_code, result.output)


def junit_cases(path: Path) -> dict[str, ET.Element]:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    return {case.get("name", ""): case for case in suite.iter("testcase")}


def test_the_suite_passes_against_a_live_server(db, keys, tmp_path):
    junit = tmp_path / "conformance.xml"
    with LiveServer(db.url, tmp_path / "serve.log", workers=2) as server:
        done = conformance(server.base, keys["admin"], junit)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"all {len(CHECKS)} checks passed" in done.stdout
    cases = junit_cases(junit)
    assert list(cases) == list(CHECKS)
    assert [name for name, case in cases.items() if case.find("failure") is not None] == []
    assert "20 concurrent redemptions" in (cases["double_spend"].findtext("system-out") or "")
    # Nothing can delete a program: the scratch ones are retired, and its key revoked.
    with db.unit_of_work(readonly=True) as session:
        names = session.scalars(select(Program.name).where(Program.code.like("conformance-%")))
        assert sorted(n.endswith("(finished; scratch, no deletion API)") for n in names) == [
            True,
            True,
        ]
        scratch_keys = session.scalars(select(ApiKey).where(ApiKey.name.like("conformance %")))
        assert [k.revoked_at is not None for k in scratch_keys] == [True]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the races open 20 connections at once; the default backlog is 5


class BreakingProxy:
    """Forwards every call to the real server, except that it breaks two promises: it accepts
    every redemption the server refused (a double spend), and it answers malformed JSON with a
    500. Everything else passes through untouched."""

    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.Client(base_url=upstream, timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, content = proxy.answer(self.command, self.path, self.headers, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

        self.server = _Server(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, method, path, headers, body):
        if body.startswith(b'{"external_id": ') and len(body) < 20:
            return 500, {"Content-Type": "text/plain"}, b"Internal Server Error"
        sent = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
        response = self.upstream.request(method, path, headers=sent, content=body)
        if (
            response.status_code == 409
            and path.endswith("/purchases")
            and response.json().get("error") == "insufficient_points"
        ):
            request = json.loads(body)
            fake = {
                "external_id": request["external_id"],
                "points_spent": 1000,
                "points_earned": 0,
                "totals": {"balance": 0},
            }
            return 201, {"Content-Type": "application/json"}, json.dumps(fake).encode()
        keep = ("content-type", "idempotent-replayed", "etag")
        return (
            response.status_code,
            {k: v for k, v in response.headers.items() if k.lower() in keep},
            response.content,
        )

    def close(self) -> None:
        self.server.shutdown()
        self.upstream.close()


@pytest.fixture
def sqlite_only(db) -> None:
    if db.dialect != "sqlite":
        pytest.skip("the suite's own failure reporting does not depend on the engine")


def test_the_suite_fails_where_the_server_breaks_a_promise(db, sqlite_only, keys, tmp_path):
    junit = tmp_path / "conformance.xml"
    with LiveServer(db.url, tmp_path / "serve.log", workers=1) as server:
        proxy = BreakingProxy(server.base)
        try:
            only = ["--only", "double_spend", "--only", "bad_input", "--only", "partial_refunds"]
            done = conformance(proxy.url, keys["admin"], junit, *only)
        finally:
            proxy.close()
    assert done.returncode == 1, done.stdout + done.stderr
    cases = junit_cases(junit)
    failed = {name: case.find("failure") for name, case in cases.items()}
    assert sorted(failed) == ["bad_input", "double_spend", "partial_refunds"]
    assert failed["partial_refunds"] is None  # passed through untouched: still green
    double = failed["double_spend"]
    assert double is not None and "exactly one accepted (20 were)" in double.get("message", "")
    bad = failed["bad_input"]
    assert bad is not None and bad.get("message", "").startswith("malformed JSON → 500")
    assert "2 failed (double_spend, bad_input), 1 passed" in done.stdout


def test_an_unreachable_server_cannot_run_the_suite(tmp_path):
    done = conformance(f"http://127.0.0.1:{free_port()}", "ptr_x_y", tmp_path / "j.xml")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot run" in done.stdout and "not reachable" in done.stdout
    assert not (tmp_path / "j.xml").exists()


def test_junit_carries_what_a_server_answered_even_nul_bytes() -> None:
    from datetime import UTC, datetime

    report = SuiteReport("http://x", "run1", ["conformance-run1"], datetime.now(UTC))
    report.results = [
        CheckResult("bad_input", "t", False, 0.5, ["✗ NUL → 500 a\x00b"], ["NUL → 500 a\x00b"]),
        CheckResult("invariants", "t", True, 0.1, ["✓ ok"], []),
    ]
    root = ET.fromstring(junit_xml(report))
    suite = root.find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("2", "1")
    failure = suite.find("testcase/failure")
    assert failure is not None and failure.get("message") == "NUL → 500 a\ufffdb"
