"""Fraud controls through the HTTP API with a till (pos) key: each control holds the sale's
points (the sale is recorded), staff confirm or reverse, redemptions over a limit or without a
verified contact are refused and write nothing."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from patron import clock
from patron.audit.models import AuditRecord
from patron.audit.service import Actor
from patron.errors import Conflict
from patron.events.models import DomainEvent
from patron.fraud.models import FraudReview
from patron.ledger.models import Purchase
from patron.members.models import PortalCode
from patron.programs.service import get_program
from patron.review import queue as review
from tests.api.helpers import enroll
from tests.factories import BAKERY

P = "/api/v1/programs/bakery"


@pytest.fixture
def kim(client, pos, bakery, frozen) -> dict[str, Any]:
    return enroll(client, pos, name="Kim", phone="010-1234-5678", cards=[{"number": "CARD-1"}])


def controls(client, admin, **doc: Any) -> dict[str, Any]:
    response = client.put(f"{P}/fraud/settings", json=doc, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


def sale(client, headers, order: str, amount: int = 5000, **extra: Any):
    body = {"external_id": order, "member": {"card": "CARD-1"}, "amount": amount, **extra}
    return client.post(f"{P}/purchases", json=body, headers=headers)


def totals(client, headers, member_id: int) -> dict[str, int]:
    response = client.get(f"{P}/members/{member_id}/account", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["totals"]


def queue(client, admin, status: str = "open") -> list[dict[str, Any]]:
    response = client.get(f"{P}/fraud/reviews", params={"status": status}, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def check_ok(client, admin) -> None:
    report = client.get("/api/v1/check", headers=admin).json()
    assert report["ok"] is True, report["violations"]


def test_a_sale_over_the_members_daily_limit_is_recorded_with_its_points_held(
    client, admin, pos, kim
):
    controls(client, admin, member={"sales_per_day": 2})
    for order in ("A-1", "A-2"):
        first = sale(client, pos, order, amount=60000)
        assert first.status_code == 201 and "review" not in first.json()
    held = sale(client, pos, "A-3", amount=100000)
    assert held.status_code == 201, held.text
    answer = held.json()
    assert answer["review"]["code"] == "velocity_member_sales_per_day"
    assert answer["review"]["held_points"] == answer["points_earned"] == 1000
    assert answer["totals"]["pending"] == 1000 and answer["totals"]["balance"] == 1200
    # Held points are not spendable.
    spend = sale(client, pos, "A-4", amount=90000, points_to_spend=2000)
    assert spend.status_code == 409 and spend.json()["error"] == "insufficient_points"
    # A replay answers the same, review included.
    assert sale(client, pos, "A-3", amount=100000).json() == answer
    (item,) = queue(client, admin)
    assert item["order"] == "A-3" and item["points"] == 1000
    assert item["reasons"][0] == {"code": "velocity_member_sales_per_day", "limit": 2, "value": 3}
    done = client.post(
        f"{P}/fraud/reviews/{item['id']}/confirm", json={"reason": "known regular"}, headers=admin
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "confirmed" and done.json()["released_points"] == 1000
    after = totals(client, admin, kim["id"])
    assert after["pending"] == 0 and after["balance"] == 2200
    assert sale(client, pos, "A-5", amount=90000, points_to_spend=2000).status_code == 201
    again = client.post(
        f"{P}/fraud/reviews/{item['id']}/reverse", json={"reason": "changed my mind"}, headers=admin
    )
    assert again.status_code == 409 and again.json()["error"] == "review_decided"
    check_ok(client, admin)


def test_reverse_takes_the_held_points_back_and_a_later_refund_takes_nothing_more(
    client, admin, pos, kim, db
):
    controls(client, admin, hold_points_above=100)
    assert sale(client, pos, "B-1", amount=5000).json().get("review") is None
    held = sale(client, pos, "B-2", amount=30000).json()
    assert held["review"]["code"] == "points_above_threshold"
    (item,) = queue(client, admin)
    done = client.post(
        f"{P}/fraud/reviews/{item['id']}/reverse", json={"reason": "stolen card"}, headers=admin
    )
    assert done.status_code == 200, done.text
    assert done.json()["reversed_points"] == 300
    after = totals(client, admin, kim["id"])
    assert after == {**after, "pending": 0, "balance": 50, "earned": 50}
    refund = client.post(
        f"{P}/purchases/B-2/refunds", json={"refund_id": "R1", "amount": 30000}, headers=pos
    )
    assert refund.status_code in (200, 201), refund.text
    assert refund.json()["points_reversed"] == 0
    assert totals(client, admin, kim["id"])["balance"] == 50
    with db.unit_of_work(readonly=True) as session:
        actions = set(session.scalars(select(AuditRecord.action)))
        events = session.scalars(
            select(DomainEvent.payload)
            .where(DomainEvent.kind == "fraud.review")
            .order_by(DomainEvent.id)
        ).all()
    assert {"fraud.settings_changed", "fraud.review_reversed"} <= actions
    assert [(e["status"], e["order"]) for e in events] == [
        ("open", "B-2"),
        ("reversed", "B-2"),
    ]
    assert events[1]["reversed_points"] == 300
    check_ok(client, admin)


def test_a_duplicate_under_another_order_id_is_held_naming_the_other_sale(
    client, admin, pos, kim, frozen
):
    controls(client, admin, duplicate_window_minutes=10)
    assert "review" not in sale(client, pos, "C-1", store="mapo").json()
    clock.freeze(frozen + timedelta(minutes=4))
    other_store = sale(client, pos, "C-2", amount=5000).json()  # no store: not the same
    assert "review" not in other_store
    dup = sale(client, pos, "C-3", store="mapo").json()
    assert dup["review"]["code"] == "duplicate_transaction"
    (item,) = queue(client, admin)
    assert item["reasons"][0]["other_order"] == "C-1"
    clock.freeze(frozen + timedelta(minutes=30))
    assert "review" not in sale(client, pos, "C-4", store="mapo").json()  # outside the window


def test_card_store_and_key_limits(client, admin, pos, kim, frozen):
    controls(
        client,
        admin,
        card={"points_per_day": 120},
        store={"sales_per_day": 3},
        key={"sales_per_minute": 2},
    )
    first = sale(client, pos, "D-1", amount=10000, store="mapo").json()
    assert "review" not in first
    second = sale(client, pos, "D-2", amount=3000, store="mapo").json()
    assert second["review"]["codes"] == ["velocity_card_points_per_day"]
    third = sale(client, pos, "D-3", amount=1000, store="mapo", member={"id": kim["id"]}).json()
    assert third["review"]["codes"] == ["velocity_key_sales_per_minute"]  # no card named
    clock.freeze(frozen + timedelta(minutes=2))
    fourth = sale(client, pos, "D-4", amount=1000, store="mapo", member={"id": kim["id"]}).json()
    assert fourth["review"]["codes"] == ["velocity_store_sales_per_day"]
    assert len(queue(client, admin)) == 3


def test_a_redemption_over_its_limit_is_refused_and_writes_nothing(client, admin, pos, kim, db):
    controls(client, admin, member={"redemptions_per_day": 1})
    assert sale(client, pos, "E-1", amount=300000).status_code == 201  # 3,000 points
    assert sale(client, pos, "E-2", amount=5000, points_to_spend=1000).status_code == 201
    refused = sale(client, pos, "E-3", amount=5000, points_to_spend=1000)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "velocity_member_redemptions_per_day"
    with db.unit_of_work(readonly=True) as session:
        orders = set(session.scalars(select(Purchase.external_id)))
    assert orders == {"E-1", "E-2"}
    assert sale(client, pos, "E-4", amount=5000).status_code == 201  # earning still goes


def test_verified_contact_is_required_before_redemption(client, admin, pos, kim, db, frozen):
    controls(client, admin, verified_contact_for_redemption=True)
    assert sale(client, pos, "F-1", amount=300000).status_code == 201
    refused = sale(client, pos, "F-2", amount=5000, points_to_spend=1000)
    assert refused.status_code == 403 and refused.json()["error"] == "contact_not_verified"
    with db.unit_of_work() as session:
        program = get_program(session, "bakery")
        session.add(
            PortalCode(
                program_id=program.id,
                member_id=kim["id"],
                channel="sms",
                code_hash="x" * 64,
                tries=0,
                created_at=frozen,
                expires_at=frozen + timedelta(minutes=10),
                used_at=frozen,
            )
        )
    assert sale(client, pos, "F-3", amount=5000, points_to_spend=1000).status_code == 201


def test_bad_settings_are_a_422_and_change_nothing(client, admin, bakery, db):
    if db.url.startswith("postgresql"):
        pytest.skip("validation does not depend on the engine")
    for doc in (
        {"member": {"sales_per_day": 0}},
        {"member": {"sales_per_week": 3}},
        {"shoe": {"sales_per_day": 3}},
        {"duplicate_window_minutes": -1},
        {"hold_points_above": "lots"},
    ):
        response = client.put(f"{P}/fraud/settings", json=doc, headers=admin)
        assert response.status_code == 422, (doc, response.text)
    got = client.get(f"{P}/fraud/settings", headers=admin).json()
    assert got["member"]["sales_per_day"] is None and got["updated_at"] is None
    pos_put = client.put(f"{P}/fraud/settings", json={}, headers={"Authorization": "Bearer x"})
    assert pos_put.status_code == 401


def test_two_staff_deciding_at_once_one_wins_the_other_gets_409(client, admin, pos, kim, db):
    controls(client, admin, hold_points_above=10)
    sale(client, pos, "G-1", amount=30000)
    (item,) = queue(client, admin)
    barrier = threading.Barrier(2)
    results: list[str] = []

    def decide(decision: str) -> None:
        staff = Actor("user", id=decision)
        barrier.wait()
        try:
            with db.unit_of_work() as session:
                program = get_program(session, "bakery")
                review.decide(
                    session, program, item["id"], decision, reason="race", actor=staff,
                    now=clock.now(),
                )  # fmt: skip
            results.append("won")
        except Conflict as exc:
            assert exc.code == "review_decided"
            results.append("409")

    threads = [threading.Thread(target=decide, args=(d,)) for d in ("confirm", "reverse")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["409", "won"]
    (decided,) = queue(client, admin, status="all")
    t = totals(client, admin, kim["id"])
    if decided["status"] == "confirmed":
        assert t["available"] == 300 and t["pending"] == 0
    else:
        assert t["available"] == 0 and t["pending"] == 0 and t["earned"] == 0
    with db.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(FraudReview)) == 1
    check_ok(client, admin)


AMERICANO: dict[str, Any] = {
    "code": "americano",
    "kind": "goods",
    "names": {"ko": "아메리카노 무료", "zh": "免费美式咖啡", "en": "Free americano"},
    "points_cost": 1500,
    "value": "1500",
    "stock": 50,
    "valid_days": 30,
}


def test_rewards_and_coupons_follow_the_redemption_controls(client, admin, pos, kim, db):
    assert client.post(f"{P}/rewards", json=AMERICANO, headers=admin).status_code == 201
    assert sale(client, pos, "H-1", amount=600000).status_code == 201  # 6,000 points
    redeem = f"{P}/rewards/americano/redeem"
    body = {"member": {"id": kim["id"]}, "store": "mapo"}
    first = client.post(redeem, json=body, headers=pos)
    assert first.status_code == 201, first.text
    coupon = first.json()["coupons"][0]["code"]
    controls(
        client,
        admin,
        member={"redemptions_per_day": 2},
        verified_contact_for_redemption=True,
    )
    refused = client.post(redeem, json=body, headers=pos)
    assert refused.status_code == 403 and refused.json()["error"] == "contact_not_verified"
    use = f"{P}/coupons/{coupon}/use"
    basket = {"amount": "4500", "store": "mapo", "order": "o-1"}
    used = client.post(use, json=basket, headers=pos)
    assert used.status_code == 403 and used.json()["error"] == "contact_not_verified"
    controls(client, admin, member={"redemptions_per_day": 2})
    assert client.post(use, json=basket, headers=pos).status_code == 200
    # The first redemption was before the controls: it is not counted; two more are allowed.
    assert client.post(redeem, json=body, headers=pos).status_code == 201
    assert sale(client, pos, "H-2", amount=5000, points_to_spend=1000).status_code == 201
    over = client.post(redeem, json=body, headers=pos)
    assert over.status_code == 429 and over.json()["error"] == "velocity_member_redemptions_per_day"
    assert totals(client, admin, kim["id"])["balance"] == 6000 + 40 - 1500 * 2 - 1000
    check_ok(client, admin)


def test_a_key_of_another_program_cannot_read_or_decide(client, admin, pos, kim, db):
    if db.url.startswith("postgresql"):
        pytest.skip("key reach does not depend on the engine")
    from patron.audit.service import CLI
    from patron.auth.service import create_key

    controls(client, admin, hold_points_above=10)
    sale(client, pos, "K-1", amount=30000)
    (item,) = queue(client, admin)
    other_program = {**BAKERY, "code": "elsewhere", "name": "Elsewhere"}
    assert client.post("/api/v1/programs", json=other_program, headers=admin).status_code == 201
    with db.unit_of_work() as session:
        _row, raw = create_key(
            session, name="other", scopes=["admin"], actor=CLI, now=clock.now(),
            programs=["elsewhere"],
        )  # fmt: skip
    other = {"Authorization": f"Bearer {raw}"}
    assert client.get(f"{P}/fraud/reviews", headers=other).status_code == 403
    assert client.get(f"{P}/fraud/settings", headers=other).status_code == 403
    decided = client.post(
        f"{P}/fraud/reviews/{item['id']}/confirm", json={"reason": "mine now"}, headers=other
    )
    assert decided.status_code == 403
    assert (
        client.post(
            f"{P}/fraud/reviews/{item['id']}/confirm", json={"reason": "ok"}, headers=pos
        ).status_code
        == 403
    )  # a till key cannot decide
    assert queue(client, admin)[0]["status"] == "open"


def test_a_member_with_held_sales_is_merged_only_after_the_review(client, admin, pos, kim):
    """Held points would move with a merge while the review stays with the sale: the merge
    waits for the decision, then moves the released points."""
    controls(client, admin, hold_points_above=100)
    assert sale(client, pos, "M-1", amount=30000).json()["review"]["code"]
    twin = enroll(client, pos, name="Kim", phone="010-9999-0000")
    body = {"into": twin["id"], "reason": "same person, second phone"}
    refused = client.post(f"/api/v1/members/{kim['id']}/merge", json=body, headers=admin)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "open_reviews"
    assert totals(client, admin, kim["id"])["pending"] == 300  # nothing moved

    (item,) = queue(client, admin)
    decided = client.post(
        f"{P}/fraud/reviews/{item['id']}/confirm", json={"reason": "checked"}, headers=admin
    )
    assert decided.status_code == 200, decided.text
    merged = client.post(f"/api/v1/members/{kim['id']}/merge", json=body, headers=admin)
    assert merged.status_code == 200, merged.text
    assert totals(client, admin, twin["id"])["balance"] == 300
    check_ok(client, admin)
