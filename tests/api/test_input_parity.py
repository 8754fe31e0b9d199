"""The same input gets the same answer on SQLite and on PostgreSQL (decision 0030).

PostgreSQL refuses NUL in text and cannot store a lone UTF-16 surrogate; SQLite stores both.
`patron.text.TextGuard` refuses them on both engines with 422 `validation_error`; valid Unicode
(non-BMP emoji, right-to-left text, combining marks) is stored and read back unchanged, and
lengths count characters on both (an external_id of 120 emoji fits, 121 does not).

One test drives the same cases through an app on each engine and compares the outcomes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron import clock
from patron.app import create_app
from patron.audit.service import CLI
from patron.auth.service import create_key
from patron.db.engine import Database
from patron.text import json_problem
from tests.conftest import auth, empty_all
from tests.factories import BAKERY

EXOTIC = "주문-😀-שלום-e\u0301-𝔘"  # Hangul, non-BMP emoji, RTL, a combining mark, math letter


def _body(value: dict[str, Any]) -> bytes:
    """JSON as a client may send it: every non-ASCII character as a \\u escape, so lone
    surrogates travel as they would from JavaScript or Java."""
    return json.dumps(value, ensure_ascii=True).encode()


def _sale(external_id: str) -> bytes:
    return _body({"external_id": external_id, "member": {"id": 1}, "amount": 1000})


def _member(name: str, **extra: Any) -> bytes:
    return _body({"name": name, "program": "bakery", **extra})


# name -> (method, path, body or None, expected status)
CASES: dict[str, tuple[str, str, bytes | None, int]] = {
    "sale, NUL in external_id": ("POST", "/purchases", _sale("A\x00B"), 422),
    "sale, lone high surrogate": ("POST", "/purchases", _sale("A\ud800B"), 422),
    "sale, lone low surrogate": ("POST", "/purchases", _sale("\udc00"), 422),
    "sale, NUL in a line's sku": (
        "POST",
        "/purchases",
        _body(
            {
                "external_id": "L-1",
                "member": {"id": 1},
                "amount": 10,
                "lines": [{"amount": 10, "sku": "x\x00"}],
            }
        ),
        422,
    ),
    "sale, exotic Unicode": ("POST", "/purchases", _sale(EXOTIC), 201),
    "sale, escaped surrogate pair": (
        "POST",
        "/purchases",
        b'{"external_id": "P-\\ud83d\\ude00", "member": {"id": 1}, "amount": 1000}',
        201,
    ),
    "sale, 120 emoji": ("POST", "/purchases", _sale("😀" * 120), 201),
    "sale, 121 emoji": ("POST", "/purchases", _sale("😀" * 121), 422),
    "quote, NUL in currency": (
        "POST",
        "/quote",
        _body({"member": {"id": 1}, "amount": 10, "currency": "\x00"}),
        422,
    ),
    "member, NUL in name": ("POST", "/members", _member("Kim\x00"), 422),
    "member, surrogate in an attribute key": (
        "POST",
        "/members",
        _member("Kim", attributes={"a\udfff": 1}),
        422,
    ),
    "member, exotic name": ("POST", "/members", _member(EXOTIC), 201),
    "member, 200 combining characters": ("POST", "/members", _member("e" + "\u0301" * 199), 201),
    "member, 201 characters": ("POST", "/members", _member("😀" * 201), 422),
    "query, NUL": ("GET", "/members?q=a%00b", None, 422),
    "path, NUL": ("GET", "/purchases/A%00B", None, 422),
    "path, exotic": ("GET", "/purchases/" + EXOTIC, None, 200),
}


def _path(path: str) -> str:
    if path.startswith("/members"):
        return "/api/v1" + path
    return "/api/v1/programs/bakery" + path


def _outcome(client: TestClient, headers: dict[str, str], case: str) -> tuple[int, Any]:
    method, path, body, _expected = CASES[case]
    response = client.request(
        method,
        _path(path),
        content=body,
        headers={**headers, "Content-Type": "application/json"} if body else headers,
    )
    data = response.json()
    if response.status_code >= 400:
        return response.status_code, data["error"]
    # What was stored, as it reads back: the text must survive the round trip unchanged.
    return response.status_code, data.get("external_id", data.get("name"))


@pytest.fixture
def engines(sqlite_template: Path, pg_url: str, tmp_path: Path) -> Iterator[dict[str, Database]]:
    path = tmp_path / "parity.db"
    shutil.copy(sqlite_template, path)
    databases = {"sqlite": Database(f"sqlite:///{path}"), "postgresql": Database(pg_url)}
    empty_all(databases["postgresql"])
    yield databases
    for database in databases.values():
        database.dispose()


def _run(database: Database) -> dict[str, tuple[int, Any]]:
    with database.unit_of_work() as session:
        _row, key = create_key(session, name="parity", scopes=["admin"], actor=CLI, now=clock.now())
    headers = auth(key)
    with TestClient(create_app(db=database)) as client:
        assert client.post("/api/v1/programs", json=BAKERY, headers=headers).status_code == 201
        kim = client.post(
            "/api/v1/members", json={"name": "Kim", "program": "bakery"}, headers=headers
        )
        assert kim.status_code == 201 and kim.json()["id"] == 1, kim.text
        return {case: _outcome(client, headers, case) for case in CASES}


def test_the_same_input_gets_the_same_answer_on_both_engines(engines):
    outcomes = {name: _run(database) for name, database in engines.items()}
    differing = {
        case: (outcomes["sqlite"][case], outcomes["postgresql"][case])
        for case in CASES
        if outcomes["sqlite"][case] != outcomes["postgresql"][case]
    }
    assert differing == {}
    got = {case: outcome[0] for case, outcome in outcomes["sqlite"].items()}
    assert got == {case: spec[3] for case, spec in CASES.items()}
    refused = {c for c, (status, _v) in outcomes["sqlite"].items() if status == 422}
    assert {outcomes["sqlite"][c][1] for c in refused} == {"validation_error"}
    # Valid Unicode reads back exactly as sent.
    assert outcomes["sqlite"]["sale, exotic Unicode"][1] == EXOTIC
    assert outcomes["sqlite"]["path, exotic"][1] == EXOTIC
    assert outcomes["sqlite"]["member, exotic name"][1] == EXOTIC
    assert outcomes["sqlite"]["sale, escaped surrogate pair"][1] == "P-😀"


def test_a_refusal_names_the_field():
    assert json_problem(_sale("A\x00B")) == "external_id: text must not contain NUL (U+0000)"
    assert json_problem(_body({"lines": [{}, {"sku": "\ud800"}]})) == (
        "lines.1.sku: text must not contain a lone surrogate (U+D800)"
    )
    # An escaped backslash followed by "u0000" is six ordinary characters, not a NUL.
    assert json_problem(b'{"note": "C:\\\\u0000"}') is None
    assert json_problem(_sale(EXOTIC)) is None
    # A UTF-16 body carries NUL bytes in every character: it is parsed, not refused for them.
    assert json_problem(json.dumps({"a": "b"}).encode("utf-16")) is None
    assert json_problem(json.dumps({"a": "b\x00"}).encode("utf-16")) is not None
    assert json_problem(b"{not json \\u0000") is None  # the route answers 400 invalid_json
