"""Merge and transfer through HTTP and the CLI (engine-independent: SQLite only; the
services run on both engines in test_moves_service.py)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from patron.cli import app as cli_app
from patron.config import get_settings
from tests.api.helpers import enroll


@pytest.fixture(autouse=True)
def _sqlite_only(db) -> None:
    if db.dialect != "sqlite":
        pytest.skip("HTTP and CLI shapes do not depend on the engine")


def _earn(client, pos, member_id: int, order: str, amount: int) -> None:
    body = {
        "external_id": order,
        "member": {"id": member_id},
        "amount": str(amount),
        "store": "mapo",
    }
    response = client.post("/api/v1/programs/bakery/purchases", json=body, headers=pos)
    assert response.status_code in (200, 201), response.text


@pytest.fixture
def two(client, admin, pos, bakery, frozen) -> tuple[dict[str, Any], dict[str, Any]]:
    a = enroll(client, admin, name="Kim A", phone="010-1111-2222", cards=[{"number": "CARD-0001"}])
    b = enroll(client, admin, name="Kim B", phone="010-3333-4444")
    _earn(client, pos, a["id"], "A-1", 200_000)
    _earn(client, pos, b["id"], "B-1", 50_000)
    return a, b


def test_merge_over_http_redirects_the_old_id(client, admin, reader, two):
    a, b = two
    url = f"/api/v1/members/{a['id']}/merge"
    response = client.post(url, json={"into": b["id"], "reason": "same person"}, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["programs"][0]["points"] == 2000
    again = client.post(url, json={"into": b["id"], "reason": "same person"}, headers=admin)
    assert again.json() == response.json()
    old = client.get(f"/api/v1/members/{a['id']}", headers=reader, follow_redirects=False)
    assert old.status_code == 308 and old.headers["location"] == f"/api/v1/members/{b['id']}"
    for query in ("phone=010-1111-2222", "card=CARD-0001"):
        found = client.get(f"/api/v1/members/lookup?{query}&program=bakery", headers=reader)
        assert found.status_code == 200 and found.json()["id"] == b["id"], query
    account = client.get(f"/api/v1/programs/bakery/members/{b['id']}/account", headers=reader)
    assert account.json()["totals"]["available"] == 2500
    entries = client.get(f"/api/v1/programs/bakery/members/{b['id']}/entries", headers=reader)
    assert "merge_in" in {e["kind"] for e in entries.json()["items"]}
    schema = client.get("/openapi.json").json()
    assert "308" in schema["paths"]["/api/v1/members/{member_id}"]["get"]["responses"]


def test_merge_refusals_over_http(client, admin, pos, two):
    a, b = two

    def post(member_id: int, body: dict[str, Any], headers=admin):
        return client.post(f"/api/v1/members/{member_id}/merge", json=body, headers=headers)

    assert post(a["id"], {"into": b["id"], "reason": "x"}, pos).status_code == 403
    same = post(a["id"], {"into": a["id"], "reason": "x"})
    assert (same.status_code, same.json()["error"]) == (422, "same_member")
    assert post(a["id"], {"into": b["id"]}).status_code == 422
    missing = post(a["id"], {"into": 999_999, "reason": "x"})
    assert (missing.status_code, missing.json()["error"]) == (404, "member_not_found")
    assert post(a["id"], {"into": b["id"], "reason": "x"}).status_code == 200
    again = post(b["id"], {"into": a["id"], "reason": "x"})
    assert (again.status_code, again.json()["error"]) == (409, "already_merged")


def test_transfer_over_http(client, admin, pos, two):
    a, b = two
    url = f"/api/v1/programs/bakery/members/{a['id']}/transfers"
    body = {"to_member": b["id"], "points": 700, "note": "for lunch", "idempotency_key": "k1"}
    off = client.post(url, json=body, headers=pos)
    assert (off.status_code, off.json()["error"]) == (409, "transfers_disabled")
    settings = {"enabled": True, "max_per_transfer": 1000, "max_per_day": 1500}
    put = client.put("/api/v1/programs/bakery/transfer-settings", json=settings, headers=admin)
    assert put.status_code == 200 and put.json() == settings
    assert (
        client.put(
            "/api/v1/programs/bakery/transfer-settings", json=settings, headers=pos
        ).status_code
        == 403
    )
    done = client.post(url, json=body, headers=pos)
    assert done.status_code == 200, done.text
    assert (done.json()["sender_balance"], done.json()["receiver_balance"]) == (1300, 1200)
    replay = client.post(url, json=body, headers=pos)
    assert (
        replay.json()["replayed"] and replay.json()["out_entry_id"] == done.json()["out_entry_id"]
    )
    for change, code in (
        ({"points": 1001, "idempotency_key": "k2"}, "over_transfer_limit"),
        ({"points": 900, "idempotency_key": "k3"}, "over_daily_limit"),
        ({"points": 5, "idempotency_key": "k1"}, "idempotency_conflict"),
    ):
        refused = client.post(url, json=body | change, headers=pos)
        assert (refused.status_code, refused.json()["error"]) == (409, code), change
    bad = client.post(url, json=body | {"points": -3}, headers=pos)
    assert bad.status_code == 422
    history = client.get(f"/api/v1/programs/bakery/members/{b['id']}/entries", headers=pos)
    ins = [e for e in history.json()["items"] if e["kind"] == "transfer_in"]
    assert ins and ins[0]["details"]["transfer"]["from_member_id"] == a["id"]


def test_cli_merge_and_transfer(db, client, admin, two, monkeypatch):
    a, b = two
    monkeypatch.setenv("PATRON_DATABASE_URL", db.url)
    get_settings.cache_clear()
    runner = CliRunner()
    client.put("/api/v1/programs/bakery/transfer-settings", json={"enabled": True}, headers=admin)
    out = runner.invoke(
        cli_app,
        [
            "points",
            "transfer",
            str(a["id"]),
            str(b["id"]),
            "300",
            "--program",
            "bakery",
            "--key",
            "c1",
            "--database-url",
            db.url,
        ],
    )
    assert out.exit_code == 0, out.output
    assert "300 points" in out.output
    out = runner.invoke(
        cli_app,
        [
            "members",
            "merge",
            str(a["id"]),
            str(b["id"]),
            "--reason",
            "duplicate",
            "--database-url",
            db.url,
        ],
    )
    assert out.exit_code == 0, out.output
    assert f"merged into member {b['id']}" in out.output
    refused = runner.invoke(
        cli_app,
        ["members", "merge", str(b["id"]), str(b["id"]), "--reason", "x", "--database-url", db.url],
    )
    assert refused.exit_code == 2 and "same_member" in refused.output
    get_settings.cache_clear()
