"""Rule conditions a program can set, each exercised through the HTTP API on both engines:
member attributes, joined within N days, the birthday month, a minimum of earlier purchases,
payment methods; and tiers qualified by visits (purchases kept)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from patron import clock
from tests.api import conftest as api_fixtures
from tests.api.helpers import enroll
from tests.conftest import T0

admin, pos, reader, bakery = (
    api_fixtures.admin,
    api_fixtures.pos,
    api_fixtures.reader,
    api_fixtures.bakery,
)
P = "/api/v1/programs/bakery"
BASE = {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"}
LEE, PARK = "010-2222-3333", "010-4444-5555"
_orders = iter(range(1, 10**6))


def publish(client, headers, *rules: dict[str, Any]) -> None:
    response = client.put(f"{P}/rules", json={"rules": [BASE, *rules]}, headers=headers)
    assert response.status_code == 200, response.text


def buy(client, headers, phone: str, amount: int = 25800, **extra: Any) -> dict[str, Any]:
    body = {
        "external_id": f"C-{next(_orders)}",
        "member": {"phone": phone},
        "amount": amount,
        **extra,
    }
    response = client.post(f"{P}/purchases", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def step(answer: dict[str, Any], rule: str) -> dict[str, Any]:
    """The breakdown step of `rule` in the sale's earn entry."""
    [earn] = [e for e in answer["entries"] if e["kind"] == "earn"]
    [found] = [s for s in earn["breakdown"] if s["rule"] == rule]
    return found


def test_member_attribute_condition(frozen, client, admin, pos, bakery):
    enroll(client, pos, name="Lee", phone=LEE, attributes={"segment": "vip", "city": "Seoul"})
    enroll(client, pos, name="Park", phone=PARK, attributes={"segment": "regular"})
    publish(
        client,
        admin,
        {
            "id": "vip",
            "kind": "order_bonus",
            "points": 100,
            "conditions": {"attributes": {"segment": "vip"}},
        },
    )
    vip = buy(client, pos, LEE)
    assert vip["points_earned"] == 250 + 100
    assert step(vip, "vip")["applied"] is True
    regular = buy(client, pos, PARK)
    assert regular["points_earned"] == 250
    missed = step(regular, "vip")
    assert missed["applied"] is False
    assert missed["reason"] == "member attribute segment is not 'vip'"


def test_joined_within_days_condition(frozen, client, admin, pos, bakery):
    enroll(client, pos, name="Lee", phone=LEE)  # joins at T0
    publish(
        client,
        admin,
        {
            "id": "welcome",
            "kind": "promotion",
            "factor": "2",
            "conditions": {"joined_within_days": 30},
        },
    )
    assert buy(client, pos, LEE)["points_earned"] == 500
    clock.freeze(T0 + timedelta(days=30))
    assert buy(client, pos, LEE)["points_earned"] == 500  # the 30th day still counts
    clock.freeze(T0 + timedelta(days=31))
    late = buy(client, pos, LEE)
    assert late["points_earned"] == 250
    assert step(late, "welcome")["reason"] == "member joined more than 30 days ago"


def test_birthday_month_condition(frozen, client, admin, pos, bakery):
    # T0 is 2 March 2026 in Seoul.
    enroll(client, pos, name="Lee", phone=LEE, birthday="1990-03-27")
    enroll(client, pos, name="Park", phone=PARK, birthday="1990-04-02")
    publish(
        client,
        admin,
        {
            "id": "birthday",
            "kind": "order_bonus",
            "points": 500,
            "conditions": {"birthday_month": True},
        },
    )
    assert buy(client, pos, LEE)["points_earned"] == 250 + 500
    not_yet = buy(client, pos, PARK)
    assert not_yet["points_earned"] == 250
    assert step(not_yet, "birthday")["reason"] == "not the member's birthday month"
    clock.freeze(T0 + timedelta(days=31))  # 2 April
    assert buy(client, pos, PARK)["points_earned"] == 250 + 500
    assert buy(client, pos, LEE)["points_earned"] == 250


def test_min_purchases_counts_earlier_purchases_only(frozen, client, admin, pos, bakery):
    enroll(client, pos, name="Lee", phone=LEE)
    publish(
        client,
        admin,
        {"id": "third", "kind": "order_bonus", "points": 300, "conditions": {"min_purchases": 2}},
    )
    first, second, third = (buy(client, pos, LEE) for _ in range(3))
    assert [first["points_earned"], second["points_earned"]] == [250, 250]
    assert step(first, "third")["reason"] == "0 earlier purchases, 2 needed"
    assert step(second, "third")["reason"] == "1 earlier purchases, 2 needed"
    assert third["points_earned"] == 250 + 300


def test_payment_method_condition(frozen, client, admin, pos, bakery):
    enroll(client, pos, name="Lee", phone=LEE)
    publish(
        client,
        admin,
        {"id": "card", "kind": "promotion", "factor": "1.5", "payment_methods": ["card"]},
    )
    assert buy(client, pos, LEE, payment_method="card")["points_earned"] == 375
    cash = buy(client, pos, LEE, payment_method="cash")
    assert cash["points_earned"] == 250
    assert step(cash, "card")["reason"] == "payment method cash is not one of card"
    unknown = buy(client, pos, LEE)
    assert step(unknown, "card")["reason"] == "payment method (none) is not one of card"


def tier(client, headers, member_id: int) -> dict[str, Any]:
    response = client.get(f"{P}/members/{member_id}/tier", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def visits_club(client, admin, bakery) -> None:
    setup = {
        "policy": {
            "metric": "visits",
            "window": "year",
            "upgrade": "immediate",
            "downgrade": "to_earned",
            "manual": "keep",
        },
        "tiers": [
            {"code": "regular", "names": {"en": "Regular", "ko": "일반"}, "threshold": 0},
            {
                "code": "friend",
                "names": {"en": "Friend", "ko": "단골"},
                "threshold": 3,
                "multiplier": "2",
            },
        ],
    }
    response = client.put(f"{P}/tiers", json=setup, headers=admin)
    assert response.status_code == 200, response.text


def test_tiers_qualified_by_visits(frozen, client, admin, pos, reader, visits_club):
    lee = enroll(client, pos, name="Lee", phone=LEE)
    answers = [buy(client, pos, LEE, amount=1000) for _ in range(3)]
    # The third purchase is the third visit: the member moves up with it, and the next sale
    # earns at the new tier's rate.
    assert [a["points_earned"] for a in answers] == [10, 10, 10]
    assert tier(client, reader, lee["id"])["tier_code"] == "friend"
    assert buy(client, pos, LEE, amount=1000)["points_earned"] == 20

    # A purchase refunded in full is not a visit: a second member who refunds one of three
    # purchases stays below the threshold.
    park = enroll(client, pos, name="Park", phone=PARK)
    first = buy(client, pos, PARK, amount=1000)
    refund = client.post(
        f"{P}/purchases/{first['external_id']}/refunds",
        json={"refund_id": "R-1", "full": True},
        headers=pos,
    )
    assert refund.status_code == 201, refund.text
    buy(client, pos, PARK, amount=1000)
    buy(client, pos, PARK, amount=1000)
    got = tier(client, reader, park["id"])
    assert got["tier_code"] == "regular"
    assert (got["metric"], got["unit"], got["value"], got["to_next"]) == (
        "visits",
        "purchases",
        2,
        1,
    )
