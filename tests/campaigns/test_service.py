"""Assignment, launch, budget, idempotency and results through the service."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from patron.audit.models import AuditRecord
from patron.audit.service import CLI
from patron.campaigns import service
from patron.campaigns.schemas import CampaignIn
from patron.coupons.models import Coupon
from patron.events.models import DomainEvent
from patron.experiments.models import Campaign, CampaignMember
from patron.ledger.models import Entry
from patron.programs.models import Program
from tests.campaigns.conftest import N, ab_body
from tests.tiers._tier_helpers import buy


def _create(db, world, now, **over):
    with db.unit_of_work() as s:
        program = s.get(Program, world["program"])
        service.create(s, program, CampaignIn.model_validate(ab_body(**over)), actor=CLI, now=now)


def _launch(db, world, now, code="winback"):
    with db.unit_of_work() as s:
        program = s.get(Program, world["program"])
        return service.launch(s, program, code, actor=CLI, now=now)[1]


@pytest.mark.sqlite_only
def test_assignment_is_deterministic_and_shares_hold():
    row = Campaign(id=7, program_id=1, code="x", holdout_pct=10,
                   arms=[{"key": "a", "share": 50}, {"key": "b", "share": 50}])  # fmt: skip
    ids = random.Random(1).sample(range(1, 10**9), 20_000) + list(range(1, 20_001))
    first = [service.arm_of(row, m) for m in ids]
    assert first == [service.arm_of(row, m) for m in ids]  # stable on re-run
    for part in (first[:20_000], first[20_000:]):  # random and sequential ids
        counts = Counter(part)
        assert abs(counts["control"] / 20_000 - 0.10) < 0.01
        assert abs(counts["a"] / 20_000 - 0.45) < 0.015
        assert abs(counts["b"] / 20_000 - 0.45) < 0.015
    other = Campaign(id=8, program_id=1, code="y", holdout_pct=10, arms=row.arms)
    assert [service.arm_of(other, m) for m in ids[:2000]] != first[:2000]  # per campaign
    assert service.boundaries(10, row.arms) == [("control", 1000), ("a", 5500), ("b", 10000)]


def test_launch_assigns_in_sql_as_in_python_and_gives_once(db, world, frozen):
    now = frozen
    _create(db, world, now)
    given = _launch(db, world, now)
    assert given.assigned == N
    with db.unit_of_work(readonly=True) as s:
        row = s.scalars(select(Campaign)).one()
        rows = s.scalars(select(CampaignMember)).all()
        assert len(rows) == N
        assert all(r.arm == service.arm_of(row, r.member_id) for r in rows)
        arms = Counter(r.arm for r in rows)
        b = [r for r in rows if r.arm == "b"]
        a = [r for r in rows if r.arm == "a"]
        assert all(r.outcome == "reached" and r.points == 500 and r.entry_id for r in b)
        assert all(r.outcome == "reached" and r.coupon_id for r in a)
        assert all(r.outcome == "none" for r in rows if r.arm == "control")
        assert row.points_given == 500 * arms["b"] == given.points
        assert row.coupons_given == arms["a"]
        assert s.scalar(select(func.count()).select_from(Coupon).where(
            Coupon.campaign == "winback")) == arms["a"]  # fmt: skip
        adjusts = s.scalar(select(func.count()).where(Entry.kind == "adjust",
                                                      Entry.points == 500))  # fmt: skip
        assert adjusts == arms["b"]
        kinds = set(s.scalars(select(DomainEvent.kind)))
        assert {"campaign.launched", "coupon.issued", "points.adjusted"} <= kinds
        assert s.scalar(select(AuditRecord.id).where(AuditRecord.action == "campaign.launched"))
    # A second launch is refused; the run job gives nobody anything twice.
    with pytest.raises(service.CampaignState):
        _launch(db, world, now)
    with db.unit_of_work() as s:
        again = service.run(s, s.get(Program, world["program"]), "winback", actor=CLI, now=now)
    assert (again.points, again.coupons, again.assigned) == (0, 0, 0)


def test_budget_is_never_exceeded(db, world, frozen):
    _create(db, world, frozen, budget_points=500 * 10 + 499, budget_coupons=7)
    given = _launch(db, world, frozen)
    with db.unit_of_work(readonly=True) as s:
        row = s.scalars(select(Campaign)).one()
        assert row.points_given == 5000 and row.coupons_given == 7
        outcomes = Counter((r.arm, r.outcome) for r in s.scalars(select(CampaignMember)))
    assert outcomes[("b", "reached")] == 10 and outcomes[("a", "reached")] == 7
    assert given.no_budget == outcomes[("a", "no_budget")] + outcomes[("b", "no_budget")] > 0


def test_live_campaign_adds_new_members_on_run(db, world, frozen):
    from tests.factories import make_member

    _create(db, world, frozen, targeting="live", ends_at=(frozen + timedelta(days=30)).isoformat())
    _launch(db, world, frozen)
    with db.unit_of_work() as s:
        program = s.get(Program, world["program"])
        newcomers = [make_member(s, now=frozen, program=program, attributes={"club": "yes"}).id
                     for _ in range(5)]  # fmt: skip
    with db.unit_of_work() as s:
        program = s.get(Program, world["program"])
        given = service.run(s, program, "winback", actor=CLI, now=frozen + timedelta(days=1))
    assert given.assigned == 5
    with db.unit_of_work() as s:
        program = s.get(Program, world["program"])
        service.run(s, program, "winback", actor=CLI, now=frozen + timedelta(days=31))
        assert service.get_campaign(s, program, "winback").status == "ended"
        assert s.scalar(select(func.count()).where(CampaignMember.member_id.in_(newcomers))) == 5


def test_results_match_hand_computed_figures(db, world, frozen):
    """Variant b (500 points) against a 50 % holdout: control members with an even id buy once
    (10 000 KRW), odd ones never; b members buy twice if their id is divisible by 3, else once.
    The expected figures come from the raw per-member lists (statistics.mean/variance and the
    delta-method formula written out), not from the service's SQL."""
    import math
    import statistics as st

    now = frozen
    _create(db, world, now, holdout_pct=50,
            variants=[{"key": "b", "name": "Bonus", "share": 100,
                       "action": {"kind": "points", "points": 500}}])  # fmt: skip
    _launch(db, world, now - timedelta(days=14))
    visits: dict[str, list[int]] = {"control": [], "b": []}
    with db.unit_of_work() as s:
        program = s.get(Program, world["program"])
        arms = {
            m: arm for m, arm in s.execute(select(CampaignMember.member_id, CampaignMember.arm))
        }
        for m, arm in sorted(arms.items()):
            n = (1 if m % 2 == 0 else 0) if arm == "control" else (2 if m % 3 == 0 else 1)
            visits[arm].append(n)
            for k in range(n):
                buy(s, program, m, 10000, now=now - timedelta(days=10 - k))
        buy(s, program, world["first"], 10000, now=now - timedelta(days=20))  # before: not counted
    with db.unit_of_work(readonly=True) as s:
        program = s.get(Program, world["program"])
        row = service.get_campaign(s, program, "winback")
        out = service.results(s, program, row, period="during", language="en", now=now)
        after = service.results(s, program, row, period="after", language="en", now=now)
    by = {a.arm: a for a in out.arms}
    c, b = visits["control"], visits["b"]
    assert len(c) >= 30 and len(b) >= 30
    assert by["control"].members == len(c) and by["b"].members == len(b)
    assert by["b"].visits == sum(b) and by["control"].visits == sum(c)
    assert by["b"].visits_per_member == round(st.mean(b), 4)
    assert by["control"].visit_rate == round(sum(1 for x in c if x) / len(c), 4)
    assert by["b"].spend_per_member == round(10000 * st.mean(b))
    assert by["b"].points_given == 500 * len(b) and by["control"].points_given == 0
    mb, mc = st.mean(b), st.mean(c)
    se = math.sqrt(st.variance(b) / len(b) / mc**2 + mb**2 * st.variance(c) / len(c) / mc**4)
    z = 1.959963984540054
    u = {(x.arm, x.metric): x for x in out.uplifts}["b", "visits"]
    assert u.estimate == pytest.approx(mb / mc - 1, abs=1e-4)
    assert u.lo == pytest.approx(mb / mc - 1 - z * se, abs=1e-4)
    assert u.hi == pytest.approx(mb / mc - 1 + z * se, abs=1e-4)
    assert u.finding == "raised"
    lo, hi = f"{(mb / mc - 1 - z * se) * 100:.1f}", f"{(mb / mc - 1 + z * se) * 100:.1f}"
    assert u.verdict == f"Bonus raised visits by {lo}–{hi} % at 95 % confidence"
    # The campaign still runs: nothing is "after" it yet.
    assert after.window_from is None and all(a.visits == 0 for a in after.arms)
    assert {x.finding for x in after.uplifts if x.metric == "visits"} == {"not_enough"}


