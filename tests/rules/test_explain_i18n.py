"""Explanations over HTTP in ko, zh and en: tiers by their name, refunds in the reader's words."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api import conftest as api_fixtures
from tests.api.helpers import enroll

admin, pos, reader, bakery = (
    api_fixtures.admin,
    api_fixtures.pos,
    api_fixtures.reader,
    api_fixtures.bakery,
)
P = "/api/v1/programs/bakery"
TIERS: dict[str, Any] = {
    "policy": {
        "metric": "points",
        "window": "half_year",
        "upgrade": "immediate",
        "downgrade": "to_earned",
        "manual": "keep",
    },
    "tiers": [
        {"code": "basic", "names": {"en": "Basic", "ko": "일반", "zh": "普通"}, "threshold": 0},
        {
            "code": "gold",
            "names": {"en": "Gold", "ko": "골드", "zh": "黄金"},
            "threshold": 100_000,
            "multiplier": "2",
        },
        # No Korean or Chinese name: those readers get the English one.
        {"code": "vip", "names": {"en": "VIP"}, "threshold": 200_000, "multiplier": "3"},
    ],
}


@pytest.fixture
def kim(frozen, client, admin, pos, bakery) -> dict[str, Any]:
    assert client.put(f"{P}/tiers", json=TIERS, headers=admin).status_code == 200
    member = enroll(client, pos, name="Kim Minji", phone="010-1234-5678", language="ko")
    return member


def _set_tier(client, admin, member: dict[str, Any], tier: str) -> None:
    moved = client.post(
        f"{P}/members/{member['id']}/tier",
        json={"tier": tier, "reason": "test", "until": "2026-12-31"},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text


def _sale(client, pos, external_id: str, amount: int, **extra: Any) -> list[dict[str, Any]]:
    body = {"external_id": external_id, "member": {"phone": "010-1234-5678"}, "amount": amount}
    response = client.post(f"{P}/purchases", json={**body, **extra}, headers=pos)
    assert response.status_code == 201, response.text
    return list(response.json()["entries"])


def _refund(client, pos, external_id: str, refund_id: str) -> list[dict[str, Any]]:
    response = client.post(
        f"{P}/purchases/{external_id}/refunds", json={"refund_id": refund_id, "full": True},
        headers=pos,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return list(response.json()["entries"])


def _lines(client, headers, entry_id: int, language: str | None) -> list[str]:
    params = {"language": language} if language else {}
    response = client.get(f"{P}/entries/{entry_id}/explanation", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["lines"])


def test_a_tier_definition_multiplier_reads_by_the_tier_name(client, admin, pos, reader, kim):
    _set_tier(client, admin, kim, "gold")
    [earn] = _sale(client, pos, "A-1", 25_800)
    assert earn["points"] == 500
    assert any(step.get("tier") == "gold" for step in earn["breakdown"])  # the data keeps codes
    ko = _lines(client, reader, earn["id"], None)  # Kim reads Korean
    assert "골드 등급 ×2 = 500" in ko and not any("gold" in line for line in ko)
    assert "Gold tier ×2 = 500" in _lines(client, reader, earn["id"], "en")
    assert "黄金等级 ×2 = 500" in _lines(client, reader, earn["id"], "zh")


def test_a_tier_rule_reads_by_the_name_and_falls_back_to_english(client, admin, pos, reader, kim):
    rules = {
        "rules": [
            {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"},
            {"id": "tiers", "kind": "tier_multiplier", "factors": {"gold": "1.5", "vip": "2"}},
        ]
    }
    assert client.put(f"{P}/rules", json=rules, headers=admin).status_code == 200
    _set_tier(client, admin, kim, "gold")
    [gold] = _sale(client, pos, "A-1", 10_000)
    assert "골드 등급 ×1.5 = 150" in _lines(client, reader, gold["id"], "ko")
    _set_tier(client, admin, kim, "vip")
    [vip] = _sale(client, pos, "A-2", 10_000)
    assert "VIP 등급 ×2 = 200" in _lines(client, reader, vip["id"], "ko")
    assert "VIP等级 ×2 = 200" in _lines(client, reader, vip["id"], "zh")
    # A tier since removed from the definitions still reads, by its code.
    rest = {**TIERS, "tiers": [t for t in TIERS["tiers"] if t["code"] != "vip"]}
    _set_tier(client, admin, kim, "gold")
    assert client.put(f"{P}/tiers", json=rest, headers=admin).status_code == 200
    assert "vip tier ×2 = 200" in _lines(client, reader, vip["id"], "en")


def test_refunds_are_explained_in_each_language(client, admin, pos, reader, kim):
    _set_tier(client, admin, kim, "gold")
    _sale(client, pos, "A-1", 25_800)  # 500 points
    given = client.post(
        f"{P}/adjustments",
        headers=admin,
        json={"member": {"id": kim["id"]}, "points": 1500, "reason": "welcome"},
    )
    assert given.status_code == 201, given.text
    spent, earned = sorted(_sale(client, pos, "A-2", 5000, points_to_spend=1000),
                           key=lambda e: e["kind"] != "redeem")  # fmt: skip
    assert (spent["kind"], spent["points"], earned["points"]) == ("redeem", -1000, 80)
    assert _lines(client, reader, spent["id"], "en") == [
        "1,000 points used: paid ₩1,000 with points"
    ]
    assert _lines(client, reader, spent["id"], "ko") == ["1,000포인트 사용: ₩1,000 결제"]
    assert _lines(client, reader, spent["id"], "zh") == ["使用 1,000 积分:抵扣 ₩1,000"]

    back = {e["points"]: e["id"] for e in _refund(client, pos, "A-2", "R-1")}
    assert set(back) == {-80, 1000}
    assert _lines(client, reader, back[-80], None) == ["환불 R-1: 구매로 적립된 80포인트 회수"]
    assert _lines(client, reader, back[-80], "zh") == ["退款 R-1:收回该笔消费获得的 80 积分"]
    assert _lines(client, reader, back[-80], "en") == [
        "Refund R-1: 80 points earned on the purchase taken back"
    ]
    assert _lines(client, reader, back[1000], "ko") == ["환불 R-1: 결제에 사용한 1,000포인트 반환"]
    assert _lines(client, reader, back[1000], "zh") == ["退款 R-1:退回支付时使用的 1,000 积分"]
    assert _lines(client, reader, back[1000], "en") == [
        "Refund R-1: 1,000 points used to pay given back"
    ]


def test_a_refund_beyond_the_balance_says_what_is_owed(client, admin, pos, reader, kim):
    _set_tier(client, admin, kim, "gold")
    _sale(client, pos, "A-1", 105_000)  # 2,100 points
    _sale(client, pos, "A-2", 2000, points_to_spend=2000)  # all but nothing left
    [taken] = _refund(client, pos, "A-1", "R-9")
    assert taken["points"] == -2100
    owed = taken["details"]["debt_added"]
    assert owed > 0
    assert _lines(client, reader, taken["id"], "ko") == [
        "환불 R-9: 구매로 적립된 2,100포인트 회수",
        f"잔액보다 많은 {owed:,}포인트는 차감 예정(부족분)",
    ]
    assert _lines(client, reader, taken["id"], "en")[1] == (
        f"{owed:,} points more than the balance held are owed"
    )
    assert _lines(client, reader, taken["id"], "zh")[1] == f"超出余额的 {owed:,} 积分记为欠分"
