"""The bakery with tiers and an americano reward; member A (김민지, 10,000 points, card, a coupon)
and member B (another member with her own coupon and session)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from patron import clock
from patron.audit.service import CLI
from patron.db.engine import Database
from patron.portal import service
from patron.programs.models import Program
from patron.rewards import catalog
from patron.rewards import redeem as rewards_redeem
from patron.rewards.schemas import RewardCreate
from tests.factories import make_member, make_program
from tests.ledger._helpers import adjust
from tests.tiers._tier_helpers import set_club

A_EMAIL = "minji@example.com"
A_PHONE = "010-1234-5678"
B_EMAIL = "other@example.com"
AMERICANO: dict[str, Any] = {
    "code": "americano",
    "kind": "goods",
    "names": {"ko": "아메리카노 무료", "zh": "免费美式咖啡", "en": "Free americano"},
    "points_cost": 1500,
    "value": "1500",
    "stock": 500,
    "valid_days": 30,
}


@dataclass
class Portal:
    a: int
    b: int
    a_coupon: str
    b_coupon: str


@pytest.fixture
def portal(db: Database, frozen) -> Portal:
    with db.unit_of_work() as s:
        program = make_program(s, now=frozen, stores=("mapo",))
        set_club(s, program, now=frozen)
        a = make_member(s, now=frozen, program=program, name="김민지", language="ko",
                        email=A_EMAIL, phone=A_PHONE, card="BKR100000")  # fmt: skip
        b = make_member(s, now=frozen, program=program, name="Other", email=B_EMAIL,
                        card="BKR100001")  # fmt: skip
        adjust(s, program, a.id, 10_000, now=frozen)
        adjust(s, program, b.id, 5_000, now=frozen)
        catalog.create_reward(
            s, program, RewardCreate.model_validate(AMERICANO), actor=CLI, now=frozen
        )
        coupons = {}
        for member in (a, b):
            _r, issued, _acc = rewards_redeem.redeem(
                s, program, "americano", member=member, quantity=1, store=None,
                channel="api", actor=CLI, now=frozen,
            )  # fmt: skip
            coupons[member.id] = issued[0].code
        return Portal(a=a.id, b=b.id, a_coupon=coupons[a.id], b_coupon=coupons[b.id])


def bakery(session) -> Program:
    from sqlalchemy import select

    return session.scalars(select(Program).where(Program.code == "bakery")).one()


def code_from(text: str) -> str:
    found = re.search(r"\b(\d{6})\b", text)
    assert found, text
    return found.group(1)


def new_code(db: Database, contact: str = A_EMAIL) -> str:
    with db.unit_of_work() as s:
        message = service.request_code(s, bakery(s), contact, now=clock.now())
    assert message is not None
    return code_from(message.body)
