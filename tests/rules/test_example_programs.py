"""The four example programs of PRODUCT.md as rule sets, run through the HTTP API to the point."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from patron import clock
from patron.ledger.models import Account
from tests.conftest import auth
from tests.factories import BAKERY, SHANGHAI

API = "/api/v1"


def _setup(client, keys, program: dict, rules: dict) -> None:
    admin = auth(keys["admin"])
    assert client.post(f"{API}/programs", json=program, headers=admin).status_code == 201
    for store in ("mapo", "gangnam"):
        client.post(
            f"{API}/programs/{program['code']}/stores",
            headers=admin,
            json={"code": store, "name": store.title()},
        )
    response = client.put(f"{API}/programs/{program['code']}/rules", json=rules, headers=admin)
    assert response.status_code in (200, 201), response.text
    assert response.json()["version"] == 2


def _member(client, keys, code: str, name: str) -> int:
    response = client.post(
        f"{API}/members", json={"name": name, "program": code}, headers=auth(keys["pos"])
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _set_tier(db, member_id: int, tier: str) -> None:
    # Tier qualification is its own feature; here the account simply carries the code.
    with db.unit_of_work() as session:
        session.execute(update(Account).where(Account.member_id == member_id).values(tier=tier))


def _buy(
    client,
    keys,
    code: str,
    member_id: int,
    ext: str,
    amount: str,
    *,
    at: datetime,
    lines: list[dict] | None = None,
) -> dict:
    clock.freeze(at)
    body = {
        "external_id": ext,
        "member": {"id": member_id},
        "amount": amount,
        "occurred_at": at.isoformat(),
        "store": "mapo",
    }
    if lines:
        body["lines"] = lines
    response = client.post(f"{API}/programs/{code}/purchases", json=body, headers=auth(keys["pos"]))
    assert response.status_code == 201, response.text
    return response.json()


MONDAY_NOON_SEOUL = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def test_corner_bakery(client, keys, db, frozen):
    rules = {
        "rules": [
            {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"},
            {
                "id": "seasonal-cake",
                "name": "Seasonal cake",
                "kind": "product_bonus",
                "match": {"skus": ["seasonal-cake"]},
                "points_per_unit": 200,
            },
            {"id": "tiers", "kind": "tier_multiplier", "factors": {"silver": "1.5", "gold": "2"}},
        ]
    }
    _setup(client, keys, BAKERY, rules)
    basic, silver, gold = (_member(client, keys, "bakery", n) for n in ("Basic", "Silver", "Gold"))
    _set_tier(db, silver, "silver")
    _set_tier(db, gold, "gold")

    sale = _buy(client, keys, "bakery", basic, "B-1", "25800", at=MONDAY_NOON_SEOUL)
    assert sale["points_earned"] == 250
    assert sale["entries"][0]["rule_version"] == 2
    cake = _buy(
        client,
        keys,
        "bakery",
        basic,
        "B-2",
        "39800",
        at=MONDAY_NOON_SEOUL,
        lines=[
            {
                "id": "1",
                "sku": "seasonal-cake",
                "category": "cake",
                "quantity": 1,
                "amount": "32000",
            },
            {"id": "2", "sku": "latte", "category": "drink", "quantity": 1, "amount": "7800"},
        ],
    )
    assert cake["points_earned"] == 390 + 200
    assert (
        _buy(client, keys, "bakery", silver, "S-1", "25800", at=MONDAY_NOON_SEOUL)["points_earned"]
        == 375
    )
    assert (
        _buy(client, keys, "bakery", gold, "G-1", "25800", at=MONDAY_NOON_SEOUL)["points_earned"]
        == 500
    )


def test_shanghai_department_store(client, keys, db, frozen):
    rules = {
        "rules": [
            {
                "id": "base",
                "kind": "base_rate",
                "mode": "proportional",
                "points": 1,
                "per_amount": "1",
                "rounding": "down",
            },
            {
                "id": "double-week",
                "name": "Double points week",
                "kind": "promotion",
                "factor": "2",
                "starts": "2026-03-09",
                "ends": "2026-03-15",
            },
        ]
    }
    _setup(client, keys, SHANGHAI, rules)
    member = _member(client, keys, "shanghai", "王芳")
    assert (
        _buy(client, keys, "shanghai", member, "S-1", "25.80", at=MONDAY_NOON_SEOUL)[
            "points_earned"
        ]
        == 25
    )
    in_week = datetime(2026, 3, 15, 15, 59, tzinfo=UTC)  # 23:59 on the last day in Shanghai
    assert _buy(client, keys, "shanghai", member, "S-2", "25.80", at=in_week)["points_earned"] == 50
    after = datetime(2026, 3, 15, 16, 0, tzinfo=UTC)  # midnight: the week is over
    assert _buy(client, keys, "shanghai", member, "S-3", "25.80", at=after)["points_earned"] == 25


@pytest.mark.parametrize(("combine", "saturday_december"), [("multiply", 100), ("add", 150)])
def test_golf_and_spa_club(client, keys, db, frozen, combine, saturday_december):
    club = {**BAKERY, "code": "club", "name": "Golf & Spa Club"}
    rules = {
        "combine": combine,
        "rules": [
            {"id": "base", "kind": "base_rate", "points": 1, "per_amount": "1000"},
            {"id": "weekend", "kind": "time_weight", "days": ["sat", "sun"], "factor": "0.5"},
            {
                "id": "mornings",
                "kind": "time_weight",
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "from_time": "06:00",
                "to_time": "11:00",
                "factor": "1.2",
            },
            {
                "id": "december",
                "kind": "promotion",
                "factor": "2",
                "starts": "2026-12-01",
                "ends": "2026-12-31",
            },
        ],
    }
    _setup(client, keys, club, rules)
    member = _member(client, keys, "club", "최지우")
    seoul = lambda *a: datetime(*a, tzinfo=UTC)  # noqa: E731 - UTC instants, 9 h behind Seoul
    assert (
        _buy(client, keys, "club", member, "C-1", "100000", at=seoul(2026, 3, 7, 1, 0))[
            "points_earned"
        ]
        == 50
    )  # Saturday 10:00
    assert (
        _buy(client, keys, "club", member, "C-2", "100000", at=seoul(2026, 3, 3, 1, 59))[
            "points_earned"
        ]
        == 120
    )  # Tuesday 10:59
    assert (
        _buy(client, keys, "club", member, "C-3", "100000", at=seoul(2026, 3, 3, 2, 0))[
            "points_earned"
        ]
        == 100
    )  # Tuesday 11:00
    december = _buy(client, keys, "club", member, "C-4", "100000", at=seoul(2026, 12, 5, 1, 0))
    assert december["points_earned"] == saturday_december  # Saturday in December
    kinds = [s["rule"] for s in december["entries"][0]["breakdown"] if s["applied"]]
    assert kinds[:3] == ["base", "weekend", "december"]

    explanation = client.get(
        f"{API}/programs/club/entries/{december['entries'][0]['id']}/explanation",
        params={"language": "en"},
        headers=auth(keys["read"]),
    )
    assert explanation.status_code == 200, explanation.text
    text = explanation.json()["text"]
    assert "100,000 KRW" in text and "×0.5" in text and f"{saturday_december} points" in text


def test_fashion_retailer_tiers(client, keys, db, frozen):
    fashion = {**SHANGHAI, "code": "fashion", "name": "Fashion POS"}
    rules = {
        "rules": [
            {
                "id": "base",
                "kind": "base_rate",
                "mode": "proportional",
                "points": 1,
                "per_amount": "1",
                "rounding": "down",
            },
            {
                "id": "tiers",
                "kind": "tier_multiplier",
                "factors": {"regular": "1", "silver": "1.2", "gold": "1.5"},
            },
        ]
    }
    _setup(client, keys, fashion, rules)
    ids = {tier: _member(client, keys, "fashion", tier) for tier in ("regular", "silver", "gold")}
    for tier, member in ids.items():
        _set_tier(db, member, tier)
    got = {
        tier: _buy(client, keys, "fashion", member, f"F-{tier}", "199.90", at=MONDAY_NOON_SEOUL)[
            "points_earned"
        ]
        for tier, member in ids.items()
    }
    # The base rate rounds first (199), then factors apply: 199 × 1.2 = 238.8 → 238.
    assert got == {"regular": 199, "silver": 238, "gold": 298}
