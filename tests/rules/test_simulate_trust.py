"""A what-if a marketer can trust (issue 16): the unchanged rules replay to the recorded points
exactly, tiers included; what cannot be replayed is left out and counted; members are ranked by
what the change does to them; dated rules outside the period are warned about."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from patron import demo
from patron.audit.service import CLI, SYSTEM
from patron.cli import app as cli_app
from patron.cli import console
from patron.config import get_settings
from patron.db.engine import Database
from patron.ledger.models import Purchase
from patron.ledger.schemas import LineIn
from patron.members.schemas import MemberRef
from patron.programs import service as programs
from patron.rules import publishing
from patron.rules import service as rules
from patron.rules.model import RuleSetDoc
from patron.rules.simulate import SimulationReport, simulate, to_csv
from patron.sales import purchases
from patron.sales.schemas import PurchaseRequest
from patron.tiers import service as tiers
from patron.tiers.models import TierChange
from tests.admin.helpers import STAFF, create_staff, seed_bakery, sign_in
from tests.conftest import T0, auth
from tests.factories import make_member, make_program
from tests.ledger._helpers import adjust

SEOUL = ZoneInfo("Asia/Seoul")
P = "/api/v1/programs/bakery"


def replay(
    db: Database, proposed: RuleSetDoc | None, date_from: date, date_to: date, top: int = 1000
) -> SimulationReport:
    with db.unit_of_work(readonly=True) as session:
        program = programs.get_program(session, "bakery")
        doc = proposed if proposed is not None else rules.document(session, program)
        return simulate(session, program, doc, date_from=date_from, date_to=date_to, top=top)


def recorded(db: Database, date_from: date, date_to: date) -> tuple[int, int]:
    """(purchases, points recorded) with occurred_at in the local dates given."""
    start = datetime.combine(date_from, datetime.min.time(), tzinfo=SEOUL)
    end = datetime.combine(date_to + timedelta(days=1), datetime.min.time(), tzinfo=SEOUL)
    with db.unit_of_work(readonly=True) as session:
        count, points = session.execute(
            select(func.count(), func.coalesce(func.sum(Purchase.points_earned), 0)).where(
                Purchase.occurred_at >= start, Purchase.occurred_at < end
            )
        ).one()
    return int(count), int(points)


def assert_replays_exactly(report: SimulationReport, purchases_count: int, points: int) -> None:
    assert (report.purchases, report.actual_points) == (purchases_count, points)
    assert report.current_points == report.actual_points
    for member in report.top_members:
        assert member.current_points == member.actual_points, member
    assert sum((r.current_points for r in report.rules), Decimal(0)) == report.current_points
    assert all(r.rule != "unattributed" for r in report.rules)


def buy(
    session: Any,
    program: Any,
    member_id: int,
    *,
    amount: int,
    occurred_at: datetime,
    now: datetime | None = None,
    sku: str = "baguette",
    quantity: int = 1,
    external_id: str,
) -> dict[str, Any]:
    line = LineIn(id="1", sku=sku, category="bread", quantity=Decimal(quantity), amount=amount)
    req = PurchaseRequest(
        external_id=external_id,
        member=MemberRef(id=member_id),
        amount=Decimal(amount),
        lines=[line],
        store="mapo",
        occurred_at=occurred_at,
    )
    return purchases.purchase(session, program, req, actor=CLI, now=now or occurred_at)


# --- item 7: the unchanged rules give what was recorded -----------------------------------------


def test_the_demo_replays_to_the_recorded_points_tier_multipliers_included(db: Database) -> None:
    now = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    demo.load(db, now=now, members_count=20, days=365)
    with db.unit_of_work(readonly=True) as session:
        reached = set(session.scalars(select(TierChange.to_tier)))
    assert {"silver", "gold"} <= reached  # members moved up during the year: tiers matter

    today = now.astimezone(SEOUL).date()
    for date_from in (today - timedelta(days=366), today - timedelta(days=120)):
        count, points = recorded(db, date_from, today)
        report = replay(db, None, date_from, today)
        # The demo's win-back campaign (six weeks ago) redeemed coupons at the till: those sales
        # are left out and counted, and every other one replays to exactly what was recorded.
        assert report.excluded_purchases > 0 and report.excluded_points > 0
        left_out = report.excluded_purchases, report.excluded_points
        assert_replays_exactly(report, count - left_out[0], points - left_out[1])
        assert report.proposed_points == report.current_points
        assert all(m.change == 0 for m in report.top_members)
        tier_rows = {r.rule: r for r in report.rules if r.kind == "tier_benefit"}
        assert set(tier_rows) == {"tier:silver", "tier:gold"}
        assert all(r.current_points > 0 and r.in_current for r in tier_rows.values())
        assert report.other_version_purchases == 0
        assert report.warnings == []


@pytest.fixture
def tiered(db: Database) -> dict[str, int]:
    """The bakery with the demo's rules and tiers (silver ×1.5 from 5,000 points a year)."""
    at = datetime(2026, 1, 1, tzinfo=SEOUL)
    with db.unit_of_work() as session:
        program = make_program(session, now=at)
        publishing.publish(session, program, demo.BAKERY_RULES, actor=SYSTEM, now=at)
        tiers.set_tiers(session, program, demo.BAKERY_TIERS, actor=SYSTEM, now=at)
        ids = {
            name: make_member(session, now=at, program=program, name=name).id
            for name in ("Kim", "Lee")
        }
    return ids


