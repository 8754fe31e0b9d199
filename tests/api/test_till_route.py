"""The purchase endpoint's direct route (patron.sales.till_route) answers exactly as the
FastAPI route does: the same status and body for every kind of request, taken or declined."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron import clock
from patron.sales.till_route import TillRoute
from tests.api.helpers import enroll
from tests.conftest import auth

P = "/api/v1/programs/bakery"


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The external ids the direct route recorded (it calls the real `_record_in`)."""
    seen: list[str] = []
    original = TillRoute._record_in

    def spy(self: TillRoute, session: Any, code: str, req: Any, *args: Any) -> Any:
        seen.append(req.external_id)
        return original(self, session, code, req, *args)

    monkeypatch.setattr(TillRoute, "_record_in", spy)
    return seen


@pytest.fixture
def plain(db) -> Any:
    """The same database behind the FastAPI routes alone."""
    from patron.app import create_app

    with TestClient(create_app(db=db, till_route=False)) as test_client:
        yield test_client


@pytest.fixture
def kim(client, pos, bakery, frozen) -> dict[str, Any]:
    return enroll(client, pos, name="Kim Minji", phone="010-1234-5678")


def body(external_id: str, amount: Any = 25800, **extra: Any) -> dict[str, Any]:
    return {"external_id": external_id, "member": {"phone": "010-1234-5678"}, "amount": amount}


def test_a_known_key_is_answered_directly_with_the_framework_answer(
    client, plain, pos, reader, kim, taken
):
    clock.freeze(clock.now())
    first = client.post(f"{P}/purchases", json=body("T-1"), headers=pos)
    assert first.status_code == 201, first.text
    # The key was already cached by enrolling kim: the sale took the direct route.
    assert taken == ["T-1"]
    assert first.json()["points_earned"] == 250
    assert first.json()["totals"]["balance"] == 250

    # The framework alone replays the very same stored answer.
    assert plain.post(f"{P}/purchases", json=body("T-1"), headers=pos).json() == first.json()
    # And a sale recorded by the framework is replayed identically by the direct route.
    framework = plain.post(f"{P}/purchases", json=body("T-2", 1000), headers=pos)
    assert framework.status_code == 201
    assert client.post(f"{P}/purchases", json=body("T-2", 1000), headers=pos).json() == (
        framework.json()
    )
    assert taken == ["T-1", "T-2"]
    account = client.get(f"{P}/members/{kim['id']}/account", headers=reader).json()
    assert account["totals"]["balance"] == 260


def test_a_new_key_goes_through_the_framework_first(db, app, bakery, kim, keys, taken):
    from patron import http

    http.forget_keys()
    with TestClient(app) as fresh:
        one = fresh.post(f"{P}/purchases", json=body("K-1"), headers=auth(keys["pos"]))
        two = fresh.post(f"{P}/purchases", json=body("K-2"), headers=auth(keys["pos"]))
    assert one.status_code == two.status_code == 201
    assert taken == ["K-2"]  # the first call authenticated the key, the second used the cache


REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("not JSON", {"content": b"{not json", "headers": {"Content-Type": "application/json"}}),
    ("missing member", {"json": {"external_id": "E-1", "amount": 100}}),
    ("negative amount", {"json": body("E-2", -5)}),
    ("unknown field", {"json": {**body("E-3"), "colour": "red"}}),
    ("text body", {"content": b"external_id=E-4", "headers": {"Content-Type": "text/plain"}}),
    ("unknown member", {"json": {**body("E-5"), "member": {"phone": "010-9999-0000"}}}),
    ("wrong currency", {"json": {**body("E-6"), "currency": "USD"}}),
    ("too many points", {"json": {**body("E-7"), "points_to_spend": 5000}}),
    ("long idempotency key", {"json": body("E-8"), "headers": {"Idempotency-Key": "k" * 201}}),
    ("array body", {"json": [body("E-9")]}),
]


@pytest.mark.parametrize("label,request_kw", REQUESTS, ids=[label for label, _ in REQUESTS])
def test_rejections_are_answered_as_the_framework_answers_them(
    client, plain, pos, reader, kim, taken, label, request_kw
):
    kw = {**request_kw, "headers": {**pos, **request_kw.get("headers", {})}}
    direct = client.post(f"{P}/purchases", **kw)
    framework = plain.post(f"{P}/purchases", **kw)
    assert direct.status_code == framework.status_code, label
    assert 400 <= direct.status_code < 500, direct.text
    assert direct.json() == framework.json()
    assert set(direct.json()) == {"error", "detail"}
    # Nothing was written by either.
    assert client.get(f"{P}/members/{kim['id']}/entries", headers=reader).json()["items"] == []


@pytest.mark.parametrize(
    "path,headers_of",
    [
        (f"{P}/purchases", lambda keys: {}),  # no key
        (f"{P}/purchases", lambda keys: auth("not-a-key")),
        (f"{P}/purchases", lambda keys: auth(keys["read"])),  # read scope only
        ("/api/v1/programs/Bakery!/purchases", lambda keys: auth(keys["pos"])),  # bad code
        ("/api/v1/programs/nowhere/purchases", lambda keys: auth(keys["pos"])),  # no program
    ],
)
def test_callers_and_paths_are_judged_as_the_framework_judges_them(
    client, plain, keys, kim, taken, path, headers_of
):
    headers = headers_of(keys)
    # Cache every key first, so the direct route could take the request if it were wrong to.
    client.get(f"{P}/members/{kim['id']}", headers=auth(keys["read"]))
    direct = client.post(path, json=body("C-1"), headers=headers)
    framework = plain.post(path, json=body("C-1"), headers=headers)
    assert (direct.status_code, direct.json()) == (framework.status_code, framework.json())
    assert direct.status_code in (401, 403, 404, 422)


def test_idempotency_key_replays_and_conflicts_through_the_direct_route(
    client, plain, pos, kim, taken
):
    headers = {**pos, "Idempotency-Key": "till-7-0001"}
    first = client.post(f"{P}/purchases", json=body("I-1"), headers=headers)
    again = client.post(f"{P}/purchases", json=body("I-1"), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = client.post(f"{P}/purchases", json=body("I-2"), headers=headers)
    framework = plain.post(f"{P}/purchases", json=body("I-2"), headers=headers)
    assert other.status_code == framework.status_code == 409
    assert other.json() == framework.json()
    assert taken == ["I-1", "I-1", "I-2"]


def test_other_methods_and_paths_are_not_touched(client, pos, reader, kim, taken):
    client.post(f"{P}/purchases", json=body("O-1"), headers=pos)
    got = client.get(f"{P}/purchases/O-1", headers=reader)
    assert got.status_code == 200 and got.json()["external_id"] == "O-1"
    wrong = client.put(f"{P}/purchases", json=body("O-2"), headers=pos)
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
    assert taken == ["O-1"]
