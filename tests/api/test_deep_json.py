"""A deeply nested JSON body is a malformed body like any other: the JSON 400 that invalid JSON
gets (`invalid_json`), never a RecursionError and a plain-text 500 — on the till's direct route,
on the FastAPI routes behind it, with or without the direct route in front."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron import clock
from tests.api.helpers import enroll

P = "/api/v1/programs/bakery"
INVALID_JSON = {"error": "invalid_json", "detail": "the request body is not valid JSON"}

# Open only (never valid JSON), balanced (valid JSON, just too deep for json.loads), and an
# object chain; at the 1,000 levels the brief names and far beyond.
DEPTHS = (1_000, 100_000)
SHAPES = {
    "open": lambda n: "[" * n,
    "balanced": lambda n: "[" * n + "]" * n,
    "objects": lambda n: '{"a":' * n + "1" + "}" * n,
}
BODIES = [
    pytest.param(make(n).encode(), id=f"{name}-{n}")
    for n in DEPTHS
    for name, make in SHAPES.items()
]
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def tolerant(app) -> Iterator[TestClient]:
    """The app as a till sees it: a server error is an answer, not an exception in the test."""
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def framework_only(db) -> Iterator[TestClient]:
    """The same database behind the FastAPI routes alone (no direct till route)."""
    from patron.app import create_app

    with TestClient(create_app(db=db, till_route=False), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def member(tolerant, pos, bakery, frozen) -> dict[str, Any]:
    # Enrolling with the POS key also caches the key, so sales take the direct route.
    return enroll(tolerant, pos, name="Kim Minji", phone="010-1234-5678")


def assert_invalid_json(response: Any) -> None:
    assert response.status_code == 400, response.text[:200]
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == INVALID_JSON


@pytest.mark.parametrize("body", BODIES)
def test_the_direct_till_route_answers_a_deep_body_with_invalid_json(tolerant, pos, member, body):
    assert_invalid_json(tolerant.post(f"{P}/purchases", content=body, headers={**pos, **JSON}))
    # Nothing was recorded, and a good sale still goes through.
    ok = tolerant.post(
        f"{P}/purchases",
        json={"external_id": "S-1", "member": {"phone": "010-1234-5678"}, "amount": 25800},
        headers=pos,
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["totals"]["balance"] == 250


@pytest.mark.parametrize("body", BODIES)
def test_the_fastapi_purchase_route_answers_a_deep_body_with_invalid_json(
    framework_only, pos, member, body
):
    assert_invalid_json(
        framework_only.post(f"{P}/purchases", content=body, headers={**pos, **JSON})
    )


@pytest.mark.parametrize("body", BODIES)
def test_a_key_the_direct_route_has_not_seen_gets_the_same_answer(
    tolerant, keys, bakery, frozen, body
):
    from patron import http
    from tests.conftest import auth

    http.forget_keys()  # the direct route declines, the framework parses the body
    response = tolerant.post(f"{P}/purchases", content=body, headers={**auth(keys["pos"]), **JSON})
    assert_invalid_json(response)


@pytest.mark.parametrize("body", BODIES)
def test_other_json_routes_answer_a_deep_body_with_invalid_json(tolerant, admin, pos, body):
    clock.freeze(clock.now())
    assert_invalid_json(tolerant.post("/api/v1/programs", content=body, headers={**admin, **JSON}))
    assert_invalid_json(tolerant.post("/api/v1/members", content=body, headers={**pos, **JSON}))


def test_invalid_utf8_is_invalid_json_too(tolerant, pos, member, framework_only):
    body = b'{"external_id": "\xff"}'
    assert_invalid_json(tolerant.post(f"{P}/purchases", content=body, headers={**pos, **JSON}))
    assert_invalid_json(
        framework_only.post(f"{P}/purchases", content=body, headers={**pos, **JSON})
    )
