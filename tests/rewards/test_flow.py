"""The issue's story through the API: the americano and 5,000 KRW off, redeemed, used at the
till, refused when they should be, cancelled with the points back."""

from __future__ import annotations

from sqlalchemy import select

from patron.check import run_check
from patron.coupons.models import Coupon, Redemption, StockMove
from patron.ledger.models import Entry
from tests.rewards.conftest import AMERICANO, FIVE_OFF, add, redeem


def balance(client, pos, member: int) -> int:
    r = client.get(f"/api/v1/programs/bakery/members/{member}/account", headers=pos)
    assert r.status_code == 200, r.text
    return r.json()["totals"]["available"] if "totals" in r.json() else r.json()["available"]


def test_redeem_use_and_refusals(client, db, bakery, admin, pos, frozen):
    made = add(client, admin, AMERICANO)
    assert made["stock"] == 500 and made["version"] == 1 and made["tier_costs"] == {"gold": 1200}
    add(client, admin, FIVE_OFF)

    out = redeem(client, pos, "americano", bakery["rich"], store="mapo")
    assert out["points"] == 1500 and out["quantity"] == 1 and out["balance"] == 8500
    [coupon] = out["coupons"]
    assert coupon["status"] == "issued" and len(coupon["code"].replace("-", "")) == 17
    # Valid through the 30th local day after issue: 2 March 12:00 Seoul -> 1 April 24:00.
    assert coupon["expires_at"].startswith("2026-04-01T15:00:00")
    assert (
        client.get("/api/v1/programs/bakery/rewards/americano", headers=pos).json()["stock"] == 499
    )

    with db.unit_of_work(readonly=True) as s:
        redemption = s.scalars(select(Redemption)).one()
        entry = s.get(Entry, redemption.entry_id)
        assert entry is not None and entry.kind == "redeem" and entry.points == -1500
        assert entry.details and entry.details["reward"] == "americano"
        assert [m.delta for m in s.scalars(select(StockMove).order_by(StockMove.id))] == [500, -1]
        assert run_check(s).ok

    # At the till: validate changes nothing, use marks it used, a second use is refused.
    basket = {"amount": "4500", "store": "mapo", "order": "o-1"}
    check = client.post(
        "/api/v1/programs/bakery/coupons/validate",
        json={"code": coupon["code"].lower(), "amount": "4500", "store": "mapo"},
        headers=pos,
    ).json()
    assert check["usable"] is True and check["reward"] == "americano"
    used = client.post(
        f"/api/v1/programs/bakery/coupons/{coupon['code']}/use", json=basket, headers=pos
    )
    assert used.status_code == 200, used.text
    assert used.json()["coupon"]["status"] == "used" and used.json()["replayed"] is False
    again = client.post(
        f"/api/v1/programs/bakery/coupons/{coupon['code']}/use", json=basket, headers=pos
    )
    assert again.status_code == 200 and again.json()["replayed"] is True
    other = client.post(
        f"/api/v1/programs/bakery/coupons/{coupon['code']}/use",
        json={**basket, "order": "o-2"},
        headers=pos,
    )
    assert other.status_code == 409 and other.json()["error"] == "coupon_used"

    # 5,000 off needs 30,000 spent; the poor member cannot afford it.
    five = redeem(client, pos, "five-off", bakery["rich"])["coupons"][0]
    small = client.post(
        "/api/v1/programs/bakery/coupons/validate",
        json={"code": five["code"], "amount": "20000"},
        headers=pos,
    ).json()
    assert small["usable"] is False and small["reason"] == "coupon_not_applicable"
    big = client.post(
        "/api/v1/programs/bakery/coupons/validate",
        json={"code": five["code"], "amount": "32000"},
        headers=pos,
    ).json()
    assert big["usable"] is True and big["discount"] == "5000"
    refused = redeem(client, pos, "five-off", bakery["poor"], status=409)
    assert refused["error"] == "insufficient_points"

    # Cancelling the unused coupon gives the 4,000 points and the stock back.
    cancelled = client.post(
        f"/api/v1/programs/bakery/coupons/{five['code']}/cancel",
        json={"reason": "changed her mind"},
        headers=admin,
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["points_returned"] == 4000
    assert cancelled.json()["balance"] == 8500
    with db.unit_of_work(readonly=True) as s:
        statuses = sorted(c.status for c in s.scalars(select(Coupon)))
        assert statuses == ["cancelled", "used"]
        assert run_check(s).ok


def test_unknown_and_foreign_codes(client, bakery, pos):
    r = client.post(
        "/api/v1/programs/bakery/coupons/validate",
        json={"code": "0000-0000-0000-0000-0", "amount": "1000"},
        headers=pos,
    )
    assert r.status_code == 404 and r.json()["error"] == "coupon_not_found"
