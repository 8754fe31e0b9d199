"""Programs over HTTP: validation names the field, duplicates conflict, changes are audited."""

from __future__ import annotations

import pytest

from tests.factories import BAKERY, SHANGHAI


def test_create_returns_the_program(client, admin):
    response = client.post("/api/v1/programs", json=BAKERY, headers=admin)
    assert response.status_code == 201, response.text
    body = response.json()
    assert {
        k: body[k]
        for k in (
            "code",
            "currency",
            "timezone",
            "country",
            "negative_balance",
            "rule_version",
            "pending_days",
        )
    } == {
        "code": "bakery",
        "currency": "KRW",
        "timezone": "Asia/Seoul",
        "country": "KR",
        "negative_balance": "allow_debt",
        "rule_version": 1,
        "pending_days": 0,
    }
    assert body["earning"] == {
        "mode": "per_full_unit",
        "points": 10,
        "per_amount": "1000",
        "rounding": "down",
    }
    assert body["expiry"] == {"kind": "months", "months": 12, "days": None}
    assert body["redemption"] == {"min_points": 1000, "step": 10, "max_share": "1"}

    assert client.get("/api/v1/programs/bakery", headers=admin).json() == body
    assert [p["code"] for p in client.get("/api/v1/programs", headers=admin).json()] == ["bakery"]


def test_country_defaults_from_currency(client, admin):
    body = client.post("/api/v1/programs", json=SHANGHAI, headers=admin).json()
    assert body["country"] == "CN"
    assert body["point_value"] == "0.01"


def _with(**changes):
    data = {**BAKERY}
    for dotted, value in changes.items():
        target = data
        *path, last = dotted.split("__")
        for part in path:
            target[part] = {**target[part]}
            target = target[part]
        target[last] = value
    return data


@pytest.mark.parametrize(
    "body, field, words",
    [
        (_with(currency="XYZ"), "currency", "unsupported currency 'XYZ'"),
        (_with(currency="krw"), "currency", "unsupported currency 'krw'"),
        (_with(timezone="Asia/Nowhere"), "timezone", "unknown IANA timezone 'Asia/Nowhere'"),
        (_with(timezone="../../etc/passwd"), "timezone", "unknown IANA timezone"),
        (
            _with(expiry__months=0),
            "expiry",
            "expiry.months must be at least 1 when kind is 'months'",
        ),
        (_with(redemption__max_share="1.5"), "redemption.max_share", "less than or equal to 1"),
        (_with(redemption__max_share="0"), "redemption.max_share", "greater than 0"),
        (_with(earning__per_amount="0"), "earning.per_amount", "greater than 0"),
        (_with(earning__mode="double"), "earning.mode", "'per_full_unit' or 'proportional'"),
        (_with(code="Bad Code"), "code", "should match pattern"),
        (_with(country="kr"), "country", "two upper-case letters"),
        (_with(pending_days=-1), "pending_days", "greater than or equal to 0"),
        ({**BAKERY, "loyalty_tiers": 5}, "loyalty_tiers", "Extra inputs are not permitted"),
        (_with(earning__bonus=1), "earning.bonus", "Extra inputs are not permitted"),
    ],
)
def test_invalid_program_is_422_naming_the_field(client, admin, body, field, words):
    response = client.post("/api/v1/programs", json=body, headers=admin)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error"
    assert error["detail"].startswith(f"{field}: "), error["detail"]
    assert words in error["detail"]
    assert client.get("/api/v1/programs", headers=admin).json() == []


def test_missing_field_is_named(client, admin):
    body = {k: v for k, v in BAKERY.items() if k != "earning"}
    response = client.post("/api/v1/programs", json=body, headers=admin)
    assert response.status_code == 422
    assert response.json() == {"error": "validation_error", "detail": "earning: Field required"}


def test_per_amount_finer_than_the_currency_is_422(client, admin):
    response = client.post("/api/v1/programs", json=_with(earning__per_amount="0.5"), headers=admin)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_amount"
    assert "earning.per_amount 0.5" in response.json()["detail"]


