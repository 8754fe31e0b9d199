"""Test factories: keyword-only, with the bakery program (PRODUCT.md) as the default."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from patron.audit.service import CLI
from patron.members import service as members
from patron.members.models import Member
from patron.members.schemas import CardIn, MemberCreate
from patron.programs import service as programs
from patron.programs.models import Program
from patron.programs.schemas import ProgramCreate, StoreCreate
from patron.setup import service as setup

BAKERY: dict[str, Any] = {
    "code": "bakery",
    "name": "Corner Bakery",
    "currency": "KRW",
    "timezone": "Asia/Seoul",
    "point_value": "1",
    "earning": {"mode": "per_full_unit", "points": 10, "per_amount": "1000", "rounding": "down"},
    "expiry": {"kind": "months", "months": 12},
    "pending_days": 0,
    "redemption": {"min_points": 1000, "step": 10, "max_share": "1"},
    "negative_balance": "allow_debt",
}

SHANGHAI: dict[str, Any] = {
    "code": "shanghai",
    "name": "Shanghai Department Store",
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_value": "0.01",
    "earning": {"mode": "proportional", "points": 1, "per_amount": "1", "rounding": "down"},
    "expiry": {"kind": "months", "months": 12},
    "pending_days": 0,
    "redemption": {"min_points": 100, "step": 1, "max_share": "0.5"},
    "negative_balance": "allow_debt",
}


def make_program(
    session: Session,
    *,
    now: datetime,
    base: dict[str, Any] | None = None,
    stores: tuple[str, ...] = ("mapo",),
    **overrides: Any,
) -> Program:
    data = {**(base or BAKERY), **overrides}
    program = setup.create_program(session, ProgramCreate.model_validate(data), actor=CLI, now=now)
    for code in stores:
        programs.create_store(
            session, program, StoreCreate(code=code, name=code.title()), actor=CLI, now=now
        )
    return program


_counter = iter(range(1, 10**9))


def make_member(
    session: Session,
    *,
    now: datetime,
    program: Program | None = None,
    name: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    card: str | None = None,
    **fields: Any,
) -> Member:
    n = next(_counter)
    data = MemberCreate(
        name=name or f"Member {n}",
        phone=phone,
        email=email,
        cards=[CardIn(number=card)] if card else [],
        program=program.code if program else None,
        **fields,
    )
    return members.create_member(session, data, program=program, actor=CLI, now=now)


def money(value: str | int) -> Decimal:
    return Decimal(str(value))
