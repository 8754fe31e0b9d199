"""Real concurrent connections on PostgreSQL: two launches of one campaign, and two runs of
the job at once, never give twice nor past the budget (the campaign's row lock)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from patron.audit.service import CLI
from patron.campaigns import service
from patron.campaigns.schemas import CampaignIn
from patron.errors import PatronError
from patron.experiments.models import Campaign, CampaignMember
from patron.ledger.models import Entry
from patron.programs.models import Program
from tests.campaigns.conftest import ab_body
from tests.factories import make_member

pytestmark = pytest.mark.postgresql_only


def _together(n: int, work) -> list[object]:
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def go(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work()
        except PatronError as exc:
            results[i] = exc.code

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_concurrent_launches_and_runs_give_once_within_budget(db, world, frozen):
    budget = 500 * 50
    body = ab_body(targeting="live", budget_points=budget,
                   ends_at=(frozen + timedelta(days=30)).isoformat())  # fmt: skip
    body["variants"] = [{"key": "b", "share": 100, "action": {"kind": "points", "points": 500}}]
    with db.unit_of_work() as s:
        service.create(s, s.get(Program, world["program"]), CampaignIn.model_validate(body),
                       actor=CLI, now=frozen)  # fmt: skip

    def launch():
        with db.unit_of_work() as s:
            return service.launch(s, s.get(Program, world["program"]), "winback", actor=CLI,
                                  now=frozen)[1].points  # fmt: skip

    outcomes = _together(3, launch)
    assert sorted(map(str, outcomes)).count("campaign_state") == 2

    with db.unit_of_work() as s:
        program = s.get(Program, world["program"])
        for _ in range(40):
            make_member(s, now=frozen, program=program, attributes={"club": "yes"})

    def run():
        with db.unit_of_work() as s:
            return service.run(s, s.get(Program, world["program"]), "winback", actor=CLI,
                               now=frozen + timedelta(hours=1)).points  # fmt: skip

    runs = _together(3, run)
    assert all(isinstance(r, int) for r in runs), runs
    with db.unit_of_work(readonly=True) as s:
        given = s.scalars(select(Campaign)).one().points_given
        entries = s.scalars(
            select(Entry.account_id).where(
                Entry.kind == "adjust", Entry.reason == "campaign winback"
            )
        ).all()
        outcomes_ = Counter(s.scalars(select(CampaignMember.outcome)))
        members = s.scalar(select(func.count()).select_from(CampaignMember))
    assert given == 500 * len(entries) <= budget
    assert len(entries) == len(set(entries)) == outcomes_["reached"]  # once per member
    assert members == 120 and outcomes_["none"] > 0  # every member once; a 10 % holdout
    assert outcomes_["no_budget"] > 0 and outcomes_["assigned"] == 0