def test_a_late_sale_replays_at_the_tier_it_was_recorded_in(db: Database, tiered) -> None:
    kim = tiered["Kim"]
    day = datetime(2026, 2, 10, 12, 0, tzinfo=SEOUL)
    with db.unit_of_work() as session:
        program = programs.get_program(session, "bakery")
        buy(session, program, kim, amount=10_000, occurred_at=day, external_id="K-1")
        # 5,000 points: Kim is silver from this sale on.
        buy(
            session,
            program,
            kim,
            amount=500_000,
            occurred_at=day + timedelta(days=1),
            external_id="K-2",
        )
        # Recorded on the 20th for a sale of the 5th: it earned at silver (×1.5), the tier Kim
        # had when the till sent it, although on the 5th Kim was basic.
        late = buy(
            session,
            program,
            kim,
            amount=10_000,
            occurred_at=day - timedelta(days=5),
            now=day + timedelta(days=10),
            external_id="K-3",
        )
        after = buy(
            session,
            program,
            kim,
            amount=10_000,
            occurred_at=day + timedelta(days=12),
            external_id="K-4",
        )
    assert late["points_earned"] == after["points_earned"] == 150

    report = replay(db, None, date(2026, 2, 1), date(2026, 2, 28))
    assert_replays_exactly(report, 4, 100 + 5000 + 150 + 150)
    assert [r.current_points for r in report.rules if r.rule == "tier:silver"] == [100]


def test_a_tier_multiplier_rule_wins_over_the_tier_settings_in_the_replay(
    db: Database, tiered
) -> None:
    kim = tiered["Kim"]
    day = datetime(2026, 2, 10, 12, 0, tzinfo=SEOUL)
    with db.unit_of_work() as session:
        program = programs.get_program(session, "bakery")
        buy(session, program, kim, amount=500_000, occurred_at=day, external_id="K-1")
        buy(session, program, kim, amount=10_000, occurred_at=day + timedelta(1), external_id="K-2")
    proposed = demo.BAKERY_RULES.model_dump(mode="json", exclude_none=True)
    proposed["rules"].append({"id": "tiers", "kind": "tier_multiplier", "factors": {"silver": "3"}})
    report = replay(db, rules.validate_doc(proposed), date(2026, 2, 1), date(2026, 2, 28))
    assert_replays_exactly(report, 2, 5000 + 150)
    assert report.proposed_points == 5000 + 300  # silver ×3 instead of ×1.5, not both
    rows = {r.rule: r for r in report.rules}
    assert (rows["tier:silver"].in_current, rows["tier:silver"].in_proposed) == (True, False)
    assert rows["tier:silver"].proposed_points == 0 and rows["tiers"].proposed_points == 200
    assert sum((r.proposed_points for r in report.rules), Decimal(0)) == report.proposed_points


@pytest.fixture
def rich(db: Database, frozen) -> int:
    """The bakery (tiers on) with a member holding 10,000 points."""
    with db.unit_of_work() as session:
        program = make_program(session, now=frozen - timedelta(days=30))
        tiers.set_tiers(
            session, program, demo.BAKERY_TIERS, actor=SYSTEM, now=frozen - timedelta(days=30)
        )
        member = make_member(session, now=frozen - timedelta(days=30), program=program, name="R")
        adjust(session, program, member.id, 10_000, now=frozen - timedelta(days=30))
        return member.id


