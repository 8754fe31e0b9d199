"""Request ids: accepted or made, returned, and on every log line of the request (in JSON and
in text), the access log included."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from patron.app import create_app
from patron.db.engine import Database
from patron.ops import logging as ops_logging

NAMES = ("patron", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate, lg.filters[:])
        for name in NAMES
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, level, propagate, filters) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.level, lg.propagate, lg.filters[:] = handlers, level, propagate, filters


@pytest.fixture(scope="module")
def app(tmp_path_factory, sqlite_template):
    """One app for the module: these tests read headers and logs, never the database."""
    path = tmp_path_factory.mktemp("logging") / "patron.db"
    shutil.copy(sqlite_template, path)
    app = create_app(db=Database(f"sqlite:///{path}"))

    @app.get("/_test/log")
    def log_twice() -> dict[str, str]:  # a sync route: it runs on the thread pool
        logging.getLogger("patron.test").warning("first line")
        logging.getLogger("patron.test").warning("second line")
        return {"ok": "yes"}

    return app


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_request_id_is_kept_when_sent_and_made_when_not(app):
    with TestClient(app) as client:
        sent = client.get("/health", headers={"X-Request-ID": "till-7:req-42"})
        made = client.get("/health")
        again = client.get("/health")
        unsafe = client.get("/health", headers={"X-Request-ID": "a b\tc" + "x" * 200})
    assert sent.headers["x-request-id"] == "till-7:req-42"
    assert len(made.headers["x-request-id"]) == 24
    assert made.headers["x-request-id"] != again.headers["x-request-id"]
    assert unsafe.headers["x-request-id"] != "a b\tc" + "x" * 200
    assert len(unsafe.headers["x-request-id"]) == 24


def test_every_json_line_of_a_request_carries_its_id(app, capsys, restore_logging):
    ops_logging.configure("json", "info")
    with TestClient(app) as client:
        answer = client.get("/_test/log", headers={"X-Request-ID": "abc-123"})
        other = client.get("/_test/log")
    assert answer.status_code == 200
    lines = [
        line for line in json_lines(capsys.readouterr().err) if line["logger"] == "patron.test"
    ]
    assert [(line["message"], line["request_id"]) for line in lines] == [
        ("first line", "abc-123"),
        ("second line", "abc-123"),
        ("first line", other.headers["x-request-id"]),
        ("second line", other.headers["x-request-id"]),
    ]
    assert {"time", "level", "logger"} <= set(lines[0])
    assert lines[0]["level"] == "WARNING"


def test_access_lines_in_json_and_text(capsys, restore_logging):
    ops_logging.configure("json", "info")
    token = ops_logging.request_id.set("req-9")
    try:
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST", "/api/v1/x", "1.1", 201
        )
        (line,) = json_lines(capsys.readouterr().out)
        assert line["request_id"] == "req-9"
        assert (line["method"], line["path"], line["status_code"]) == ("POST", "/api/v1/x", 201)
        assert "color_message" not in line and "request_tag" not in line

        ops_logging.configure("text", "info")
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/health", "1.1", 200
        )
        logging.getLogger("patron.x").info("inside")
    finally:
        ops_logging.request_id.reset(token)
    logging.getLogger("patron.x").info("outside a request")
    captured = capsys.readouterr()
    assert '"GET /health HTTP/1.1" 200 OK [req-9]' in captured.out
    assert "inside [req-9]" in captured.err
    assert "outside a request\n" in captured.err  # no id, no empty brackets


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="text, json"):
        ops_logging.log_config("xml")
