"""Coupons at the till: each kind's effect, stacking in a quote (the best combination, and why
the others were refused), sales that use coupons all-or-none, earning on the discounted part,
and a refund that gives the coupon back."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from patron.check import run_check
from patron.coupons.models import Coupon
from patron.ledger.models import Purchase
from tests.rewards.conftest import AMERICANO, FIVE_OFF, add, redeem

BASE = "/api/v1/programs/bakery"
TEN_PERCENT = {
    "code": "ten-percent",
    "kind": "percent_discount",
    "names": {"en": "10% off", "ko": "10% 할인", "zh": "九折"},
    "points_cost": 2000,
    "percent": "10",
    "cap": "3000",
    "valid_days": 30,
    "stack_group": "basket",
}
CROISSANT = {
    "code": "croissant",
    "kind": "free_product",
    "names": {"en": "Free croissant"},
    "points_cost": 800,
    "sku": "CROISSANT",
    "value": "3200",
    "valid_days": 30,
}
GIFT = {
    "code": "gift-10k",
    "kind": "gift_card",
    "names": {"en": "10,000 KRW gift card"},
    "points_cost": 0,
    "gift_value": "10000",
    "valid_days": 365,
}


def coupon_of(client, admin, pos, member: int, body: dict[str, Any], **extra: Any) -> str:
    if client.get(f"{BASE}/rewards/{body['code']}", headers=pos).status_code == 404:
        add(client, admin, {**body, **extra})
    return redeem(client, pos, body["code"], member)["coupons"][0]["code"]


def validate(client, pos, code: str, **basket: Any) -> dict[str, Any]:
    r = client.post(f"{BASE}/coupons/validate", json={"code": code, **basket}, headers=pos)
    assert r.status_code == 200, r.text
    return r.json()


def test_each_kind_on_a_basket(client, bakery, admin, pos):
    rich = bakery["rich"]
    pct = coupon_of(client, admin, pos, rich, TEN_PERCENT)
    assert validate(client, pos, pct, amount="25005")["discount"] == "2500"  # rounds down
    assert validate(client, pos, pct, amount="90000")["discount"] == "3000"  # the cap
    free = coupon_of(client, admin, pos, rich, CROISSANT)
    lines = [{"sku": "CROISSANT", "quantity": "2", "amount": "6400"}, {"amount": "4000"}]
    out = validate(client, pos, free, amount="10400", lines=lines)
    assert out["discount"] == "3200" and out["sku"] == "CROISSANT"
    none = validate(client, pos, free, amount="4000", lines=[{"amount": "4000"}])
    assert none["usable"] is False and none["reason"] == "coupon_not_applicable"
    gift = coupon_of(client, admin, pos, rich, GIFT)
    used = client.post(
        f"{BASE}/coupons/{gift}/use",
        json={"amount": "6000", "order": "g-1", "gift_amount": "6000"},
        headers=pos,
    ).json()
    assert used["discount"] == "6000" and used["coupon"]["balance"] == "4000"
    assert used["coupon"]["status"] == "issued"
    too_much = client.post(
        f"{BASE}/coupons/{gift}/use",
        json={"amount": "9000", "order": "g-2", "gift_amount": "5000"},
        headers=pos,
    )
    assert too_much.status_code == 409 and too_much.json()["error"] == "coupon_not_applicable"
    rest = client.post(
        f"{BASE}/coupons/{gift}/use", json={"amount": "9000", "order": "g-3"}, headers=pos
    ).json()
    assert rest["discount"] == "4000" and rest["coupon"]["status"] == "used"


def test_coupon_refusals_at_the_till(client, bakery, admin, pos):
    mine = coupon_of(client, admin, pos, bakery["rich"], AMERICANO, stores=["gangnam"])
    wrong = validate(client, pos, mine, amount="4500", store="mapo")
    assert wrong["reason"] == "coupon_wrong_store"
    other = validate(
        client, pos, mine, amount="4500", store="gangnam", member={"id": bakery["poor"]}
    )
    assert other["reason"] == "coupon_other_member"
    r = client.post(
        f"{BASE}/coupons/{mine}/use",
        json={"amount": "4500", "order": "x-1", "store": "mapo"},
        headers=pos,
    )
    assert r.status_code == 409 and r.json()["error"] == "coupon_wrong_store"


def test_quote_picks_the_best_combination_and_explains_the_rest(client, bakery, admin, pos):
    rich = bakery["rich"]
    five = coupon_of(client, admin, pos, rich, FIVE_OFF, stack_group="basket")
    pct = coupon_of(client, admin, pos, rich, TEN_PERCENT)
    coffee = coupon_of(client, admin, pos, rich, AMERICANO)
    body = {"member": {"id": rich}, "amount": "40000", "coupons": [pct, five, coffee]}
    q = client.post(f"{BASE}/quote", json=body, headers=pos)
    assert q.status_code == 200, q.text
    out = q.json()
    by_code = {c["code"]: c for c in out["coupons"]}
    # 5,000 off beats 10% (4,000 → capped 3,000): same group, one of them.
    assert by_code[five]["applied"] and by_code[five]["discount"] == "5000"
    assert not by_code[pct]["applied"] and by_code[pct]["reason"] == "coupon_not_combinable"
    assert "basket" in by_code[pct]["detail"]
    assert by_code[coffee]["applied"]  # goods combine with a basket discount
    assert out["discount"] == "5000" and out["amount_due"] == "35000"
    assert out["points_earned"] == 350  # 10 per 1,000 on the 35,000 paid
    q = client.post(f"{BASE}/quote", json={**body, "coupons": ["NOPE-CODE"]}, headers=pos)
    assert q.json()["coupons"][0]["reason"] == "coupon_not_found"


def test_exclusive_and_points_payment(client, bakery, admin, pos):
    rich = bakery["rich"]
    five = coupon_of(client, admin, pos, rich, FIVE_OFF, exclusive=True)
    coffee = coupon_of(client, admin, pos, rich, AMERICANO, combine_with_points=False)
    q = client.post(
        f"{BASE}/quote",
        json={"member": {"id": rich}, "amount": "40000", "coupons": [coffee, five]},
        headers=pos,
    ).json()
    applied = [c["code"] for c in q["coupons"] if c["applied"]]
    assert applied == [five]
    q = client.post(
        f"{BASE}/quote",
        json={
            "member": {"id": rich},
            "amount": "40000",
            "coupons": [coffee],
            "points_to_spend": 1000,
        },
        headers=pos,
    ).json()
    assert q["coupons"][0]["applied"] is False
    assert "points" in q["coupons"][0]["detail"]


@pytest.mark.parametrize("earn_on_discounted", [False, True])
def test_a_sale_uses_its_coupons_and_earns_on_what_was_paid(
    client, db, bakery, admin, pos, earn_on_discounted
):
    rich = bakery["rich"]
    five = coupon_of(client, admin, pos, rich, FIVE_OFF, earn_on_discounted=earn_on_discounted)
    sale = {
        "external_id": "s-1",
        "member": {"id": rich},
        "amount": "40000",
        "store": "mapo",
        "lines": [{"id": "1", "amount": "30000"}, {"id": "2", "amount": "10000"}],
        "coupons": [five],
    }
    r = client.post(f"{BASE}/purchases", json=sale, headers=pos)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["discount"] == "5000" and out["coupons"][0]["applied"] is True
    assert out["points_earned"] == (400 if earn_on_discounted else 350)
    again = client.post(f"{BASE}/purchases", json=sale, headers=pos)
    assert again.status_code == 201 and again.json() == out  # a replay
    detail = client.get(f"{BASE}/coupons/{five}", headers=pos).json()
    assert detail["status"] == "used" and detail["used_order"] == "s-1"
    with db.unit_of_work(readonly=True) as s:
        row = s.scalars(select(Purchase)).one()
        assert row.amount_minor == 35000
        assert [line["amount_minor"] for line in row.lines] == [26250, 8750]
        assert run_check(s).ok


def test_a_sale_with_an_unusable_coupon_writes_nothing(client, db, bakery, admin, pos):
    rich = bakery["rich"]
    five = coupon_of(client, admin, pos, rich, FIVE_OFF)
    sale = {"external_id": "s-2", "member": {"id": rich}, "amount": "20000", "coupons": [five]}
    r = client.post(f"{BASE}/purchases", json=sale, headers=pos)
    assert r.status_code == 409 and r.json()["error"] == "coupon_not_applicable"
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Purchase)) == 0
        assert s.scalars(select(Coupon)).one().status == "issued"
    r = client.post(
        f"{BASE}/purchases", json={**sale, "coupons": ["0000-0000-0000-0000-0"]}, headers=pos
    )
    assert r.status_code == 404 and r.json()["error"] == "coupon_not_found"


@pytest.mark.parametrize("policy", ["restore", "keep"])
def test_a_full_refund_gives_the_coupon_back_by_policy(client, db, bakery, admin, pos, policy):
    rich = bakery["rich"]
    five = coupon_of(client, admin, pos, rich, FIVE_OFF, on_refund=policy)
    sale = {"external_id": "s-3", "member": {"id": rich}, "amount": "40000", "coupons": [five]}
    assert client.post(f"{BASE}/purchases", json=sale, headers=pos).status_code == 201
    r = client.post(
        f"{BASE}/purchases/s-3/refunds", json={"refund_id": "r-1", "full": True}, headers=pos
    )
    assert r.status_code in (200, 201), r.text
    detail = client.get(f"{BASE}/coupons/{five}", headers=pos).json()
    if policy == "restore":
        assert detail["status"] == "issued"
        assert [h["kind"] for h in detail["history"]] == ["issued", "used", "restored"]
    else:
        assert detail["status"] == "used"
    with db.unit_of_work(readonly=True) as s:
        assert run_check(s).ok


def test_a_promotion_can_stay_out_of_orders_with_coupons(client, db, bakery, admin, pos, frozen):
    """Per promotion: `with_coupons: false` (order bonus of 500) does not stack with coupons,
    and the quote's breakdown says so; the plain promotion still applies."""
    from patron.audit.service import CLI
    from patron.programs.service import get_program
    from patron.rules import publishing
    from patron.rules.model import RuleSetDoc

    doc = RuleSetDoc.model_validate(
        {
            "rules": [
                {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"},
                {"id": "solo", "kind": "order_bonus", "points": 500, "with_coupons": False},
                {"id": "any", "kind": "order_bonus", "points": 7},
            ]
        }
    )
    with db.unit_of_work() as s:
        publishing.publish(s, get_program(s, "bakery"), doc, actor=CLI, now=frozen)
    rich = bakery["rich"]
    five = coupon_of(client, admin, pos, rich, FIVE_OFF)
    basket = {"member": {"id": rich}, "amount": "40000"}
    plain = client.post(f"{BASE}/quote", json=basket, headers=pos).json()
    assert plain["points_earned"] == 400 + 500 + 7
    with_coupon = client.post(f"{BASE}/quote", json={**basket, "coupons": [five]}, headers=pos)
    assert with_coupon.status_code == 200, with_coupon.text
    assert with_coupon.json()["points_earned"] == 350 + 7
    [solo] = [step for step in with_coupon.json()["breakdown"] if step.get("rule") == "solo"]
    assert "not with a coupon" in str(solo), solo