def test_sales_with_coupons_are_left_out_and_counted(client, keys, db: Database, rich) -> None:
    admin, pos = auth(keys["admin"]), auth(keys["pos"])
    reward = {
        "code": "five-off",
        "kind": "fixed_discount",
        "names": {"en": "5,000 KRW off"},
        "points_cost": 4000,
        "value": "5000",
        "discount": "5000",
        "min_spend": "30000",
        "valid_days": 30,
    }
    assert client.post(f"{P}/rewards", json=reward, headers=admin).status_code == 201
    redeemed = client.post(
        f"{P}/rewards/five-off/redeem", json={"member": {"id": rich}}, headers=pos
    )
    assert redeemed.status_code == 201, redeemed.text
    code = redeemed.json()["coupons"][0]["code"]
    sales = [
        {"external_id": "C-1", "member": {"id": rich}, "amount": "40000", "coupons": [code]},
        {"external_id": "C-2", "member": {"id": rich}, "amount": "12000"},
    ]
    earned = []
    for sale in sales:
        answer = client.post(f"{P}/purchases", json={**sale, "store": "mapo"}, headers=pos)
        assert answer.status_code == 201, answer.text
        earned.append(answer.json()["points_earned"])
    today = T0.astimezone(SEOUL).date()
    report = replay(db, None, today, today)
    assert (report.excluded_purchases, report.excluded_points) == (1, earned[0])
    assert_replays_exactly(report, 1, earned[1])


# --- item 10: members most affected, by the size of the change ----------------------------------


def test_members_are_ranked_by_the_size_of_the_change_ties_by_member(db: Database, tiered) -> None:
    at = datetime(2026, 2, 1, tzinfo=SEOUL)
    with db.unit_of_work() as session:
        program = programs.get_program(session, "bakery")
        ids = {
            name: make_member(session, now=at, program=program, name=name).id for name in "ABCDE"
        }
        ids["Kim"], ids["Lee"] = tiered["Kim"], tiered["Lee"]
        # Lee's sale was earned under an older version (base ×2): not what the change does.
        doubled = demo.BAKERY_RULES.model_dump(mode="json", exclude_none=True)
        doubled["rules"][0]["points"] = 20
        publishing.publish(session, program, rules.validate_doc(doubled), actor=CLI, now=at)
        n = iter(range(100))
        buy(session, program, ids["Lee"], amount=90_000, occurred_at=at, external_id="L-1")
        publishing.publish(session, program, demo.BAKERY_RULES, actor=CLI, now=at)
        for name, sku, qty in (
            ("A", "seasonal-cake", 1),  # −200 under the proposal
            ("B", "croissant", 3),  # +300
            ("C", "baguette", 1),  # 0
            ("D", "baguette", 1),  # 0
            ("E", "croissant", 2),  # +200: a tie with A, broken by member id
            ("Kim", "baguette", 1),  # 0
        ):
            buy(
                session,
                program,
                ids[name],
                amount=4000 * qty,
                sku=sku,
                quantity=qty,
                occurred_at=at + timedelta(hours=next(n)),
                external_id=f"{name}-1",
            )
    proposed = demo.BAKERY_RULES.model_dump(mode="json", exclude_none=True)
    proposed["rules"][1]["points_per_unit"] = 0
    proposed["rules"].append(
        {
            "id": "croissant",
            "kind": "product_bonus",
            "match": {"skus": ["croissant"]},
            "points_per_unit": 100,
        }
    )
    report = replay(db, rules.validate_doc(proposed), date(2026, 2, 1), date(2026, 2, 28))
    assert report.other_version_purchases == 1
    lee = next(m for m in report.top_members if m.member_id == ids["Lee"])
    assert (lee.actual_points, lee.current_points, lee.change) == (1800, 900, 0)
    order = [m.member_id for m in report.top_members]
    unchanged = sorted(ids[k] for k in ("C", "D", "Kim", "Lee"))
    assert order == [ids["B"], *sorted([ids["A"], ids["E"]]), *unchanged]
    assert [m.change for m in report.top_members][:3] == [
        300,
        *(-200 if ids["A"] < ids["E"] else 200, 200 if ids["A"] < ids["E"] else -200),
    ]
    top = replay(db, rules.validate_doc(proposed), date(2026, 2, 1), date(2026, 2, 28), top=1)
    assert [m.member_id for m in top.top_members] == [ids["B"]]


# --- item 9: dated rules that cannot apply in the period ----------------------------------------


def with_december(**overrides: Any) -> dict[str, Any]:
    doc = demo.BAKERY_RULES.model_dump(mode="json", exclude_none=True)
    promotion = {
        "id": "december",
        "name": "December double points",
        "kind": "promotion",
        "factor": "2",
        "starts": "2026-12-01",
        "ends": "2026-12-31",
        **overrides,
    }
    doc["rules"].append(promotion)
    return doc


