"""Points per rule and promotion from the stored breakdowns; budgets used and left."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from patron import clock
from patron.audit.service import CLI
from patron.db.engine import Database
from patron.ledger.schemas import LineIn
from patron.members.schemas import MemberRef
from patron.programs.service import get_program
from patron.reports import promotions
from patron.reports.common import day_range
from patron.rules import publishing
from patron.rules.model import RuleSetDoc
from patron.sales import purchases
from patron.sales.schemas import PurchaseRequest
from tests.factories import make_member, make_program

T = datetime(2026, 2, 1, tzinfo=UTC)
RULES = RuleSetDoc.model_validate(
    {
        "rules": [
            {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"},
            {
                "id": "march-double",
                "name": "Double points in March",
                "kind": "promotion",
                "factor": "2",
                "budget_points": 300,
                "starts": "2026-03-01",
                "ends": "2026-03-31",
            },
            {
                "id": "cake",
                "name": "Cake bonus",
                "kind": "product_bonus",
                "match": {"skus": ["cake"]},
                "points_per_unit": 200,
            },
        ]
    }
)


def _buy(db: Database, member: int, ext: str, lines: list[tuple[str, int]], at: datetime) -> int:
    clock.freeze(at)
    with db.unit_of_work() as session:
        out = purchases.purchase(
            session,
            get_program(session, "promo"),
            PurchaseRequest(
                external_id=ext,
                member=MemberRef(id=member),
                amount=Decimal(sum(a for _, a in lines)),
                lines=[
                    LineIn(id=str(i), sku=sku, amount=Decimal(a), quantity=Decimal(1))
                    for i, (sku, a) in enumerate(lines, start=1)
                ],
            ),
            actor=CLI,
            now=at,
        )
    return int(out["points_earned"])


def test_points_per_rule_add_up_and_budgets_show_what_is_left(db: Database) -> None:
    clock.freeze(T)
    with db.unit_of_work() as session:
        program = make_program(session, now=T, code="promo")
        publishing.publish(session, program, RULES, actor=CLI, now=T)
        member = make_member(session, now=T, program=program).id
    # base 100, the promotion doubles: +100 (budget 300 → 200 left)
    assert _buy(db, member, "p1", [("bread", 10_000)], datetime(2026, 3, 2, 3, tzinfo=UTC)) == 200
    # base 300, the promotion could add 300 but only 200 are left; the cake +200
    assert (
        _buy(
            db,
            member,
            "p2",
            [("bread", 20_000), ("cake", 10_000)],
            datetime(2026, 3, 3, 3, tzinfo=UTC),
        )
        == 700
    )
    # base 50; the budget is spent: the promotion adds nothing
    assert _buy(db, member, "p3", [("bread", 5_000)], datetime(2026, 3, 4, 3, tzinfo=UTC)) == 50
    # February: before the promotion
    assert _buy(db, member, "p0", [("bread", 3_000)], datetime(2026, 2, 10, 3, tzinfo=UTC)) == 30

    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, "promo")
        rng = day_range(program, first=date(2026, 3, 1), last=date(2026, 3, 31), now=clock.now())
        report = promotions.promotions_report(session, program, rng, now=clock.now())
    rows = {r.rule: r for r in report.rows}
    assert report.earned == 950 and report.earns == 3
    assert sum(r.points for r in report.rows) == report.earned
    assert (rows["base"].points, rows["base"].earns, rows["base"].kind) == (450, 3, "base_rate")
    promo = rows["march-double"]
    assert (promo.points, promo.earns, promo.name) == (300, 2, "Double points in March")
    assert (promo.budget_points, promo.budget_used, promo.budget_left) == (300, 300, 0)
    assert (rows["cake"].points, rows["cake"].earns, rows["cake"].budget_points) == (200, 1, None)
    assert report.by_rule_version == {2: 950}  # version 1 is the program's own base rate


def test_attribution_rounds_factors_to_whole_points() -> None:
    steps = [
        {"rule": "base", "kind": "base_rate", "applied": True, "result": 255},
        {"rule": "tier:silver", "kind": "tier", "applied": True, "before": "255", "after": "382.5"},
        {"rule": "rounding", "kind": "rounding", "applied": True, "before": "382.5", "after": 382},
        {"rule": "skipped", "kind": "promotion", "applied": False, "before": "1", "after": "9"},
    ]
    assert promotions.attribute(steps, 382) == {"base": 255, "tier:silver": 128, "rounding": -1}
    # A breakdown this code does not understand still adds up: the rest is unattributed.
    assert promotions.attribute([{"rule": "x", "applied": True, "weird": 1}], 40) == {
        promotions.UNATTRIBUTED: 40
    }


@given(
    parts=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d"]),
            st.decimals(min_value=-500, max_value=500, places=3),
        ),
        max_size=8,
    ),
    points=st.integers(0, 5000),
)
def test_attribution_always_adds_up_to_the_entry(
    parts: list[tuple[str, Decimal]], points: int
) -> None:
    steps = [
        {"rule": rule, "kind": "promotion", "applied": True, "before": "0", "after": str(value)}
        for rule, value in parts
    ]
    assert sum(promotions.attribute(steps, points).values()) == points
