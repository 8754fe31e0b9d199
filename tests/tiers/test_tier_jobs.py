"""The period evaluation: policies, manual tiers, idempotency, resumption and dry runs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from patron.audit.service import CLI
from patron.db.engine import Database
from patron.events.models import DomainEvent
from patron.programs.service import get_program
from patron.tiers import jobs, progress, service
from patron.tiers.models import TierChange, TierEvaluationRun
from patron.tiers.schemas import ManualTierRequest
from tests.factories import make_member, make_program
from tests.tiers._tier_helpers import AFTER_H1, AFTER_H2, H2_START, account, buy, changes, set_club

H1_2027_END = datetime(2027, 7, 1, 3, 0, tzinfo=UTC)


def _setup(db: Database, now: datetime, spends: list[int], **policy: Any) -> list[int]:
    """The club with one member per amount spent on T0 (10 points per 1,000 KRW)."""
    with db.unit_of_work() as session:
        program = make_program(session, now=now)
        set_club(session, program, now=now, **policy)
        ids = []
        for amount in spends:
            member = make_member(session, now=now, program=program)
            if amount:
                buy(session, program, member.id, amount, now=now)
            else:  # enrolled, never bought
                from patron.ledger.service import open_account

                open_account(session, program_id=program.id, member_id=member.id, now=now)
            ids.append(member.id)
        return ids


def _tiers(db: Database, member_ids: list[int]) -> list[str | None]:
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, "bakery")
        return [account(session, program, m).tier for m in member_ids]


def _count(db: Database, model: Any) -> int:
    """Rows of `model`; for the outbox, only tier.changed events (earns write their own)."""
    query = select(func.count()).select_from(model)
    if model is DomainEvent:
        query = query.where(DomainEvent.kind == "tier.changed")
    with db.unit_of_work(readonly=True) as session:
        return int(session.scalar(query) or 0)


def test_next_period_upgrades_happen_at_the_evaluation(db, frozen):
    ids = _setup(db, frozen, [150_000, 0], upgrade="next_period")
    assert _tiers(db, ids) == [None, None]
    summary = jobs.evaluate(db, "bakery", AFTER_H1, actor=CLI, now=AFTER_H1)
    assert summary.period == "2026H1" and summary.status == "done"
    assert summary.moves == {"none→bronze": 1, "none→silver": 1}
    assert summary.accounts == 2
    assert _tiers(db, ids) == ["silver", "bronze"]
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, "bakery")
        change = changes(session, program, ids[0])[0]
        assert (change.reason, change.period, change.metric_value) == (
            "period_evaluation",
            "2026H1",
            1500,
        )
        acc = account(session, program, ids[0])
        assert acc.tier_since == H2_START  # the period boundary
        assert acc.tier_valid_until == datetime(2026, 12, 31, 15, 0, tzinfo=UTC)
    assert _count(db, DomainEvent) == 2


@pytest.mark.parametrize(
    ("downgrade", "after_h2", "after_h1_2027"),
    [
        ("to_earned", "bronze", "bronze"),
        ("one_level", "silver", "bronze"),
        ("grace", "gold", "bronze"),
    ],
)
def test_downgrade_policies(db, frozen, downgrade, after_h2, after_h1_2027):
    ids = _setup(db, frozen, [300_000], downgrade=downgrade, grace_periods=1)
    assert _tiers(db, ids) == ["gold"]  # immediate upgrade in H1
    first = jobs.evaluate(db, "bakery", AFTER_H1, now=AFTER_H1)
    assert first.moves == {} and _tiers(db, ids) == ["gold"]  # earned gold in H1: kept
    second = jobs.evaluate(db, "bakery", AFTER_H2, now=AFTER_H2)  # nothing earned in H2
    assert second.period == "2026H2" and _tiers(db, ids) == [after_h2]
    assert second.kept_in_grace == (1 if downgrade == "grace" else 0)
    third = jobs.evaluate(db, "bakery", H1_2027_END, now=H1_2027_END)
    assert third.period == "2027H1" and _tiers(db, ids) == [after_h1_2027]


def test_an_upgrade_in_the_new_window_is_not_undone_by_the_old_window(db, frozen):
    ids = _setup(db, frozen, [50_000])
    with db.unit_of_work() as session:
        program = get_program(session, "bakery")
        buy(session, program, ids[0], 300_000, now=AFTER_H1)  # gold in H2, before the run
    summary = jobs.evaluate(db, "bakery", AFTER_H1, now=AFTER_H1)
    assert summary.moves == {} and _tiers(db, ids) == ["gold"]


def _manual_gold(db: Database, member_id: int, now: datetime) -> None:
    with db.unit_of_work() as session:
        service.set_manual(
            session,
            get_program(session, "bakery"),
            member_id,
            ManualTierRequest(
                tier="gold", reason="appeal: weighting unfair", until=date(2026, 12, 31)
            ),
            actor=CLI,
            now=now,
        )


def test_a_manual_tier_is_kept_until_its_end_date_under_keep(db, frozen):
    ids = _setup(db, frozen, [99_000], manual="keep")
    _manual_gold(db, ids[0], frozen)
    summary = jobs.evaluate(db, "bakery", AFTER_H1, now=AFTER_H1)
    assert summary.kept_manual == 1 and _tiers(db, ids) == ["gold"]
    ended = jobs.evaluate(db, "bakery", AFTER_H2, now=AFTER_H2)  # after 31 December
    assert ended.manual_ended == 1 and ended.moves == {"gold→bronze": 1}
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, "bakery")
        assert [c.reason for c in changes(session, program, ids[0])] == [
            "upgrade",
            "manual",
            "manual_ended",
        ]
        acc = account(session, program, ids[0])
        assert acc.tier == "bronze" and not acc.tier_manual and acc.tier_manual_until is None


def test_a_manual_tier_is_re_evaluated_under_reevaluate(db, frozen):
    ids = _setup(db, frozen, [99_000], manual="reevaluate")
    _manual_gold(db, ids[0], frozen)
    summary = jobs.evaluate(db, "bakery", AFTER_H1, now=AFTER_H1)
    assert summary.moves == {"gold→bronze": 1} and _tiers(db, ids) == ["bronze"]


def test_a_second_run_for_the_same_period_changes_nothing(db, frozen):
    ids = _setup(db, frozen, [150_000, 350_000, 0], upgrade="next_period")
    first = jobs.evaluate(db, "bakery", AFTER_H1, now=AFTER_H1)
    history, events = _count(db, TierChange), _count(db, DomainEvent)
    again = jobs.evaluate(
        db, "bakery", datetime(2026, 8, 1, tzinfo=UTC), now=datetime(2026, 8, 1, tzinfo=UTC)
    )
    assert again.already_done and again.moves == first.moves
    assert (_count(db, TierChange), _count(db, DomainEvent)) == (history, events)
    assert _tiers(db, ids) == ["silver", "gold", "bronze"]


class Interrupt(Exception):
    pass


def test_an_interrupted_run_resumes_where_it_stopped(db, frozen):
    spends = [150_000, 350_000, 0, 700_000, 20_000]
    ids = _setup(db, frozen, spends, upgrade="next_period")
    calls: list[tuple[int, int]] = []

    def crash(done: int, total: int) -> None:
        calls.append((done, total))
        raise Interrupt

    with pytest.raises(Interrupt):
        jobs.evaluate(db, "bakery", AFTER_H1, batch_size=2, progress=crash, now=AFTER_H1)
    assert calls == [(2, 5)]
    assert _tiers(db, ids)[:2] == ["silver", "gold"] and _tiers(db, ids)[2:] == [None] * 3
    with db.unit_of_work(readonly=True) as session:
        run = session.scalars(select(TierEvaluationRun)).one()
        assert run.status == "running" and run.last_account_id == 2

    seen: list[tuple[int, int]] = []
    summary = jobs.evaluate(
        db,
        "bakery",
        AFTER_H1,
        batch_size=2,
        progress=lambda d, t: seen.append((d, t)),
        now=AFTER_H1,
    )
    assert seen == [(4, 5), (5, 5)]
    assert _tiers(db, ids) == ["silver", "gold", "bronze", "platinum", "bronze"]
    # The same as one uninterrupted run: every member moved once, the summary is whole.
    assert summary.accounts == 5
    assert summary.moves == {"none→bronze": 2, "none→gold": 1, "none→platinum": 1, "none→silver": 1}
    assert _count(db, TierChange) == 5 and _count(db, DomainEvent) == 5


def test_a_dry_run_writes_nothing_and_predicts_the_real_run(db, frozen):
    ids = _setup(db, frozen, [150_000, 0], upgrade="next_period")
    dry = jobs.evaluate(db, "bakery", AFTER_H1, dry_run=True, batch_size=1, now=AFTER_H1)
    assert dry.dry_run and dry.moves == {"none→bronze": 1, "none→silver": 1}
    assert _tiers(db, ids) == [None, None]
    assert (_count(db, TierChange), _count(db, TierEvaluationRun), _count(db, DomainEvent)) == (
        0,
        0,
        0,
    )
    real = jobs.evaluate(db, "bakery", AFTER_H1, batch_size=1, now=AFTER_H1)
    assert real.moves == dry.moves and real.accounts == dry.accounts


def test_the_evaluated_window_is_the_one_that_ended_at_or_before_as_of(db, frozen):
    _setup(db, frozen, [150_000], upgrade="next_period")
    exactly = jobs.evaluate(db, "bakery", H2_START, dry_run=True)
    assert exactly.period == "2026H1"
    before = jobs.evaluate(
        db, "bakery", jobs.as_of_instant(date(2026, 6, 30), "Asia/Seoul", frozen), dry_run=True
    )
    assert before.period == "2025H2" and before.moves == {"none→bronze": 1}
    assert _count(db, TierChange) == 0


END_H2 = datetime(2026, 12, 31, 15, 0, tzinfo=UTC)  # 00:00 on 1 January 2027 in Seoul
END_H1_2027 = datetime(2027, 6, 30, 15, 0, tzinfo=UTC)


def _held(db: Database, member_ids: list[int]) -> list[tuple[datetime | None, datetime | None]]:
    """(the account's own validity, the validity readers show) per member."""
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, "bakery")
        out = []
        for member_id in member_ids:
            acc = account(session, program, member_id)
            shown = progress.progress(session, program, acc, AFTER_H2).valid_until
            assert shown == service.held_until(session, acc)
            out.append((acc.tier_valid_until, shown))
        return out