@pytest.mark.parametrize(
    ("overrides", "period", "warned"),
    [
        ({}, (date(2026, 11, 1), date(2026, 11, 30)), True),
        ({}, (date(2027, 1, 1), date(2027, 1, 31)), True),
        ({}, (date(2026, 11, 15), date(2026, 12, 1)), False),  # overlaps by one day
        ({"starts": None}, (date(2027, 1, 1), date(2027, 1, 31)), True),  # ended
        ({"ends": None}, (date(2027, 1, 1), date(2027, 1, 31)), False),  # still running
        ({"enabled": False}, (date(2026, 11, 1), date(2026, 11, 30)), False),  # off anyway
    ],
)
def test_a_dated_rule_outside_the_period_is_warned_about(
    db: Database, tiered, overrides, period, warned
) -> None:
    data = with_december(**overrides)
    data["rules"][-1] = {k: v for k, v in data["rules"][-1].items() if v is not None}
    doc = rules.validate_doc(data)
    report = replay(db, doc, *period)
    if warned:
        [warning] = report.warnings
        assert (warning.code, warning.rule) == ("rule_outside_period", "december")
        assert "outside the replayed period" in warning.detail
        rows = list(csv.DictReader(io.StringIO(to_csv(report).decode("utf-8-sig"))))
        assert [(r["section"], r["item"]) for r in rows if r["section"] == "warning"] == [
            ("warning", "december")
        ]
    else:
        assert report.warnings == []


def test_the_api_and_the_cli_report_the_warning(
    client, keys, db: Database, tiered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"rules": with_december(), "from": "2026-11-01", "to": "2026-11-30"}
    answer = client.post(f"{P}/rules/simulate", json=body, headers=auth(keys["read"]))
    assert answer.status_code == 200, answer.text
    [warning] = answer.json()["warnings"]
    assert warning["rule"] == "december" and warning["starts"] == "2026-12-01"
    assert answer.json()["top_members"] == []

    file = tmp_path / "december.json"
    file.write_text(json.dumps(with_december()), encoding="utf-8")
    monkeypatch.setattr(console, "_width", 200)
    args = ["rules", "simulate", "--program", "bakery", str(file)]
    args += ["--from", "2026-11-01", "--to", "2026-11-30", "--database-url", db.url]
    get_settings.cache_clear()
    out = CliRunner().invoke(cli_app, [*args, "--format", "json"])
    assert out.exit_code == 0, out.output
    assert [w["rule"] for w in json.loads(out.output)["warnings"]] == ["december"]
    table = CliRunner().invoke(cli_app, args)
    assert table.exit_code == 0 and "rule_outside_period" in table.output
    assert "tier counts" in table.output and "silver" in table.output  # the bakery has tiers


def test_a_rule_still_to_come_is_replayed_on_last_years_purchases(
    client, keys, db: Database, tiered
) -> None:
    kim = tiered["Kim"]
    with db.unit_of_work() as session:
        program = programs.get_program(session, "bakery")
        for n, day in enumerate((date(2026, 11, 20), date(2026, 12, 5), date(2026, 12, 24))):
            at = datetime.combine(day, datetime.min.time(), tzinfo=SEOUL) + timedelta(hours=12)
            buy(session, program, kim, amount=20_000, occurred_at=at, external_id=f"S-{n}")
    december_2027 = rules.validate_doc(with_december(starts="2027-12-01", ends="2027-12-31"))

    # Asked over November 2027: nothing to replay yet, and the rule cannot apply anyway. The
    # warning says where it would show: its own dates, on the purchases of a year before.
    early = replay(db, december_2027, date(2027, 11, 1), date(2027, 11, 30))
    [warning] = early.warnings
    assert warning.suggestion is not None
    assert (warning.suggestion.date_from, warning.suggestion.date_to) == (
        date(2027, 12, 1),
        date(2027, 12, 31),
    )
    assert warning.suggestion.shift_years == 1

    with db.unit_of_work(readonly=True) as session:
        program = programs.get_program(session, "bakery")
        shifted = simulate(
            session,
            program,
            december_2027,
            date_from=date(2027, 12, 1),
            date_to=date(2027, 12, 31),
            shift_years=1,
        )
    # December 2026's two sales (not November's), the unchanged rules giving what was recorded
    # and the promotion, moved back with them, doubling the points.
    assert (shifted.replayed_from, shifted.replayed_to) == (date(2026, 12, 1), date(2026, 12, 31))
    assert (shifted.shift_years, shifted.purchases, shifted.warnings) == (1, 2, [])
    assert shifted.current_points == shifted.actual_points > 0
    assert shifted.proposed_points == 2 * shifted.current_points
    assert [r.rule for r in shifted.rules if r.rule == "december"] == ["december"]
    assert replay(db, december_2027, date(2027, 12, 1), date(2027, 12, 31)).purchases == 0

    body = {"rules": with_december(starts="2027-12-01", ends="2027-12-31")}
    body |= {"from": "2027-12-01", "to": "2027-12-31", "shift_years": 1}
    answer = client.post(f"{P}/rules/simulate", json=body, headers=auth(keys["read"]))
    assert answer.status_code == 200, answer.text
    assert (answer.json()["proposed_points"], answer.json()["replayed_from"]) == (
        shifted.proposed_points,
        "2026-12-01",
    )
    too_far = client.post(
        f"{P}/rules/simulate", json={**body, "shift_years": 11}, headers=auth(keys["read"])
    )
    assert (too_far.status_code, too_far.json()["error"]) == (422, "validation_error")