def test_broken_json_is_400(client, admin):
    response = client.post(
        "/api/v1/programs",
        content=b'{"code": ',
        headers={**admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_json",
        "detail": "the request body is not valid JSON",
    }


def test_duplicate_program_is_409(client, admin):
    assert client.post("/api/v1/programs", json=BAKERY, headers=admin).status_code == 201
    again = client.post("/api/v1/programs", json={**BAKERY, "name": "Other"}, headers=admin)
    assert again.status_code == 409
    assert again.json() == {
        "error": "duplicate_program",
        "detail": "a program with code 'bakery' already exists",
    }


def test_unknown_program_is_404(client, admin):
    response = client.get("/api/v1/programs/nope", headers=admin)
    assert response.status_code == 404
    assert response.json() == {
        "error": "program_not_found",
        "detail": "no program with code 'nope'",
    }


def test_patch_changes_fields_and_audits_before_after(client, admin, frozen):
    from datetime import timedelta

    from patron import clock

    client.post("/api/v1/programs", json=BAKERY, headers=admin)
    clock.freeze(frozen + timedelta(hours=1))
    response = client.patch(
        "/api/v1/programs/bakery",
        headers=admin,
        json={
            "name": "Corner Bakery Mapo",
            "earning": {"mode": "per_full_unit", "points": 20, "per_amount": "1000"},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "Corner Bakery Mapo"
    assert body["earning"]["points"] == 20
    assert body["rule_version"] == 2
    assert body["updated_at"] == "2026-03-02T04:00:00Z"
    assert body["created_at"] == "2026-03-02T03:00:00Z"
    assert body["timezone"] == "Asia/Seoul"  # untouched

    records = client.get(
        "/api/v1/audit", params={"subject_type": "program", "subject_id": "bakery"}, headers=admin
    ).json()
    assert [r["action"] for r in records] == [
        "program.updated",
        "rules.published",
        "rules.published",
        "program.created",
    ]
    update = records[0]
    assert update["before"] == {
        "name": "Corner Bakery",
        "earning": {
            "mode": "per_full_unit",
            "points": 10,
            "per_amount": "1000",
            "rounding": "down",
        },
        "rule_version": 1,
    }
    assert update["after"] == {
        "name": "Corner Bakery Mapo",
        "earning": {
            "mode": "per_full_unit",
            "points": 20,
            "per_amount": "1000",
            "rounding": "down",
        },
        "rule_version": 2,
    }


def test_patch_without_change_writes_no_audit(client, admin):
    client.post("/api/v1/programs", json=BAKERY, headers=admin)
    response = client.patch(
        "/api/v1/programs/bakery", json={"name": "Corner Bakery"}, headers=admin
    )
    assert response.status_code == 200
    assert response.json()["rule_version"] == 1
    actions = [
        r["action"]
        for r in client.get(
            "/api/v1/audit", params={"subject_type": "program"}, headers=admin
        ).json()
    ]
    assert actions == ["rules.published", "program.created"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"currency": "USD"}, "currency"),  # the currency cannot change
        ({"redemption": {"max_share": "2"}}, "redemption.max_share"),
        ({"expiry": {"kind": "months", "months": 0}}, "expiry"),
    ],
)
def test_invalid_patch_is_422_and_changes_nothing(client, admin, body, field):
    created = client.post("/api/v1/programs", json=BAKERY, headers=admin).json()
    response = client.patch("/api/v1/programs/bakery", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"{field}: ")
    assert client.get("/api/v1/programs/bakery", headers=admin).json() == created


def test_patch_unknown_program_is_404(client, admin):
    response = client.patch("/api/v1/programs/ghost", json={"name": "x"}, headers=admin)
    assert response.status_code == 404
    assert response.json()["error"] == "program_not_found"


def test_stores_create_list_and_duplicate(client, admin, reader):
    client.post("/api/v1/programs", json=BAKERY, headers=admin)
    made = client.post(
        "/api/v1/programs/bakery/stores", json={"code": "mapo", "name": "Mapo"}, headers=admin
    )
    assert made.status_code == 201
    assert made.json() == {"code": "mapo", "name": "Mapo", "active": True}
    again = client.post(
        "/api/v1/programs/bakery/stores", json={"code": "mapo", "name": "M2"}, headers=admin
    )
    assert again.status_code == 409
    assert again.json()["error"] == "duplicate_store"
    assert client.get("/api/v1/programs/bakery/stores", headers=reader).json() == [made.json()]


def test_idempotency_key_replays_program_creation(client, admin):
    headers = {**admin, "Idempotency-Key": "setup-1"}
    first = client.post("/api/v1/programs", json=BAKERY, headers=headers)
    replay = client.post("/api/v1/programs", json=BAKERY, headers=headers)
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    other = client.post("/api/v1/programs", json=SHANGHAI, headers=headers)
    assert other.status_code == 409
    assert other.json()["error"] == "idempotency_conflict"
    assert [p["code"] for p in client.get("/api/v1/programs", headers=admin).json()] == ["bakery"]


def test_patch_with_a_partial_policy_uses_its_defaults(client, admin):
    """A nested policy is replaced whole; omitted fields take their defaults (was a 500)."""
    client.post("/api/v1/programs", json=BAKERY, headers=admin)
    response = client.patch(
        "/api/v1/programs/bakery",
        headers=admin,
        json={"expiry": {"kind": "none"}, "redemption": {"min_points": 500}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expiry"] == {"kind": "none", "months": 12, "days": None}
    assert body["redemption"] == {"min_points": 500, "step": 1, "max_share": "1"}
    assert body["rule_version"] == 1  # earning untouched
