"""The demo's win-back campaign: a year of history brings the lapsed cohort and its results."""

from __future__ import annotations

import pytest

from patron import demo
from patron.campaigns import service
from patron.check import run_check
from patron.programs.service import get_program
from patron.review import queue


@pytest.mark.sqlite_only  # the campaign's SQL runs on both engines in test_service.py
def test_the_demo_campaign_wins_back_more_with_the_coupon_than_the_control(db, frozen):
    demo.load(db, now=frozen, members_count=3, days=demo.CAMPAIGN_MIN_DAYS)
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, "bakery")
        row = service.get_campaign(session, program, "winback-ab")
        assert row.status == "ended"
        result = service.results(session, program, row, now=frozen)
        arms = {a.arm: a for a in result.arms}
        assert sum(a.members for a in arms.values()) == demo.LAPSED_MEMBERS
        # 10 % holdout, the rest split 50/50: the shares hold within a few members.
        assert 20 <= arms["control"].members <= 65
        assert abs(arms["a"].members - arms["b"].members) <= 60
        assert arms["a"].coupons_given == arms["a"].members and arms["a"].coupons_redeemed > 0
        assert arms["b"].points_given == 2000 * arms["b"].members
        assert arms["a"].visit_rate > arms["b"].visit_rate > arms["control"].visit_rate
        # The cohort's history predates the fraud controls: only the demo's held sale waits.
        rows, _more = queue.list_reviews(session, program)
        assert [r.external_id for r in rows] == ["MAPO-REVIEW-0001"]
        assert run_check(session).ok
