"""The what-if report: recorded purchases replayed under current and proposed rules, no writes."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron import demo
from patron.audit.models import AuditRecord
from patron.audit.service import CLI
from patron.db.engine import Database
from patron.ledger import service as ledger
from patron.ledger.models import Account, Entry, Lot, Movement, Purchase
from patron.ledger.schemas import LineIn
from patron.members.schemas import MemberRef
from patron.programs import service as programs
from patron.programs.models import Program
from patron.rules import publishing
from patron.rules import service as rules
from patron.rules.model import RuleSetDoc
from patron.rules.models import PromotionBudget, RuleSetVersion
from patron.rules.simulate import SimulationReport, simulate, to_csv
from patron.sales import purchases
from patron.sales.schemas import PurchaseRequest
from tests.factories import make_member, make_program

SEOUL = ZoneInfo("Asia/Seoul")
START = datetime(2026, 3, 1, 0, 0, tzinfo=SEOUL)


def bakery_rules(points: int = 10, cake: int = 200, *extra: dict[str, Any]) -> RuleSetDoc:
    return RuleSetDoc.model_validate(
        {
            "rules": [
                {"id": "base", "kind": "base_rate", "points": points, "per_amount": "1000"},
                {
                    "id": "seasonal-cake",
                    "kind": "product_bonus",
                    "match": {"skus": ["seasonal-cake"]},
                    "points_per_unit": cake,
                },
                {
                    "id": "tiers",
                    "kind": "tier_multiplier",
                    "factors": {"silver": "1.5", "gold": "2"},
                },
                *extra,
            ]
        }
    )


_orders = iter(range(1, 10**9))


def buy(
    session: Session,
    program: Program,
    member_id: int,
    at: datetime,
    lines: list[tuple[str, int, int]],
    *,
    spend: int = 0,
) -> dict[str, Any]:
    """A sale at `at`; lines are (sku, unit price, quantity)."""
    items = [
        LineIn(
            id=str(i + 1),
            sku=sku,
            category="cake" if "cake" in sku else "bread",
            quantity=Decimal(qty),
            amount=Decimal(price * qty),
        )
        for i, (sku, price, qty) in enumerate(lines)
    ]
    req = PurchaseRequest(
        external_id=f"T-{next(_orders)}",
        member=MemberRef(id=member_id),
        amount=sum((item.amount for item in items), Decimal(0)),
        lines=items,
        store="mapo",
        occurred_at=at,
        points_to_spend=spend,
    )
    return purchases.purchase(session, program, req, actor=CLI, now=at)


def seed(db: Database, doc: RuleSetDoc | None = None) -> dict[str, int]:
    """The bakery with four members (one silver, one gold) and a month of sales."""
    with db.unit_of_work() as session:
        program = make_program(session, now=START - timedelta(days=30))
        publishing.publish(
            session, program, doc or bakery_rules(), actor=CLI, now=START - timedelta(days=30)
        )
        ids = {}
        for name, tier in (("Kim", None), ("Lee", "silver"), ("Park", "gold"), ("Choi", None)):
            member = make_member(
                session, now=START - timedelta(days=30), program=program, name=name
            )
            account = ledger.open_account(
                session, program_id=program.id, member_id=member.id, now=START - timedelta(days=30)
            )
            account.tier = tier
            ids[name] = member.id
        session.flush()
        basket = [("baguette", 4500, 1), ("croissant", 3800, 2)]
        for day in range(0, 28, 3):
            at = START + timedelta(days=day, hours=9 + day % 8)
            buy(session, program, ids["Kim"], at, basket)
            buy(session, program, ids["Lee"], at + timedelta(minutes=5), basket)
            if day % 2 == 0:
                buy(
                    session,
                    program,
                    ids["Park"],
                    at + timedelta(minutes=10),
                    [("seasonal-cake", 32000, 1), ("baguette", 4500, 2)],
                )
        buy(
            session,
            program,
            ids["Choi"],
            START + timedelta(days=10, hours=15),
            [("seasonal-cake", 32000, 2)],
        )
    return ids


def run(
    db: Database,
    proposed: RuleSetDoc,
    *,
    date_from: date = date(2026, 3, 1),
    date_to: date = date(2026, 3, 31),
    top: int = 10,
) -> SimulationReport:
    with db.unit_of_work() as session:
        return simulate(
            session,
            programs.get_program(session, "bakery"),
            proposed,
            date_from=date_from,
            date_to=date_to,
            top=top,
        )


def assert_rules_add_up(report: SimulationReport) -> None:
    assert sum((r.current_points for r in report.rules), Decimal(0)) == report.current_points
    assert sum((r.proposed_points for r in report.rules), Decimal(0)) == report.proposed_points
    assert all(r.rule != "unattributed" for r in report.rules)


def test_doubling_doubles_exactly_and_attributes_per_rule(db: Database) -> None:
    seed(db)
    report = run(db, bakery_rules(points=20, cake=400))
    with db.unit_of_work() as session:
        recorded = session.scalar(select(func.sum(Purchase.points_earned))) or 0
        count = session.scalar(select(func.count()).select_from(Purchase)) or 0
    assert report.purchases == count == 26
    assert report.members == 4
    assert report.actual_points == recorded > 0
    assert report.current_points == report.actual_points
    assert report.proposed_points == 2 * report.actual_points
    assert report.delta == report.actual_points
    assert report.actual_value == Decimal(report.actual_points)  # 1 point = 1 KRW
    assert report.delta_value == Decimal(report.delta)
    by_rule = {r.rule: r for r in report.rules}
    assert list(by_rule) == ["base", "seasonal-cake", "tiers"]
    for rule in by_rule.values():
        assert rule.proposed_points == 2 * rule.current_points
        assert rule.delta == rule.current_points
    assert by_rule["seasonal-cake"].current_points == 200 * (5 + 2)
    assert_rules_add_up(report)


def test_top_members_by_size_of_change(db: Database) -> None:
    ids = seed(db)
    report = run(db, bakery_rules(points=20, cake=400), top=3)
    assert len(report.top_members) == 3
    deltas = [abs(m.delta) for m in report.top_members]
    assert deltas == sorted(deltas, reverse=True)
    assert report.top_members[0].member_id == ids["Park"]  # gold, with cakes
    for member in report.top_members:
        assert member.proposed_points == 2 * member.actual_points
        assert member.delta == member.proposed_points - member.actual_points
    assert {m.member_id for m in run(db, bakery_rules(points=20, cake=400)).top_members} == set(
        ids.values()
    )

    # A cut shows as a negative delta and is ranked by its size.
    cut = run(db, bakery_rules(points=5, cake=0))
    assert cut.delta < 0 and all(m.delta <= 0 for m in cut.top_members)
    assert [abs(m.delta) for m in cut.top_members] == sorted(
        (abs(m.delta) for m in cut.top_members), reverse=True
    )


def test_period_is_local_dates_inclusive(db: Database) -> None:
    with db.unit_of_work() as session:
        program = make_program(session, now=START - timedelta(days=60))
        member = make_member(session, now=START - timedelta(days=60), program=program)
        for at in (
            datetime(2026, 2, 28, 23, 59, tzinfo=SEOUL),  # 14:59 UTC on the 28th
            datetime(2026, 3, 1, 0, 0, tzinfo=SEOUL),  # 15:00 UTC on the 28th
            datetime(2026, 3, 31, 23, 59, tzinfo=SEOUL),
            datetime(2026, 4, 1, 0, 0, tzinfo=SEOUL),
        ):
            buy(session, program, member.id, at, [("baguette", 10000, 1)])
        doc = rules.document(session, program)
    report = run(db, doc)
    assert (report.purchases, report.actual_points, report.current_points) == (2, 200, 200)
    assert run(db, doc, date_from=date(2026, 3, 1), date_to=date(2026, 3, 1)).purchases == 1
    assert run(db, doc, date_from=date(2026, 2, 28), date_to=date(2026, 2, 28)).purchases == 1
    assert run(db, doc, date_from=date(2026, 4, 2), date_to=date(2026, 4, 30)).purchases == 0


def table_counts(session: Session) -> dict[str, int]:
    return {
        model.__name__: session.scalar(select(func.count()).select_from(model)) or 0
        for model in (
            Purchase,
            Entry,
            Lot,
            Movement,
            Account,
            AuditRecord,
            PromotionBudget,
            RuleSetVersion,
        )
    }


def test_nothing_is_written(db: Database) -> None:
    seed(db)
    proposed = bakery_rules(
        20,
        400,
        {"id": "launch", "kind": "promotion", "factor": "2", "budget_points": 500},
        {"id": "day-cap", "kind": "cap", "per": "member_day", "max_points": 400},
    )
    with db.unit_of_work() as session:
        before = table_counts(session)
        program = programs.get_program(session, "bakery")
        version = program.rule_version
        report = simulate(
            session, program, proposed, date_from=date(2026, 3, 1), date_to=date(2026, 3, 31)
        )
        assert not session.new and not session.dirty and not session.deleted
    with db.unit_of_work() as session:
        assert table_counts(session) == before
        assert programs.get_program(session, "bakery").rule_version == version
    assert report.proposed_points > 0
    assert_rules_add_up(report)


def test_budget_and_caps_are_replayed_in_memory(db: Database) -> None:
    seed(db)
    base = run(db, bakery_rules())
    budget = run(
        db,
        bakery_rules(
            10, 200, {"id": "launch", "kind": "promotion", "bonus_points": 50, "budget_points": 120}
        ),
    )
    # 50 a sale until the 120-point budget is spent: 50 + 50 + 20.
    assert budget.proposed_points == base.current_points + 120
    assert {r.rule: r.proposed_points for r in budget.rules}["launch"] == 120

    capped = run(
        db,
        bakery_rules(
            10, 200, {"id": "month-cap", "kind": "cap", "per": "member_month", "max_points": 500}
        ),
    )
    assert all(m.proposed_points <= 500 for m in capped.top_members)
    assert any(m.proposed_points == 500 for m in capped.top_members)
    assert_rules_add_up(capped)


def test_current_caps_replay_what_was_recorded(db: Database) -> None:
    """A cap in the live rules gives the same points in the replay, even mid-month."""
    doc = bakery_rules(
        10, 200, {"id": "month-cap", "kind": "cap", "per": "member_month", "max_points": 600}
    )
    seed(db, doc)
    whole = run(db, doc)
    assert whole.current_points == whole.actual_points
    assert any(step.rule == "month-cap" and step.current_points < 0 for step in whole.rules)
    # From the 15th, what members earned from the 1st still counts against the month's cap.
    later = run(db, doc, date_from=date(2026, 3, 15))
    assert 0 < later.purchases < whole.purchases
    assert later.current_points == later.actual_points


def test_csv_has_summary_rule_and_member_rows(db: Database) -> None:
    seed(db)
    report = run(db, bakery_rules(points=20, cake=400), top=2)
    text = to_csv(report).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    sections = [row["section"] for row in rows]
    assert sections == ["summary"] + ["rule"] * 3 + ["member"] * 2
    summary = rows[0]
    assert int(summary["actual_points"]) == report.actual_points
    assert int(summary["proposed_points"]) == report.proposed_points
    assert int(summary["delta"]) == report.delta
    assert summary["currency"] == "KRW"
    assert [row["item"] for row in rows[1:4]] == ["base", "seasonal-cake", "tiers"]
    assert int(rows[4]["item"]) == report.top_members[0].member_id
    assert rows[4]["name"] == report.top_members[0].name


def test_report_is_json_friendly(db: Database) -> None:
    seed(db)
    report = run(db, bakery_rules(points=20, cake=400))
    again = SimulationReport.model_validate_json(report.model_dump_json())
    assert again == report


def test_demo_data_replays_to_what_was_recorded(db: Database) -> None:
    now = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    loaded = demo.load(db, now=now, members_count=15, days=60)
    date_from, date_to = (now - timedelta(days=61)).date(), now.date()
    seoul = ZoneInfo("Asia/Seoul")
    start = datetime.combine(date_from, datetime.min.time(), tzinfo=seoul)
    end = datetime.combine(date_to + timedelta(days=1), datetime.min.time(), tzinfo=seoul)
    with db.unit_of_work() as session:
        program = programs.get_program(session, "bakery")
        doc = rules.document(session, program)
        count, recorded = session.execute(
            select(func.count(), func.coalesce(func.sum(Purchase.points_earned), 0)).where(
                Purchase.occurred_at >= start, Purchase.occurred_at < end
            )
        ).one()
        report = simulate(session, program, doc, date_from=date_from, date_to=date_to)
    # Sixty days leave out the win-back campaign (its coupon sales would be excluded): every sale
    # replays to exactly what was recorded.
    assert report.excluded_purchases == 0
    assert report.purchases == loaded.purchases == count
    assert report.actual_points == recorded > 0
    assert report.current_points == report.actual_points
    assert report.proposed_points == report.actual_points
    assert report.delta == 0 and report.delta_value == 0
    assert all(m.delta == 0 for m in report.top_members)
    assert_rules_add_up(report)