def test_a_member_who_keeps_a_tier_is_not_written_and_holds_it_a_period_more(db, frozen):
    """Decision 0015: the run keeps the period's validity once, on its row; only the accounts
    that move are written; readers show what the run used to write to every account."""
    ids = _setup(db, frozen, [150_000, 150_000])  # both silver in H1, valid to the end of H2
    with db.unit_of_work() as session:
        buy(session, get_program(session, "bakery"), ids[0], 150_000, now=AFTER_H1)  # H2: silver
    assert jobs.evaluate(db, "bakery", AFTER_H1, now=AFTER_H1).moves == {}
    summary = jobs.evaluate(db, "bakery", AFTER_H2, now=AFTER_H2)
    assert summary.moves == {"silver→bronze": 1} and _tiers(db, ids) == ["silver", "bronze"]
    # The one who kept silver was not written: its own column still says the end of H2.
    assert _held(db, ids) == [(END_H2, END_H1_2027), (END_H1_2027, END_H1_2027)]
    with db.unit_of_work(readonly=True) as session:
        runs = {r.period: r.valid_until for r in session.scalars(select(TierEvaluationRun))}
    assert runs == {"2026H1": END_H2, "2026H2": END_H1_2027}


def test_a_manual_tier_keeps_its_own_validity(db, frozen):
    ids = _setup(db, frozen, [99_000], manual="keep")
    with db.unit_of_work() as session:
        service.set_manual(
            session,
            get_program(session, "bakery"),
            ids[0],
            ManualTierRequest(tier="gold", reason="appeal", until=date(2026, 9, 30)),
            actor=CLI,
            now=frozen,
        )
    assert jobs.evaluate(db, "bakery", AFTER_H1, now=AFTER_H1).kept_manual == 1
    end_of_september = datetime(2026, 9, 30, 15, 0, tzinfo=UTC)  # not the run's end of H2
    assert _held(db, ids) == [(end_of_september, end_of_september)]


def test_an_interrupted_run_holds_only_the_accounts_it_has_done(db, frozen):
    ids = _setup(db, frozen, [150_000, 150_000, 150_000])  # silver in H1
    with db.unit_of_work() as session:
        program = get_program(session, "bakery")
        for member_id in ids:  # silver again in H2: nobody moves at the H2 run
            buy(session, program, member_id, 150_000, now=AFTER_H1)

    def crash(done: int, total: int) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        jobs.evaluate(db, "bakery", AFTER_H2, batch_size=1, progress=crash, now=AFTER_H2)
    assert [shown for _, shown in _held(db, ids)] == [END_H1_2027, END_H2, END_H2]
    summary = jobs.evaluate(db, "bakery", AFTER_H2, batch_size=1, now=AFTER_H2)
    assert summary.accounts == 3 and summary.moves == {}
    assert _held(db, ids) == [(END_H2, END_H1_2027)] * 3