@pytest.mark.sqlite_only
def test_intervals_match_published_examples():
    from patron.campaigns import stats

    w = stats.wilson(81, 263)  # Newcombe (1998), table I: 0.2553 to 0.3662
    assert (round(w.lo, 4), round(w.hi, 4)) == (0.2553, 0.3662)
    d = stats.newcombe(56, 70, 48, 80)  # Newcombe (1998), method 10: 0.0524 to 0.3339
    assert (round(d.lo, 4), round(d.hi, 4)) == (0.0524, 0.3339)
    assert stats.verdict("not_enough", arm="B", metric="visits", interval=None, unit="%",
                         language="ko") == "B: 아직 데이터가 충분하지 않습니다"  # fmt: skip
    iv = stats.Interval(0.06, 0.04, 0.09)
    assert (
        stats.verdict("raised", arm="B", metric="visits", interval=iv, unit="%", language="en")
        == "B raised visits by 4.0–9.0 % at 95 % confidence"
    )
    assert "提高了4.0–9.0%" in stats.verdict("raised", arm="B", metric="visits", interval=iv,
                                            unit="%", language="zh")  # fmt: skip


@pytest.mark.sqlite_only
def test_an_uncertain_control_gives_no_ratio():
    from patron.campaigns import stats

    variant = stats.Moments(40, 20, 30)
    sparse = stats.Moments(38, 2, 2)  # 2 visits among 38 members: RSE ≈ 0.69
    assert stats.ratio_uplift(variant, sparse) is None
    assert stats.ratio_uplift(variant, stats.Moments(38, 0, 0)) is None
    steady = stats.Moments(40, 20, 20)  # half visited once: RSE ≈ 0.16
    assert stats.ratio_uplift(variant, steady) is not None
