"""Two evaluation runs at once (two workers, or the CLI beside the worker) on PostgreSQL, each
on its own connection: every achievement, its points and its event exist exactly once."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from patron import clock
from patron.events.models import DomainEvent
from patron.ledger.models import Entry
from patron.milestones import jobs
from patron.milestones.models import MilestoneAchievement
from tests.api.helpers import enroll
from tests.milestones.conftest import buy, goal, seoul

MEMBERS = 12


@pytest.mark.postgresql_only
def test_concurrent_runs_award_once(db, client, admin, pos, bakery):
    clock.freeze(seoul(2026, 3, 10, 12, 0))
    for n in range(MEMBERS):
        phone = f"010-5555-{n:04d}"
        enroll(client, pos, name=f"M{n}", phone=phone)
        buy(client, pos, phone, f"S{n}", seoul(2026, 3, 9, 12, 0))
    goal(client, admin, code="first-visit", kind="visits", target=1, points=70)
    goal(client, admin, code="first-month", kind="visits", target=1, window="month", repeat=True)

    for _round in range(2):
        barrier = threading.Barrier(3)
        reports: list[jobs.RunOut] = []
        errors: list[BaseException] = []

        def worker(barrier=barrier, reports=reports, errors=errors) -> None:
            try:
                barrier.wait(timeout=10)
                reports.append(jobs.run_program(db, "bakery", now=clock.now()))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        awarded = sum(i.achieved for r in reports for i in r.items)
        assert awarded == (2 * MEMBERS if _round == 0 else 0)

    with db.unit_of_work(readonly=True) as session:
        per_member = session.execute(
            select(
                MilestoneAchievement.milestone_id, MilestoneAchievement.member_id, func.count()
            ).group_by(MilestoneAchievement.milestone_id, MilestoneAchievement.member_id)
        ).all()
        assert len(per_member) == 2 * MEMBERS and {n for *_, n in per_member} == {1}
        events = session.scalar(
            select(func.count()).where(DomainEvent.kind == "milestone.achieved")
        )
        assert events == 2 * MEMBERS
        credits = session.execute(
            select(Entry.account_id, func.count(), func.sum(Entry.points))
            .where(Entry.kind == "adjust")
            .group_by(Entry.account_id)
        ).all()
        assert len(credits) == MEMBERS and {(n, p) for _, n, p in credits} == {(1, 70)}
