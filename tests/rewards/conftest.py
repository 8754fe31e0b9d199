"""The bakery with the club's tiers, a member with points, and the issue's two rewards."""

from __future__ import annotations

from typing import Any

import pytest

from patron import clock
from tests.conftest import auth
from tests.factories import make_member, make_program
from tests.ledger._helpers import adjust
from tests.tiers._tier_helpers import set_club

AMERICANO: dict[str, Any] = {
    "code": "americano",
    "kind": "goods",
    "names": {"ko": "아메리카노 무료", "zh": "免费美式咖啡", "en": "Free americano"},
    "points_cost": 1500,
    "tier_costs": {"gold": 1200},
    "value": "1500",
    "stock": 500,
    "valid_days": 30,
}
FIVE_OFF: dict[str, Any] = {
    "code": "five-off",
    "kind": "fixed_discount",
    "names": {"ko": "5,000원 할인", "zh": "立减5000韩元", "en": "5,000 KRW off"},
    "points_cost": 4000,
    "value": "5000",
    "discount": "5000",
    "min_spend": "30000",
    "valid_days": 30,
}


@pytest.fixture
def bakery(db, frozen) -> dict[str, int]:
    """Program `bakery` (stores mapo, gangnam) with tiers; `rich` has 10,000 points."""
    with db.unit_of_work() as s:
        program = make_program(s, now=frozen, stores=("mapo", "gangnam"))
        set_club(s, program, now=frozen)
        rich = make_member(s, now=frozen, program=program, name="Rich", language="ko")
        poor = make_member(s, now=frozen, program=program, name="Poor")
        adjust(s, program, rich.id, 10_000, now=frozen)
        return {"rich": rich.id, "poor": poor.id}


@pytest.fixture
def admin(keys) -> dict[str, str]:
    return auth(keys["admin"])


@pytest.fixture
def pos(keys) -> dict[str, str]:
    return auth(keys["pos"])


def add(client, admin, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/api/v1/programs/bakery/rewards", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


def redeem(client, pos, reward: str, member: int, *, status: int = 201, **extra: Any):
    r = client.post(
        f"/api/v1/programs/bakery/rewards/{reward}/redeem",
        json={"member": {"id": member}, **extra},
        headers=pos,
    )
    assert r.status_code == status, r.text
    return r.json()


def now():
    return clock.now()
