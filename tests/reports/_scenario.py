"""A hand-built bakery month with figures worked out by hand (tests/reports/test_exact.py).

Seoul is UTC+9. Points expire after 1 month; tiers: basic from 0, silver from 500 qualifying
points (×1, so points stay round), upgraded at once.

| when (UTC)        | local day | what                                                        |
|-------------------|-----------|-------------------------------------------------------------|
| 03-01 14:30       | 03-01     | A buys 25,800 at mapo/pos: +250 (no tier yet) → A basic     |
| 03-01 15:30       | 03-02     | A buys 100,000 at yeonnam/online: +1000 (basic) → A silver  |
| 03-02 03:00       | 03-02     | B buys 50,000 at mapo/pos: +500 (no tier) → B silver        |
| 03-02 04:00       | 03-02     | A buys 30,000 at mapo/pos paying 1000 points: −1000, +290   |
| 03-03 01:00       | 03-03     | refund o1 in full: −250 (clawback)                          |
| 03-03 02:00       | 03-03     | refund o4 in full: +1000 given back, −290                   |
| 03-04 02:00       | 03-04     | adjust A +300, B −100 (no store, no channel)                |
| 03-04 03:00       | 03-01 / recorded 03-04 | B's sale of 03-01 14:00 Seoul sent late: 20,000 at yeonnam/online, +200 |
| 04-10 00:00       | expiry job (recorded 04-10): A 250 on 04-02, A 750 on 04-03, A 300 on 04-05; B 200 on 04-02, B 400 on 04-03 |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from patron import clock
from patron.audit.service import CLI
from patron.db.engine import Database
from patron.ledger import jobs, views
from patron.ledger.schemas import Totals
from patron.members.schemas import MemberRef
from patron.programs.service import get_program
from patron.sales import purchases
from patron.sales.schemas import AdjustRequest, PurchaseRequest, RefundRequest
from patron.tiers import service as tiers
from patron.tiers.schemas import TierSetup
from tests.factories import make_member, make_program

START = datetime(2026, 1, 1, tzinfo=UTC)
TIERS = TierSetup.model_validate(
    {
        "policy": {
            "metric": "points",
            "window": "year",
            "upgrade": "immediate",
            "downgrade": "one_level",
            "manual": "keep",
        },
        "tiers": [
            {"code": "basic", "names": {"en": "Basic"}, "threshold": 0},
            {"code": "silver", "names": {"en": "Silver"}, "threshold": 500},
        ],
    }
)


def at(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


@dataclass
class Scenario:
    code: str
    a: int
    b: int
    # (instant, member id, what the member's totals showed at that instant)
    shown: list[tuple[datetime, int, Totals]] = field(default_factory=list)
    late_sale_recorded: datetime = field(default_factory=lambda: at(3, 4, 3))


def sale(
    db: Database,
    code: str,
    member_id: int,
    amount: int,
    *,
    ext: str,
    now: datetime,
    store: str | None = None,
    channel: str = "pos",
    spend: int = 0,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    clock.freeze(now)
    with db.unit_of_work() as session:
        return purchases.purchase(
            session,
            get_program(session, code),
            PurchaseRequest(
                external_id=ext,
                member=MemberRef(id=member_id),
                amount=Decimal(amount),
                store=store,
                channel=channel,  # type: ignore[arg-type]
                points_to_spend=spend,
                occurred_at=occurred_at,
            ),
            actor=CLI,
            now=now,
        )


def full_refund(db: Database, code: str, ext: str, *, now: datetime) -> dict[str, Any]:
    clock.freeze(now)
    with db.unit_of_work() as session:
        return purchases.refund(
            session,
            get_program(session, code),
            ext,
            RefundRequest(refund_id=f"{ext}-r", full=True),
            actor=CLI,
            now=now,
        )


def adjust(db: Database, code: str, member_id: int, points: int, *, now: datetime) -> None:
    clock.freeze(now)
    with db.unit_of_work() as session:
        purchases.adjust(
            session,
            get_program(session, code),
            AdjustRequest(member=MemberRef(id=member_id), points=points, reason="goodwill"),
            actor=CLI,
            now=now,
        )


def shown(db: Database, code: str, member_id: int, now: datetime) -> Totals:
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, code)
        return views.totals(session, views.get_account(session, program, member_id), now)


def build(db: Database, *, code: str = "bakery", run_expiry: bool = True) -> Scenario:
    clock.freeze(START)
    with db.unit_of_work() as session:
        program = make_program(
            session,
            now=START,
            code=code,
            stores=("mapo", "yeonnam"),
            expiry={"kind": "months", "months": 1},
        )
        tiers.set_tiers(session, program, TIERS, actor=CLI, now=START)
        a = make_member(session, now=START, program=program, name="A").id
        b = make_member(session, now=START, program=program, name="B").id
    s = Scenario(code=code, a=a, b=b)

    def snap(now: datetime) -> None:
        for member in (a, b):
            s.shown.append((now, member, shown(db, code, member, now)))

    sale(db, code, a, 25_800, ext="o1", now=at(3, 1, 14, 30), store="mapo")
    snap(at(3, 1, 14, 30))
    sale(db, code, a, 100_000, ext="o2", now=at(3, 1, 15, 30), store="yeonnam", channel="online")
    snap(at(3, 1, 15, 30))
    sale(db, code, b, 50_000, ext="o3", now=at(3, 2, 3), store="mapo")
    snap(at(3, 2, 3))
    sale(db, code, a, 30_000, ext="o4", now=at(3, 2, 4), store="mapo", spend=1000)
    snap(at(3, 2, 4))
    snap(at(3, 2, 23, 59))
    full_refund(db, code, "o1", now=at(3, 3, 1))
    snap(at(3, 3, 1))
    full_refund(db, code, "o4", now=at(3, 3, 2))
    snap(at(3, 3, 2))
    adjust(db, code, a, 300, now=at(3, 4, 2))
    adjust(db, code, b, -100, now=at(3, 4, 2))
    snap(at(3, 4, 2))
    sale(
        db,
        code,
        b,
        20_000,
        ext="o5",
        now=s.late_sale_recorded,
        store="yeonnam",
        channel="online",
        occurred_at=at(3, 1, 5),
    )
    snap(at(3, 4, 3))
    # Lots past their date before the job has run: the totals already count them as expired.
    for instant in (
        at(4, 1, 14, 59),
        at(4, 1, 15),
        at(4, 2, 15),
        at(4, 3, 12),
        at(4, 4, 15),
        at(4, 9),
    ):
        snap(instant)
    if run_expiry:
        clock.freeze(at(4, 10))
        jobs.run_expiry(db, at(4, 10))
        snap(at(4, 10))
    return s
