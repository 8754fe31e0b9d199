"""S3 through the HTTP API: a fashion retailer's regular / silver / gold by yearly spend (CNY)."""

from __future__ import annotations

from datetime import UTC, datetime

from patron import clock
from tests.conftest import auth
from tests.factories import SHANGHAI

P = "/api/v1/programs/fashion"
SETUP = {
    "policy": {
        "metric": "spend",
        "window": "year",
        "upgrade": "immediate",
        "downgrade": "to_earned",
        "manual": "reevaluate",
    },
    "tiers": [
        {"code": "regular", "names": {"en": "Regular", "zh": "普通会员"}, "threshold": 0},
        {
            "code": "silver",
            "names": {"en": "Silver", "zh": "银卡"},
            "threshold": 500_000,
            "multiplier": "1.2",
        },
        {
            "code": "gold",
            "names": {"en": "Gold", "zh": "金卡"},
            "threshold": 2_000_000,
            "multiplier": "1.5",
        },
    ],
}


def test_fashion_tiers_by_yearly_spend(client, keys):
    admin, pos, reader = auth(keys["admin"]), auth(keys["pos"]), auth(keys["read"])
    clock.freeze(datetime(2026, 3, 2, 3, 0, tzinfo=UTC))
    program = {**SHANGHAI, "code": "fashion", "name": "Fashion POS"}
    assert client.post("/api/v1/programs", json=program, headers=admin).status_code == 201
    assert client.put(f"{P}/tiers", json=SETUP, headers=admin).status_code == 200
    member = client.post(
        "/api/v1/members",
        headers=pos,
        json={
            "name": "李娜",
            "phone": "13812345678",
            "birthday": "1990-05-01",
            "gender": "female",
            "email": "lina@example.com",
            "preferences": {"sizes": ["M"]},
            "program": "fashion",
            "cards": [
                {"number": "FS000001", "kind": "physical"},
                {"number": "FSAPP0001", "kind": "ecard"},
            ],
        },
    )
    assert member.status_code == 201, member.text
    mid = member.json()["id"]

    def sale(ext: str, amount: str) -> dict:
        response = client.post(
            f"{P}/purchases",
            headers=pos,
            json={"external_id": ext, "member": {"card": "FS000001"}, "amount": amount},
        )
        assert response.status_code == 201, response.text
        return response.json()

    assert sale("F-1", "3000.00")["points_earned"] == 3000
    progress = client.get(f"{P}/members/{mid}/tier", headers=reader).json()
    assert (progress["tier"]["code"], progress["value"], progress["to_next_money"]) == (
        "regular",
        300_000,
        "2000.00",
    )
    # Crossing 5,000 CNY makes her silver at once; silver earns ×1.2 from the next sale on.
    assert sale("F-2", "2500.00")["points_earned"] == 2500
    assert client.get(f"{P}/members/{mid}/tier", headers=reader).json()["tier"]["code"] == "silver"
    assert sale("F-3", "100.00")["points_earned"] == 120

    # A refund lowers the year's spend, but tiers only go down at the period end.
    refund = client.post(
        f"{P}/purchases/F-2/refunds", headers=pos, json={"refund_id": "F-2-R", "amount": "1000.00"}
    )
    assert refund.status_code == 201, refund.text
    progress = client.get(f"{P}/members/{mid}/tier", headers=reader).json()
    assert (progress["tier"]["code"], progress["value"], progress["to_keep_money"]) == (
        "silver",
        460_000,
        "400.00",
    )

    clock.freeze(datetime(2027, 1, 2, 0, 0, tzinfo=UTC))
    summary = client.post(f"{P}/tiers/evaluate", json={"as_of": "2027-01-01"}, headers=admin)
    assert summary.status_code == 200, summary.text
    assert summary.json()["period"] == "2026" and summary.json()["moves"] == {"silver→regular": 1}
    history = client.get(f"{P}/members/{mid}/tier-history", headers=reader).json()
    assert [(h["to_tier"], h["reason"]) for h in history] == [
        ("regular", "upgrade"),
        ("silver", "upgrade"),
        ("regular", "period_evaluation"),
    ]
