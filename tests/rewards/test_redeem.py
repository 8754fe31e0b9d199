"""Redeeming: prices per tier, every refusal with its own code and nothing written, limits in
the program's days, idempotency, cancel/reissue/expiry with points and stock back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from patron import clock
from patron.check import run_check
from patron.coupons.models import Coupon, CouponEvent, Redemption, StockMove
from patron.ledger.models import Entry
from patron.rewards import jobs
from tests.rewards.conftest import AMERICANO, FIVE_OFF, add, redeem

BASE = "/api/v1/programs/bakery"


def counts(db) -> tuple[int, int, int, int]:
    with db.unit_of_work(readonly=True) as s:
        return (
            s.scalar(select(func.count()).select_from(Entry)) or 0,
            s.scalar(select(func.count()).select_from(Redemption)) or 0,
            s.scalar(select(func.count()).select_from(Coupon)) or 0,
            s.scalar(select(func.count()).select_from(StockMove)) or 0,
        )


def patch(client, admin, reward: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.patch(f"{BASE}/rewards/{reward}", json=body, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()


def test_gold_members_pay_the_gold_price(client, bakery, admin, pos, frozen):
    add(client, admin, AMERICANO)
    r = client.post(
        f"{BASE}/members/{bakery['rich']}/tier",
        json={"tier": "gold", "reason": "appeal granted"},
        headers=admin,
    )
    assert r.status_code in (200, 201), r.text
    out = redeem(client, pos, "americano", bakery["rich"], quantity=2)
    assert out["points"] == 2400 and len(out["coupons"]) == 2
    assert all(c["points"] == 1200 for c in out["coupons"])
    catalog = client.get(f"{BASE}/members/{bakery['rich']}/rewards", headers=pos).json()
    assert [(i["reward"]["code"], i["price"], i["redeemable"]) for i in catalog] == [
        ("americano", 1200, True)
    ]


@pytest.mark.parametrize(
    ("change", "extra", "code"),
    [
        ({"status": "paused"}, {}, "reward_not_available"),
        ({"available_until": "2026-03-01T00:00:00+00:00"}, {}, "reward_not_available"),
        ({"tiers": ["gold"]}, {}, "tier_not_eligible"),
        ({"channels": ["online"]}, {}, "channel_not_eligible"),
        ({"stores": ["gangnam"]}, {"store": "mapo"}, "store_not_eligible"),
        ({"limit_ever": 1}, {"quantity": 2}, "limit_reached"),
        ({}, {"quantity": 7}, "insufficient_points"),
    ],
)
def test_each_refusal_has_its_code_and_writes_nothing(
    client, db, bakery, admin, pos, frozen, change, extra, code
):
    add(client, admin, AMERICANO)
    if change:
        patch(client, admin, "americano", change)
    before = counts(db)
    refused = redeem(client, pos, "americano", bakery["rich"], status=409, **extra)
    assert refused["error"] == code, refused
    assert counts(db) == before
    assert client.get(f"{BASE}/rewards/americano", headers=pos).json()["stock"] == 500


def test_out_of_stock_and_unknown_things(client, db, bakery, admin, pos, frozen):
    add(client, admin, {**AMERICANO, "stock": 1})
    redeem(client, pos, "americano", bakery["rich"])
    before = counts(db)
    assert redeem(client, pos, "americano", bakery["rich"], status=409)["error"] == "out_of_stock"
    assert counts(db) == before
    assert redeem(client, pos, "nope", bakery["rich"], status=404)["error"] == "reward_not_found"
    assert (
        redeem(client, pos, "americano", bakery["rich"], status=404, store="nowhere")["error"]
        == "store_not_found"
    )
    patch(client, admin, "americano", {"points_cost": 0})
    client.post(f"{BASE}/rewards/americano/stock", json={"delta": 5}, headers=admin)
    blocked = client.post(
        f"/api/v1/members/{bakery['poor']}/block", json={"reason": "fraud"}, headers=admin
    )
    assert blocked.status_code == 200, blocked.text
    assert redeem(client, pos, "americano", bakery["poor"], status=409)["error"] == "member_blocked"


def test_limits_count_the_programs_local_day(client, bakery, admin, pos, frozen):
    """limit_per_day 1: 23:59 Seoul on one day and 00:01 the next are two days."""
    add(client, admin, {**AMERICANO, "limit_per_day": 1})
    late = frozen.replace(hour=14, minute=59)  # 23:59 in Seoul
    clock.freeze(late)
    redeem(client, pos, "americano", bakery["rich"])
    clock.freeze(late + timedelta(seconds=30))
    assert redeem(client, pos, "americano", bakery["rich"], status=409)["error"] == "limit_reached"
    clock.freeze(late + timedelta(minutes=2))  # 00:01 the next day in Seoul
    redeem(client, pos, "americano", bakery["rich"])


def test_a_retry_with_the_same_idempotency_key_redeems_once(client, db, bakery, admin, pos):
    add(client, admin, AMERICANO)
    headers = {**pos, "Idempotency-Key": "tab-1"}
    body = {"member": {"id": bakery["rich"]}}
    first = client.post(f"{BASE}/rewards/americano/redeem", json=body, headers=headers)
    second = client.post(f"{BASE}/rewards/americano/redeem", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert first.json() == second.json()
    assert counts(db)[1] == 1
    other = client.post(
        f"{BASE}/rewards/americano/redeem", json={**body, "quantity": 2}, headers=headers
    )
    assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict"


def test_cancelled_points_whose_lots_expired_meanwhile_expire_again(
    client, db, bakery, admin, pos, frozen
):
    """The points go back to the lots they came from; a lot past its date expires them again
    at once (a coupon does not give points a new date)."""
    add(client, admin, {**AMERICANO, "valid_days": 3650})
    coupon = redeem(client, pos, "americano", bakery["rich"])["coupons"][0]
    clock.freeze(frozen + timedelta(days=400))  # the lot (12 months) is gone
    r = client.post(
        f"{BASE}/coupons/{coupon['code']}/cancel", json={"reason": "late"}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["points_returned"] == 1500
    assert r.json()["points_expired_again"] == 1500
    assert r.json()["balance"] == 0
    with db.unit_of_work(readonly=True) as s:
        assert run_check(s).ok


def test_reissue_keeps_the_terms_and_kills_the_old_code(client, db, bakery, admin, pos):
    add(client, admin, AMERICANO)
    old = redeem(client, pos, "americano", bakery["rich"])["coupons"][0]
    r = client.post(
        f"{BASE}/coupons/{old['code']}/reissue", json={"reason": "lost phone"}, headers=admin
    )
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["code"] != old["code"] and new["expires_at"] == old["expires_at"]
    assert new["points"] == old["points"] and new["status"] == "issued"
    used = client.post(
        f"{BASE}/coupons/{old['code']}/use", json={"amount": "4500", "order": "o-9"}, headers=pos
    )
    assert used.status_code == 409 and used.json()["error"] == "coupon_cancelled"
    back = client.post(
        f"{BASE}/coupons/{new['code']}/cancel", json={"reason": "no longer wanted"}, headers=admin
    )
    assert back.json()["points_returned"] == 1500 and back.json()["balance"] == 10_000
    with db.unit_of_work(readonly=True) as s:
        assert run_check(s).ok
        assert s.scalar(select(func.count()).select_from(Redemption)) == 1


@pytest.mark.parametrize("policy", ["forfeit", "refund"])
def test_coupons_expire_by_the_rewards_policy(client, db, bakery, admin, pos, frozen, policy):
    add(client, admin, {**AMERICANO, "on_expiry": policy, "valid_days": 5})
    coupon = redeem(client, pos, "americano", bakery["rich"])["coupons"][0]
    later = frozen + timedelta(days=10)
    assert jobs.expire_coupons(db, frozen).coupons == 0  # not yet
    report = jobs.expire_coupons(db, later, batch_size=1)
    assert report.coupons == 1 and jobs.expire_coupons(db, later).coupons == 0  # once
    clock.freeze(later)
    detail = client.get(f"{BASE}/coupons/{coupon['code']}", headers=pos).json()
    assert detail["status"] == "expired"
    assert [h["kind"] for h in detail["history"]] == ["issued", "expired"]
    account = client.get(f"{BASE}/members/{bakery['rich']}/account", headers=pos).json()
    expected = 10_000 if policy == "refund" else 8_500
    assert account["totals"]["available"] == expected
    assert client.get(f"{BASE}/rewards/americano", headers=pos).json()["stock"] == 500
    with db.unit_of_work(readonly=True) as s:
        assert run_check(s).ok
        assert s.scalar(select(func.count()).where(CouponEvent.kind == "expired")) == 1


def test_bulk_issue_and_partner_import(client, db, bakery, admin, pos):
    add(client, admin, FIVE_OFF)
    r = client.post(
        f"{BASE}/rewards/five-off/issue",
        json={"members": [bakery["rich"], bakery["poor"]], "campaign": "spring"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    assert r.json()["issued"] == 2 and {c["points"] for c in r.json()["coupons"]} == {0}
    r = client.post(
        f"{BASE}/rewards/five-off/coupons/import",
        json={"codes": ["partner-0001", "PARTNER-0002"], "campaign": "partner"},
        headers=admin,
    )
    assert r.status_code == 201 and [c["code"] for c in r.json()["coupons"]] == [
        "PARTNER0001",
        "PARTNER0002",
    ]
    dup = client.post(
        f"{BASE}/rewards/five-off/coupons/import", json={"codes": ["partner0001"]}, headers=admin
    )
    assert dup.status_code == 422 and dup.json()["error"] == "duplicate_code"
    ok = client.post(
        f"{BASE}/coupons/partner-0001/use",
        json={"amount": "40000", "order": "o-p1"},
        headers=pos,
    )
    assert ok.status_code == 200 and ok.json()["discount"] == "5000"
    with db.unit_of_work(readonly=True) as s:
        assert run_check(s).ok


def test_scopes(client, bakery, keys, pos):
    read = {"Authorization": f"Bearer {keys['read']}"}
    assert client.post(f"{BASE}/rewards", json=AMERICANO, headers=pos).status_code == 403
    assert client.post(f"{BASE}/rewards", json=AMERICANO, headers=read).status_code == 403
    assert client.get(f"{BASE}/rewards", headers=read).status_code == 200
    assert client.get(f"{BASE}/rewards").status_code == 401


def test_a_reissue_frees_no_unit_of_the_limit_but_a_cancel_does(client, bakery, admin, pos):
    add(client, admin, {**AMERICANO, "limit_ever": 1})
    first = redeem(client, pos, "americano", bakery["rich"])["coupons"][0]
    new = client.post(
        f"{BASE}/coupons/{first['code']}/reissue", json={"reason": "lost"}, headers=admin
    ).json()
    assert redeem(client, pos, "americano", bakery["rich"], status=409)["error"] == "limit_reached"
    client.post(f"{BASE}/coupons/{new['code']}/cancel", json={"reason": "undo"}, headers=admin)
    redeem(client, pos, "americano", bakery["rich"])