@pytest.mark.parametrize(
    ("starts", "ends", "period", "expected"),
    [
        # Already past: replay its own dates as they are.
        ("2025-12-01", "2025-12-31", ("2026-11-01", "2026-11-30"), ("2025-12-01", "2025-12-31", 0)),
        # Two years ahead: the fewest years back that end by the period's end.
        ("2028-12-01", "2028-12-31", ("2026-11-01", "2026-11-30"), ("2028-12-01", "2028-12-31", 3)),
        # Open-ended: as long as the period asked for.
        (None, "2025-06-30", ("2026-01-01", "2026-01-10"), ("2025-06-21", "2025-06-30", 0)),
        # A window of years is cut to one.
        ("2027-01-01", "2030-12-31", ("2026-01-01", "2026-01-31"), None),
    ],
)
def test_the_suggested_replay(starts, ends, period, expected) -> None:
    from patron.rules.simulate import _suggestion, years_back

    got = _suggestion(
        None if starts is None else date.fromisoformat(starts),
        None if ends is None else date.fromisoformat(ends),
        *map(date.fromisoformat, period),
    )
    if expected is None:  # 2027-01-01 + 365 days, one year back, still after the period
        assert got is not None
        assert (got.date_from, got.date_to) == (date(2027, 1, 1), date(2028, 1, 1))
        assert got.shift_years == 2
    else:
        assert got is not None
        assert (got.date_from.isoformat(), got.date_to.isoformat(), got.shift_years) == expected
    assert years_back(date(2028, 2, 29), 1) == date(2027, 2, 28)


# --- the admin preview ----------------------------------------------------------------------------


@pytest.fixture
def web(app, db: Database, frozen) -> Iterator[TestClient]:
    create_staff(db, now=T0)
    seeded = seed_bakery(db)
    with db.unit_of_work() as session:
        program = programs.get_program(session, "bakery")
        # After the seeded sales: silver from the first (the year's points pass 5,000), then a
        # sale at silver.
        for n, (days, amount) in enumerate(((2, 600_000), (1, 10_000))):
            at = T0 - timedelta(days=days)
            buy(
                session,
                program,
                seeded.member_id,
                amount=amount,
                occurred_at=at,
                external_id=f"W{n}",
            )
    with TestClient(app) as test_client:
        yield test_client


