"""The set-based period evaluation against the per-member rules it replaced.

`reference` below is the row-by-row decision the evaluation used to make in Python; the SQL
evaluation must give every account the same columns, the same history and the same counts, for
random account states under every policy, whatever the chunk size. Then: other programs' accounts
inside a chunk's id range, a crash inside a chunk, and (PostgreSQL) an immediate upgrade that
commits while the evaluation waits for its lock.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from patron.audit.service import CLI
from patron.clock import as_utc
from patron.db.engine import Database
from patron.events.models import DomainEvent
from patron.ledger.models import Account
from patron.ledger.service import open_account
from patron.programs.service import get_program
from patron.tiers import jobs, service
from patron.tiers.metrics import metric_values, qualify
from patron.tiers.models import TierChange
from tests.factories import BAKERY, make_member, make_program
from tests.tiers._tier_helpers import (
    AFTER_H1,
    H2_START,
    account,
    adjust,
    buy,
    changes,
    refund,
    set_club,
)

TIER_EVENT = DomainEvent.kind == "tier.changed"

TIER_COLUMNS = (
    "tier",
    "tier_since",
    "tier_valid_until",
    "tier_manual",
    "tier_manual_until",
    "tier_grace_left",
)


def reference(plan: jobs.Plan, row: dict[str, Any], value: int) -> dict[str, Any]:
    """What the per-member loop did with one account: its columns after the evaluation, its
    history row (or None) and which counters it fed."""
    policy, tiers = plan.policy, plan.tiers
    current_rank = service.rank_of(tiers, row["tier"])
    earned = qualify(tiers, value)
    earned_rank = earned.rank if earned is not None else -1
    out: dict[str, Any] = {"row": dict(row), "history": None, "counters": []}
    manual_ended = False
    decided = True
    if row["tier_manual"] and policy.manual == "keep":
        until = row["tier_manual_until"]
        if until is None or until > plan.as_of:
            if earned_rank <= current_rank:
                out["counters"].append("kept_manual")
                decided = False
        else:
            manual_ended = True
    if decided:
        recent = (
            not row["tier_manual"]
            and row["tier_since"] is not None
            and plan.window.end is not None
            and row["tier_since"] >= plan.window.end
        )
        grace = policy.grace_periods
        if earned_rank >= current_rank:
            target_rank = earned_rank
        elif recent:
            target_rank, grace = current_rank, row["tier_grace_left"]
        elif policy.downgrade == "one_level":
            target_rank = current_rank - 1
        elif policy.downgrade == "grace" and row["tier_grace_left"] > 0:
            target_rank, grace = current_rank, row["tier_grace_left"] - 1
            out["counters"].append("kept_in_grace")
        else:
            target_rank = earned_rank
        target = next((t.code for t in tiers if t.rank == target_rank), None)
        if target_rank == current_rank:
            target = row["tier"]
        moved = target != row["tier"]
        if manual_ended:
            out["counters"].append("manual_ended")
        if moved or manual_ended or grace != row["tier_grace_left"]:
            new = out["row"]
            new.update(
                tier=target,
                tier_since=plan.since if moved else row["tier_since"],
                tier_valid_until=plan.valid if moved or manual_ended else row["tier_valid_until"],
                tier_manual=False if moved or manual_ended else row["tier_manual"],
                tier_manual_until=None if moved or manual_ended else row["tier_manual_until"],
                tier_grace_left=grace,
            )
        if moved:
            reason = "manual_ended" if manual_ended else "period_evaluation"
            out["history"] = (row["tier"], target, reason, value)
    new = out["row"]
    if (
        plan.valid is not None
        and new["tier"] is not None
        and not new["tier_manual"]
        and (new["tier_valid_until"] is None or new["tier_valid_until"] < plan.valid)
    ):
        new["tier_valid_until"] = plan.valid  # everyone keeping a tier holds it a window more
    return out


def _columns(session: Session, acc: Account) -> dict[str, Any]:
    """The account's tier as readers see it: the validity is the account's own or the period's
    (decision 0015)."""
    values = {name: getattr(acc, name) for name in TIER_COLUMNS}
    for name in ("tier_since", "tier_manual_until"):
        values[name] = as_utc(values[name]) if values[name] is not None else None
    values["tier_valid_until"] = service.held_until(session, acc)
    return values


POINTS = [0, 500, 999, 1000, 2999, 3000, 6000, 9999, 10000, 15000]
CASES = [  # downgrade, manual, window
    ("to_earned", "keep", "half_year"),
    ("one_level", "keep", "half_year"),
    ("grace", "keep", "half_year"),
    ("to_earned", "reevaluate", "half_year"),
    ("grace", "reevaluate", "lifetime"),
    ("one_level", "keep", "rolling"),
]


def _random_population(db: Database, now: datetime, rng: random.Random, n: int, **policy) -> None:
    """n members with random qualifying points this half-year and random tier states."""
    with db.unit_of_work() as session:
        program = make_program(session, now=now)
        set_club(session, program, now=now, upgrade="next_period", grace_periods=2, **policy)
        for _ in range(n):
            member = make_member(session, now=now, program=program)
            open_account(session, program_id=program.id, member_id=member.id, now=now)
            if points := rng.choice(POINTS):
                adjust(session, program, member.id, points, now=now, qualifying=True)
        valid = service.valid_until(
            service.get_policy(session, program.id),
            program.timezone,
            jobs.evaluation_window(service.get_policy(session, program.id), "Asia/Seoul", AFTER_H1),
        )
        for acc in session.scalars(select(Account).where(Account.program_id == program.id)):
            manual = rng.random() < 0.3
            session.execute(
                update(Account)
                .where(Account.id == acc.id)
                .values(
                    tier=rng.choice(
                        [None, "bronze", "silver", "gold", "platinum", "diamond", "retired"]
                    ),
                    tier_since=rng.choice(
                        [None, datetime(2026, 1, 5, tzinfo=UTC), H2_START + timedelta(hours=1)]
                    ),
                    tier_manual=manual,
                    tier_manual_until=rng.choice(
                        [None, AFTER_H1 - timedelta(days=1), AFTER_H1 + timedelta(days=30)]
                    )
                    if manual
                    else None,
                    tier_grace_left=rng.choice([0, 1, 2]),
                    tier_valid_until=rng.choice(
                        [None, H2_START]
                        + ([valid, valid + timedelta(days=365)] if valid is not None else [])
                    ),
                )
            )


@pytest.mark.parametrize(("downgrade", "manual", "window"), CASES)
def test_the_set_based_evaluation_makes_the_per_member_decisions(
    db, frozen, downgrade, manual, window
):
    rng = random.Random(f"{downgrade}/{manual}/{window}")
    _random_population(db, frozen, rng, 40, downgrade=downgrade, manual=manual, window=window)
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, "bakery")
        plan = jobs._plan(session, program, AFTER_H1, CLI)
        values = metric_values(session, program_id=program.id, metric="points", window=plan.window)
        before = {
            acc.id: _columns(session, acc)
            for acc in session.scalars(select(Account).where(Account.program_id == program.id))
        }
        expected = {i: reference(plan, row, values.get(i, 0)) for i, row in before.items()}
        period, since = plan.period, plan.since
    moves = Counter(
        f"{e['history'][0] or 'none'}→{e['history'][1] or 'none'}"
        for e in expected.values()
        if e["history"]
    )
    counters = Counter(name for e in expected.values() for name in e["counters"])

    dry = jobs.evaluate(db, "bakery", AFTER_H1, dry_run=True, batch_size=7, now=AFTER_H1)
    summary = jobs.evaluate(
        db, "bakery", AFTER_H1, batch_size=rng.choice([1, 6, 1000]), actor=CLI, now=AFTER_H1
    )

    for result in (dry, summary):
        assert result.accounts == len(before)
        assert result.moves == dict(sorted(moves.items()))
        assert (result.kept_manual, result.kept_in_grace, result.manual_ended) == (
            counters["kept_manual"],
            counters["kept_in_grace"],
            counters["manual_ended"],
        )
    with db.unit_of_work(readonly=True) as session:
        after = {
            acc.id: _columns(session, acc)
            for acc in session.scalars(select(Account).where(Account.id.in_(list(before))))
        }
        history = {
            c.account_id: (c.from_tier, c.to_tier, c.reason, c.metric_value)
            for c in session.scalars(select(TierChange).where(TierChange.reason != "manual"))
        }
        assert all(
            c.period == period and as_utc(c.at) == since and c.actor == str(CLI)
            for c in session.scalars(select(TierChange))
        )
        events = [
            (e.kind, e.payload)
            for e in session.scalars(select(DomainEvent).where(DomainEvent.kind == "tier.changed"))
        ]
    assert after == {i: e["row"] for i, e in expected.items()}
    assert history == {i: e["history"] for i, e in expected.items() if e["history"]}
    assert len(events) == sum(moves.values())
    for kind, payload in events:
        assert (payload["from"], payload["to"], payload["reason"]) == history[
            payload["account_id"]
        ][:3]
        assert payload["program"] == "bakery" and payload["period"] == period
        assert payload["at"] == since.isoformat() and kind == "tier.changed"


def test_other_programs_accounts_inside_a_chunk_are_left_alone(db, frozen):
    with db.unit_of_work() as session:
        bakery = make_program(session, now=frozen)
        club = make_program(session, now=frozen, base={**BAKERY, "code": "club"})
        set_club(session, bakery, now=frozen, upgrade="next_period")
        set_club(session, club, now=frozen, upgrade="next_period")
        mine, theirs = [], []
        for n in range(6):  # account ids alternate between the programs
            for program, ids in ((bakery, mine), (club, theirs)):
                member = make_member(session, now=frozen, program=program)
                buy(session, program, member.id, 150_000 * (n + 1), now=frozen)
                ids.append(member.id)

    summary = jobs.evaluate(db, "bakery", AFTER_H1, batch_size=4, now=AFTER_H1)

    assert summary.accounts == 6 and sum(summary.moves.values()) == 6
    with db.unit_of_work(readonly=True) as session:
        bakery, club = get_program(session, "bakery"), get_program(session, "club")
        assert [account(session, bakery, m).tier for m in mine] == [
            "silver",
            "gold",
            "gold",
            "platinum",
            "platinum",
            "platinum",
        ]
        assert {account(session, club, m).tier for m in theirs} == {None}
        assert session.scalar(select(func.count()).select_from(TierChange)) == 6


def test_a_crash_inside_a_chunk_leaves_it_undone_and_the_run_resumes(db, frozen, monkeypatch):
    with db.unit_of_work() as session:
        program = make_program(session, now=frozen)
        set_club(session, program, now=frozen, upgrade="next_period")
        for n in range(7):
            member = make_member(session, now=frozen, program=program)
            buy(session, program, member.id, 100_000 * (n + 1), now=frozen)
    real = jobs._write
    calls = {"n": 0}

    def crash_in_second_chunk(session, plan):
        calls["n"] += 1
        real(session, plan)
        if calls["n"] == 2:
            raise RuntimeError("lost the connection before the chunk committed")

    monkeypatch.setattr(jobs, "_write", crash_in_second_chunk)
    with pytest.raises(RuntimeError):
        jobs.evaluate(db, "bakery", AFTER_H1, batch_size=3, now=AFTER_H1)
    with db.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(TierChange)) == 3
        assert session.scalar(select(func.count()).select_from(DomainEvent).where(TIER_EVENT)) == 3

    monkeypatch.setattr(jobs, "_write", real)
    summary = jobs.evaluate(db, "bakery", AFTER_H1, batch_size=3, now=AFTER_H1)
    assert summary.accounts == 7 and sum(summary.moves.values()) == 7
    with db.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(TierChange)) == 7
        assert session.scalar(select(func.count()).select_from(DomainEvent).where(TIER_EVENT)) == 7


@pytest.mark.parametrize("metric", ["points", "spend"])
def test_rows_written_after_the_snapshot_count_in_later_chunks(db, frozen, metric):
    """The run reads every account's metric once, up front; an account with entries, purchases
    or refunds written since is read again, live, when its chunk comes."""
    with db.unit_of_work() as session:
        program = make_program(session, now=frozen)
        set_club(session, program, now=frozen, upgrade="next_period", metric=metric)
        ids = [make_member(session, now=frozen, program=program).id for _ in range(3)]
        for n, member_id in enumerate(ids):
            # points: 500 each (bronze); spend: 7,000 KRW each (platinum).
            amount = 50_000 if metric == "points" else 7_000
            buy(session, program, member_id, amount, now=frozen, external_id=f"sale-{n}")

    def between_chunks(done: int, total: int) -> None:
        if done != 1:
            return
        with db.unit_of_work() as session:
            program = get_program(session, "bakery")
            if metric == "points":  # a sale of March, recorded late: 3,000 more points
                buy(session, program, ids[2], 300_000, now=AFTER_H1, occurred_at=frozen)
            else:  # most of the sale refunded: 2,000 KRW kept
                refund(session, program, "sale-2", now=AFTER_H1, amount=Decimal(5000))

    summary = jobs.evaluate(
        db, "bakery", AFTER_H1, batch_size=1, progress=between_chunks, now=AFTER_H1
    )

    first = "none→bronze" if metric == "points" else "none→platinum"
    last = "none→gold" if metric == "points" else "none→silver"
    assert summary.moves == dict(sorted({first: 2, last: 1}.items()))
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, "bakery")
        change = changes(session, program, ids[2])[-1]
        assert change.metric_value == (3500 if metric == "points" else 2000)


@pytest.mark.postgresql_only
def test_an_immediate_upgrade_committed_while_the_evaluation_waits_is_kept(db, frozen):
    with db.unit_of_work() as session:
        program = make_program(session, now=frozen)
        set_club(session, program, now=frozen)  # immediate upgrades, downgrades to what was earned
        member_id = make_member(session, now=frozen, program=program).id
        buy(session, program, member_id, 150_000, now=frozen)  # silver in H1
        for _ in range(3):
            other = make_member(session, now=frozen, program=program)
            buy(session, program, other.id, 50_000, now=frozen)

    # In H2, before the H1 run: a big sale moves the member up to gold and holds the lock.
    started, release = threading.Event(), threading.Event()

    def till() -> None:
        with db.unit_of_work() as session:
            buy(session, get_program(session, "bakery"), member_id, 300_000, now=AFTER_H1)
            started.set()
            release.wait(20)

    sale = threading.Thread(target=till)
    sale.start()
    assert started.wait(20)
    result: dict[str, Any] = {}
    run = threading.Thread(
        target=lambda: result.setdefault(
            "summary", jobs.evaluate(db, "bakery", AFTER_H1, batch_size=1000, now=AFTER_H1)
        )
    )
    run.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        waiting = 0
        while not waiting and datetime.now(UTC) < deadline:
            with db.engine.connect() as conn:
                waiting = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
        assert waiting, "the evaluation did not wait for the sale's lock"
    finally:
        release.set()
        sale.join(20)
        run.join(60)
    # Earned silver in H1, but moved to gold in H2 before the run read the account: kept.
    assert result["summary"].moves == {}
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, "bakery")
        acc = account(session, program, member_id)
        assert acc.tier == "gold"
        assert [
            c.to_tier
            for c in session.scalars(
                select(TierChange).where(TierChange.account_id == acc.id).order_by(TierChange.id)
            )
        ] == ["silver", "gold"]
