"""API keys: 401 for a missing, malformed, wrong or revoked key; 403 for a missing scope."""

from __future__ import annotations

import pytest

from tests.conftest import auth
from tests.factories import BAKERY

MEMBER = {"name": "Kim", "program": "bakery"}


def test_no_key_is_401_with_the_error_shape(client, keys):
    response = client.get("/api/v1/programs")
    assert response.status_code == 401
    assert response.json() == {
        "error": "missing_api_key",
        "detail": "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key'",
    }


@pytest.mark.parametrize("raw", ["not-a-key", "ptr_only-two", "xyz_abc_def", "ptr__"])
def test_malformed_key_is_401(client, keys, raw):
    response = client.get("/api/v1/programs", headers=auth(raw))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_api_key"


def test_wrong_secret_is_401(client, keys):
    prefix = keys["admin"].rsplit("_", 1)[0]
    response = client.get("/api/v1/programs", headers=auth(f"{prefix}_wrongsecret"))
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_api_key", "detail": "the API key is not valid"}


def test_unknown_prefix_is_401(client, keys):
    response = client.get("/api/v1/programs", headers=auth("ptr_000000000000_secret"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_api_key"


def test_x_api_key_header_works_like_bearer(client, keys):
    response = client.get("/api/v1/programs", headers={"X-API-Key": keys["read"]})
    assert response.status_code == 200
    assert response.json() == []


def test_pos_key_cannot_call_admin_endpoints(client, keys):
    pos = auth(keys["pos"])
    calls = [
        client.post("/api/v1/programs", json=BAKERY, headers=pos),
        client.patch("/api/v1/programs/bakery", json={"name": "X"}, headers=pos),
        client.post("/api/v1/api-keys", json={"name": "k", "scopes": ["pos"]}, headers=pos),
        client.get("/api/v1/api-keys", headers=pos),
        client.get("/api/v1/audit", headers=pos),
        client.post("/api/v1/expire", json={}, headers=pos),
        client.get("/api/v1/check", headers=pos),
        client.post("/api/v1/members/1/block", json={"reason": "fraud"}, headers=pos),
        client.post(
            "/api/v1/programs/bakery/adjustments",
            json={"member": {"id": 1}, "points": 10, "reason": "goodwill"},
            headers=pos,
        ),
    ]
    for response in calls:
        assert response.status_code == 403, (response.request.url, response.text)
        assert response.json() == {
            "error": "missing_scope",
            "detail": "this call needs the admin scope",
        }


def test_read_key_cannot_purchase_or_enroll(client, keys):
    created = client.post("/api/v1/programs", json=BAKERY, headers=auth(keys["admin"]))
    assert created.status_code == 201
    read = auth(keys["read"])
    sale = client.post(
        "/api/v1/programs/bakery/purchases",
        headers=read,
        json={"external_id": "A-1", "member": {"id": 1}, "amount": 1000},
    )
    assert sale.status_code == 403
    assert sale.json() == {"error": "missing_scope", "detail": "this call needs the pos scope"}
    member = client.post("/api/v1/members", json=MEMBER, headers=read)
    assert member.status_code == 403
    # ...but it can read.
    assert client.get("/api/v1/programs/bakery", headers=read).status_code == 200


def test_key_created_through_the_api_works_and_is_audited(client, keys):
    admin = auth(keys["admin"])
    created = client.post(
        "/api/v1/api-keys", json={"name": "till 7", "scopes": ["pos"]}, headers=admin
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "till 7"
    assert body["scopes"] == ["pos"]
    assert body["revoked_at"] is None
    assert body["key"].startswith(f"ptr_{body['prefix']}_")

    # The new key can do pos work and nothing more.
    assert client.post("/api/v1/programs", json=BAKERY, headers=admin).status_code == 201
    new = auth(body["key"])
    assert client.post("/api/v1/members", json=MEMBER, headers=new).status_code == 201
    assert client.get("/api/v1/audit", headers=new).status_code == 403

    # The secret is never listed again.
    listed = client.get("/api/v1/api-keys", headers=admin).json()
    assert [k["name"] for k in listed] == ["admin key", "pos key", "read key", "till 7"]
    assert all("key" not in k for k in listed)

    audit = client.get(
        "/api/v1/audit",
        params={"action": "apikey.created", "subject_id": str(body["id"])},
        headers=admin,
    )
    assert audit.status_code == 200
    [record] = audit.json()
    assert record["subject_type"] == "api_key"
    assert record["after"] == {
        "name": "till 7",
        "scopes": ["pos"],
        "prefix": body["prefix"],
        "programs": None,
        "stores": None,
    }
    admin_id = listed[0]["id"]
    assert record["actor"] == f"api_key:{admin_id}"


def test_revoked_key_is_401_at_once(client, keys):
    admin = auth(keys["admin"])
    created = client.post(
        "/api/v1/api-keys", json={"name": "temp", "scopes": ["read"]}, headers=admin
    ).json()
    temp = auth(created["key"])
    assert client.get("/api/v1/programs", headers=temp).status_code == 200  # now cached

    revoked = client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None

    response = client.get("/api/v1/programs", headers=temp)
    assert response.status_code == 401
    assert response.json() == {"error": "revoked_api_key", "detail": "the API key was revoked"}
    actions = [
        r["action"]
        for r in client.get(
            "/api/v1/audit",
            params={"subject_type": "api_key", "subject_id": str(created["id"])},
            headers=admin,
        ).json()
    ]
    assert actions == ["apikey.revoked", "apikey.created"]


def test_revoking_an_unknown_key_is_404(client, keys):
    response = client.delete("/api/v1/api-keys/999", headers=auth(keys["admin"]))
    assert response.status_code == 404
    assert response.json()["error"] == "api_key_not_found"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "k", "scopes": ["root"]}, None),
        ({"name": "k", "scopes": []}, "scopes"),
        ({"name": "", "scopes": ["pos"]}, "name"),
        ({"name": "k", "scopes": ["pos"], "extra": 1}, "extra"),
    ],
)
def test_bad_key_requests_are_422(client, keys, body, field):
    response = client.post("/api/v1/api-keys", json=body, headers=auth(keys["admin"]))
    assert response.status_code == 422, response.text
    if field is None:
        assert response.json()["error"] == "invalid_scope"
    else:
        assert response.json()["error"] == "validation_error"
        assert response.json()["detail"].startswith(f"{field}:")