def test_the_preview_replays_tiers_and_warns_about_dates(web: TestClient, db: Database) -> None:
    token = sign_in(web, STAFF["marketer"][0])
    base = {"csrf_token": token, "program": "bakery", "action": "candidate", "note": ""}
    unchanged = {**base, "base_version": "2", "change": "same"}
    with db.unit_of_work(readonly=True) as session:
        doc = rules.document(session, programs.get_program(session, "bakery"))
    current = json.dumps(doc.model_dump(mode="json", exclude_none=True))
    page = web.post("/admin/rules/preview", data={**unchanged, "candidate": current})
    assert page.status_code == 200, page.text
    today = T0.astimezone(SEOUL).date()
    report = replay(db, None, today - timedelta(days=29), today)
    assert report.current_points == report.actual_points
    assert f'<dd data-testid="sim-current">{report.current_points:,} points</dd>' in page.text
    assert f'<dd data-testid="sim-actual">{report.actual_points:,} points</dd>' in page.text
    assert '<tr data-rule="tier:silver">' in page.text and "Silver" in page.text
    assert 'data-testid="sim-warning"' not in page.text
    assert '<tr data-tier="silver">' in page.text and "Tier movement" in page.text
    assert 'data-testid="sim-no-tier-moves"' in page.text  # the same rules move no one

    december = {**unchanged, "candidate": json.dumps(with_december())}
    page = web.post(
        "/admin/rules/preview",
        data={**december, "sim_from": "2026-11-01", "sim_to": "2026-11-30"},
    )
    assert page.status_code == 200, page.text
    assert 'data-testid="sim-warning" data-rule="december"' in page.text
    assert "Rule december applies from" in page.text and "outside this period" in page.text
    # It offers the rule's own dates on last year's purchases; taking the offer replays them.
    assert 'data-testid="sim-suggestion" data-rule="december"' in page.text
    assert '<input type="hidden" name="sim_shift" value="1">' in page.text
    shifted = web.post(
        "/admin/rules/preview",
        data={**december, "sim_from": "2026-12-01", "sim_to": "2026-12-31", "sim_shift": "1"},
    )
    assert shifted.status_code == 200, shifted.text
    assert 'data-testid="sim-shifted"' in shifted.text and "1 year(s) earlier" in shifted.text
    assert 'data-testid="sim-warning"' not in shifted.text

    # Halving the base rate drops the member who reached silver in the window back to basic.
    halved = doc.model_dump(mode="json", exclude_none=True)
    halved["rules"][0]["points"] = 5
    page = web.post("/admin/rules/preview", data={**unchanged, "candidate": json.dumps(halved)})
    assert page.status_code == 200, page.text
    assert 'data-direction="down"' in page.text and "김민지" in page.text


# --- item 8: the tier movement a change causes ----------------------------------------------------


def test_the_tier_movement_of_a_change_is_reported(db: Database, tiered) -> None:
    day = datetime(2026, 2, 10, 12, 0, tzinfo=SEOUL)
    with db.unit_of_work() as session:
        program = programs.get_program(session, "bakery")
        # Kim: 4,900 points this year, 100 short of silver; Lee: 5,000 (silver since the sale).
        buy(session, program, tiered["Kim"], amount=490_000, occurred_at=day, external_id="K")
        buy(session, program, tiered["Lee"], amount=500_000, occurred_at=day, external_id="L")
    report = replay(db, None, date(2026, 2, 1), date(2026, 2, 28))
    assert report.tier_impact is not None
    assert (report.tier_impact.window, report.tier_impact.metric) == ("2026", "points")
    assert report.tier_impact.moves == []
    counts = {t.tier: (t.current_members, t.proposed_members) for t in report.tier_impact.tiers}
    assert counts == {"basic": (1, 1), "silver": (1, 1), "gold": (0, 0)}

    def with_base(points: int) -> RuleSetDoc:
        doc = demo.BAKERY_RULES.model_dump(mode="json", exclude_none=True)
        doc["rules"][0]["points"] = points
        return rules.validate_doc(doc)

    more = replay(db, with_base(11), date(2026, 2, 1), date(2026, 2, 28)).tier_impact
    assert more is not None
    [move] = more.moves
    assert (move.member_id, move.current_tier, move.proposed_tier) == (
        tiered["Kim"],
        "basic",
        "silver",
    )
    assert (move.current_metric, move.proposed_metric, move.direction) == (4900, 5390, "up")
    assert {t.tier: t.delta for t in more.tiers} == {"basic": -1, "silver": 1, "gold": 0}

    rows = list(
        csv.DictReader(
            io.StringIO(
                to_csv(replay(db, with_base(11), date(2026, 2, 1), date(2026, 2, 28))).decode(
                    "utf-8-sig"
                )
            )
        )
    )
    [row] = [r for r in rows if r["section"] == "tier_move"]
    assert (row["item"], row["kind"], row["delta"]) == (str(tiered["Kim"]), "basic->silver", "490")

    fewer = replay(db, with_base(9), date(2026, 2, 1), date(2026, 2, 28)).tier_impact
    assert fewer is not None
    assert [(m.member_id, m.proposed_tier, m.direction) for m in fewer.moves] == [
        (tiered["Lee"], "basic", "down")
    ]
    # A period before the window's purchases: nothing replayed, nothing moves.
    early = replay(db, with_base(11), date(2026, 1, 1), date(2026, 1, 31)).tier_impact
    assert early is not None and early.moves == []
