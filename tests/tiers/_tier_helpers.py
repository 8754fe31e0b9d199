"""Shared set-up for the tier write-side tests: the S2 club (five tiers on half-year points)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.audit.service import CLI
from patron.ledger.models import Account
from patron.members.schemas import MemberRef
from patron.programs.models import Program
from patron.sales import purchases
from patron.sales.schemas import AdjustRequest, PurchaseRequest, RefundRequest
from patron.tiers import service
from patron.tiers.models import TierChange
from patron.tiers.schemas import TierSetup

# H1 2026 in Seoul: purchases on 2 March (T0); the evaluation runs after 1 July.
H2_START = datetime(2026, 6, 30, 15, 0, tzinfo=UTC)  # 00:00 on 1 July in Seoul
AFTER_H1 = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)
AFTER_H2 = datetime(2027, 1, 2, 3, 0, tzinfo=UTC)

CLUB_TIERS: list[dict[str, Any]] = [
    {"code": "bronze", "names": {"en": "Bronze", "ko": "브론즈"}, "threshold": 0},
    {
        "code": "silver",
        "names": {"en": "Silver", "ko": "실버"},
        "threshold": 1000,
        "multiplier": "1.5",
    },
    {
        "code": "gold",
        "names": {"en": "Gold", "ko": "골드"},
        "threshold": 3000,
        "multiplier": "2",
        "extra_expiry_months": 6,
        "benefits": ["5% off cakes"],
    },
    {"code": "platinum", "names": {"en": "Platinum"}, "threshold": 6000, "multiplier": "2.5"},
    {"code": "diamond", "names": {"en": "Diamond"}, "threshold": 10000, "multiplier": "3"},
]


def club_setup(**policy: Any) -> dict[str, Any]:
    return {
        "policy": {
            "metric": "points",
            "window": "half_year",
            "upgrade": "immediate",
            "downgrade": "to_earned",
            "manual": "keep",
            **policy,
        },
        "tiers": CLUB_TIERS,
    }


def set_club(session: Session, program: Program, *, now: datetime, **policy: Any) -> None:
    service.set_tiers(
        session, program, TierSetup.model_validate(club_setup(**policy)), actor=CLI, now=now
    )


_orders = iter(range(1, 10**9))


def buy(
    session: Session,
    program: Program,
    member_id: int,
    amount: int | str,
    *,
    now: datetime,
    external_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    req = PurchaseRequest(
        external_id=external_id or f"O-{next(_orders)}",
        member=MemberRef(id=member_id),
        amount=Decimal(str(amount)),
        **fields,
    )
    return purchases.purchase(session, program, req, actor=CLI, now=now)


def refund(
    session: Session, program: Program, external_id: str, *, now: datetime, **fields: Any
) -> dict[str, Any]:
    req = RefundRequest(refund_id=f"R-{next(_orders)}", **fields)
    return purchases.refund(session, program, external_id, req, actor=CLI, now=now)


def adjust(
    session: Session,
    program: Program,
    member_id: int,
    points: int,
    *,
    now: datetime,
    qualifying: bool = False,
) -> Any:
    req = AdjustRequest(
        member=MemberRef(id=member_id), points=points, reason="goodwill", qualifying=qualifying
    )
    return purchases.adjust(session, program, req, actor=CLI, now=now)


def account(session: Session, program: Program, member_id: int) -> Account:
    return session.scalars(
        select(Account)
        .where(Account.program_id == program.id, Account.member_id == member_id)
        .execution_options(populate_existing=True)
    ).one()


def changes(session: Session, program: Program, member_id: int) -> list[TierChange]:
    acc = account(session, program, member_id)
    return list(
        session.scalars(
            select(TierChange).where(TierChange.account_id == acc.id).order_by(TierChange.id)
        )
    )
