"""A publish that moves total points by more than the threshold (default ±10 %) needs an explicit
confirmation (issue 16 item 11), enforced by the server at publish on every path: the change is
replayed then (the last 30 days, the rules in force against the new ones), never taken from a
preview or a form field. Over HTTP on both engines; the admin form is in
tests/admin/test_rules_pages.py and tests/admin/test_rules_confirmation.py."""

from __future__ import annotations

from typing import Any

import pytest

from patron import clock
from patron.config import get_settings
from tests.conftest import T0
from tests.rules.test_rules_api import BASE, P, admin, bakery, current, kim, pos, reader, sale

__all__ = ["admin", "bakery", "kim", "pos", "reader"]

CONFIRM = {"confirm_large_change": "true"}


@pytest.fixture
def month(client, pos, kim) -> None:
    """Kim's purchases of the last 30 days: 250 + 100 points under the base rate."""
    assert sale(client, pos, "C-1", 25800).status_code == 201
    clock.freeze(T0.replace(hour=5))
    assert sale(client, pos, "C-2", 10000).status_code == 201


def doubled() -> dict[str, Any]:
    return {"rules": [{**BASE, "points": 20}]}


def refused(response, percent: str) -> None:
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["error"] == "confirmation_required"
    assert percent in body["detail"] and "confirm_large_change=true" in body["detail"]


def test_a_whole_document_beyond_the_threshold_needs_the_confirmation(client, admin, reader, month):
    headers = {**admin, "Idempotency-Key": "double-1"}
    answer = client.put(f"{P}/rules", json=doubled(), headers=headers)
    refused(answer, "+100.0% (350 → 700")
    assert current(client, reader)["version"] == 1
    # Confirmed (the same key: the refusal stored no answer), it publishes.
    answer = client.put(f"{P}/rules", json=doubled(), headers=headers, params=CONFIRM)
    assert answer.status_code == 200, answer.text
    assert current(client, reader)["version"] == 2
    # Exactly +10 % is not more than the threshold: 700 → 770.
    answer = client.put(f"{P}/rules", json={"rules": [{**BASE, "points": 22}]}, headers=admin)
    assert answer.status_code == 200, answer.text
    assert current(client, reader)["version"] == 3


def test_each_single_rule_edit_is_checked(client, admin, reader, month):
    promo = {"id": "double", "kind": "promotion", "factor": "2"}
    refused(client.post(f"{P}/rules/items", json=promo, headers=admin), "+100.0%")
    refused(
        client.put(f"{P}/rules/items/base", json={**BASE, "points": 5}, headers=admin), "-50.0%"
    )
    refused(client.delete(f"{P}/rules/items/base", headers=admin), "-100.0%")
    assert current(client, reader)["version"] == 1
    # A small change needs nothing: a ×1.05 promotion (less than +10 %).
    small = {"id": "small", "kind": "promotion", "factor": "1.05"}
    added = client.post(f"{P}/rules/items", json=small, headers=admin)
    assert added.status_code == 201, added.text
    for response in (
        client.post(f"{P}/rules/items", json=promo, headers=admin, params=CONFIRM),
        client.put(f"{P}/rules/items/double", json={**promo, "factor": "3"}, headers=admin,
                   params=CONFIRM),
        client.delete(f"{P}/rules/items/double", headers=admin, params=CONFIRM),
    ):  # fmt: skip
        assert response.status_code in (200, 201), response.text
    assert current(client, reader)["version"] == 5


def test_the_change_is_replayed_at_publish_not_taken_from_an_earlier_what_if(
    client, admin, pos, reader, kim
):
    """A what-if run before the month's sales has no points to compare; the publish after
    them replays again, and refuses."""
    body = {"rules": doubled(), "from": "2026-02-01", "to": "2026-03-02"}
    before = client.post(f"{P}/rules/simulate", json=body, headers=reader)
    assert before.status_code == 200, before.text
    assert (before.json()["current_points"], before.json()["proposed_points"]) == (0, 0)
    assert sale(client, pos, "C-1", 25800).status_code == 201
    refused(client.put(f"{P}/rules", json=doubled(), headers=admin), "+100.0% (250 → 500")


def test_the_threshold_is_a_setting(client, admin, reader, month, monkeypatch):
    monkeypatch.setenv("PATRON_RULES_CONFIRM_PERCENT", "150")
    get_settings.cache_clear()
    try:
        answer = client.put(f"{P}/rules", json=doubled(), headers=admin)
        assert answer.status_code == 200, answer.text
    finally:
        monkeypatch.delenv("PATRON_RULES_CONFIRM_PERCENT")
        get_settings.cache_clear()


def test_openapi_declares_the_confirmation(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path, method in (
        ("/api/v1/programs/{code}/rules", "put"),
        ("/api/v1/programs/{code}/rules/items", "post"),
        ("/api/v1/programs/{code}/rules/items/{rule_id}", "put"),
        ("/api/v1/programs/{code}/rules/items/{rule_id}", "delete"),
    ):
        operation = paths[path][method]
        assert "confirmation_required" in operation["responses"]["409"]["description"], path
        params = {p["name"]: p for p in operation["parameters"]}
        assert params["confirm_large_change"]["schema"]["type"] == "boolean", path
