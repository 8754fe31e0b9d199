"""Exact figures for the hand-built bakery month (tests/reports/_scenario.py), with the roll-up
empty, complete, and partly built (the rest read live)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from patron import clock
from patron.db.engine import Database
from patron.ledger.views import get_account
from patron.programs.service import get_program
from patron.reports import finance, members, period, rollup
from patron.reports.common import day_range
from tests.reports._scenario import Scenario, at, build

D = date(2026, 3, 1)

# (day, {figure: value}) for every local day with entries, by when the points moved.
OCCURRED = {
    date(2026, 3, 1): {"earned": 450, "purchases": 2, "sales": Decimal(45_800), "net": 450},
    date(2026, 3, 2): {
        "earned": 1790,
        "redeemed": 1000,
        "purchases": 3,
        "sales": Decimal(180_000),
        "net": 790,
    },
    date(2026, 3, 3): {"reversed": 540, "restored": 1000, "net": 460},
    date(2026, 3, 4): {"adjusted_in": 300, "adjusted_out": 100, "net": 200},
    date(2026, 4, 2): {"expired": 450, "net": -450},
    date(2026, 4, 3): {"expired": 1150, "net": -1150},
    date(2026, 4, 5): {"expired": 300, "net": -300},
}
# By when Patron wrote them: the late sale lands on 03-04, the expiry job's run on 04-10.
RECORDED = {
    date(2026, 3, 1): {"earned": 250, "purchases": 1, "sales": Decimal(25_800), "net": 250},
    date(2026, 3, 2): {
        "earned": 1790,
        "redeemed": 1000,
        "purchases": 3,
        "sales": Decimal(180_000),
        "net": 790,
    },
    date(2026, 3, 3): {"reversed": 540, "restored": 1000, "net": 460},
    date(2026, 3, 4): {
        "earned": 200,
        "adjusted_in": 300,
        "adjusted_out": 100,
        "purchases": 1,
        "sales": Decimal(20_000),
        "net": 400,
    },
    date(2026, 4, 10): {"expired": 1900, "net": -1900},
}
FIGURES = (
    "earned",
    "reversed",
    "redeemed",
    "restored",
    "expired",
    "adjusted_in",
    "adjusted_out",
    "purchases",
    "sales",
    "net",
)


def _report(db: Database, s: Scenario, **kwargs: Any) -> period.PeriodReport:
    first = kwargs.pop("first", date(2026, 2, 1))
    last = kwargs.pop("last", date(2026, 4, 30))
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, s.code)
        rng = day_range(program, first=first, last=last, now=clock.now())
        return period.period_report(session, program, rng, now=clock.now(), **kwargs)


def _as_dict(row: Any) -> dict[str, Any]:
    return {f: getattr(row, f) for f in FIGURES if getattr(row, f)}


def _by_day(report: period.PeriodReport) -> dict[date, dict[str, Any]]:
    return {row.starts: _as_dict(row) for row in report.rows}


def _partly_rolled_up(db: Database) -> None:
    """Roll up roughly half the entries; the reports read the rest live."""
    with db.unit_of_work(readonly=True) as session:
        top = rollup.freshness(session).max_entry_id
    rollup.refresh(db, now=clock.now(), limit=top // 2, chunk=3)


@pytest.mark.parametrize("rolled", ["none", "half", "all"])
def test_daily_figures_are_exact_whatever_is_rolled_up(db: Database, rolled: str) -> None:
    s = build(db)
    if rolled == "half":
        _partly_rolled_up(db)
    elif rolled == "all":
        rollup.refresh(db, now=clock.now())
    assert _by_day(_report(db, s)) == OCCURRED
    assert _by_day(_report(db, s, basis="recorded")) == RECORDED
    with db.unit_of_work(readonly=True) as session:
        assert rollup.check(session).ok
    totals = _report(db, s).totals
    assert (totals.earned, totals.reversed, totals.issued, totals.net) == (2240, 540, 2000, 0)
    assert (totals.redeemed, totals.restored, totals.net_redeemed, totals.expired) == (
        1000,
        1000,
        0,
        1900,
    )
    assert totals.purchases == 5 and totals.sales == Decimal(225_800)


def test_weeks_months_and_range_edges(db: Database) -> None:
    s = build(db)
    rollup.refresh(db, now=clock.now(), limit=6)
    months = _report(db, s, granularity="month")
    assert [(r.period, r.starts, r.ends, r.net) for r in months.rows] == [
        ("2026-03", date(2026, 3, 1), date(2026, 3, 31), 1900),
        ("2026-04", date(2026, 4, 1), date(2026, 4, 30), -1900),
    ]
    weeks = _report(db, s, granularity="week", first=date(2026, 3, 1), last=date(2026, 3, 31))
    # 1 March 2026 is a Sunday: its ISO week started on 23 February; the row starts at `from`.
    assert [(r.period, r.starts, r.ends, r.net) for r in weeks.rows] == [
        ("2026-W09", date(2026, 3, 1), date(2026, 3, 1), 450),
        ("2026-W10", date(2026, 3, 2), date(2026, 3, 8), 1450),
    ]
    one_day = _report(db, s, first=date(2026, 3, 2), last=date(2026, 3, 2))
    assert one_day.totals.earned == 1790 and len(one_day.rows) == 1


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        (
            "store",
            {
                "mapo": {
                    "earned": 1040,
                    "redeemed": 1000,
                    "reversed": 540,
                    "restored": 1000,
                    "purchases": 3,
                    "sales": Decimal(105_800),
                    "net": 500,
                },
                "yeonnam": {
                    "earned": 1200,
                    "purchases": 2,
                    "sales": Decimal(120_000),
                    "net": 1200,
                },
                None: {"adjusted_in": 300, "adjusted_out": 100, "net": 200},
            },
        ),
        (
            "channel",
            {
                "pos": {
                    "earned": 1040,
                    "redeemed": 1000,
                    "reversed": 540,
                    "restored": 1000,
                    "purchases": 3,
                    "sales": Decimal(105_800),
                    "net": 500,
                },
                "online": {
                    "earned": 1200,
                    "purchases": 2,
                    "sales": Decimal(120_000),
                    "net": 1200,
                },
                None: {"adjusted_in": 300, "adjusted_out": 100, "net": 200},
            },
        ),
        (
            "tier",
            {
                # The tier the member held just before each entry, from the tier history.
                None: {"earned": 950, "purchases": 3, "sales": Decimal(95_800), "net": 950},
                "basic": {
                    "earned": 1000,
                    "purchases": 1,
                    "sales": Decimal(100_000),
                    "net": 1000,
                },
                "silver": {
                    "earned": 290,
                    "redeemed": 1000,
                    "reversed": 540,
                    "restored": 1000,
                    "adjusted_in": 300,
                    "adjusted_out": 100,
                    "purchases": 1,
                    "sales": Decimal(30_000),
                    "net": -50,
                },
            },
        ),
    ],
)
@pytest.mark.parametrize("rolled", [False, True])
def test_march_by_store_channel_and_tier(
    db: Database, group_by: str, expected: dict[Any, Any], rolled: bool
) -> None:
    s = build(db)
    if rolled:
        rollup.refresh(db, now=clock.now())
    report = _report(
        db,
        s,
        first=date(2026, 3, 1),
        last=date(2026, 3, 31),
        granularity="month",
        group_by=group_by,
    )
    assert {row.group: _as_dict(row) for row in report.rows} == expected


def test_filters(db: Database) -> None:
    s = build(db)
    rollup.refresh(db, now=clock.now(), limit=9)
    mapo = _report(db, s, store="mapo", first=date(2026, 3, 1), last=date(2026, 3, 31))
    assert mapo.totals.earned == 1040 and mapo.filters == {"store": "mapo"}
    online_silver = _report(db, s, channel="online", tier="silver")
    assert online_silver.rows == [] and online_silver.totals.net == 0
    silver = _report(db, s, tier="silver")
    assert silver.totals.expired == 1900


def test_liability_as_of_each_day(db: Database) -> None:
    s = build(db)
    rollup.refresh(db, now=clock.now(), limit=8)
    expected = {
        date(2026, 2, 28): 0,
        date(2026, 3, 1): 450,
        date(2026, 3, 2): 1240,
        date(2026, 3, 3): 1700,
        date(2026, 3, 4): 1900,
        date(2026, 4, 1): 1900,
        date(2026, 4, 2): 1450,
        date(2026, 4, 3): 300,
        date(2026, 4, 4): 300,
        date(2026, 4, 5): 0,
    }
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, s.code)
        got = {
            day: finance.liability(session, program, as_of=day, now=clock.now()).outstanding_points
            for day in expected
        }
        assert got == expected
        owed = finance.liability(session, program, as_of=date(2026, 4, 2), now=clock.now())
        assert owed.outstanding_value == Decimal(1450) and owed.overdue_points == 0
        year = next(w for w in owed.breakage if w.months == 12)
        assert (year.issued, year.expired, year.redeemed) == (2000, 450, 0)
        assert year.breakage_rate == Decimal("0.2250") and year.redemption_rate == Decimal(0)
        # round_half_up(1450 × 450 ÷ 2000) = round(326.25)
        assert owed.projected_breakage_points == 326
        assert owed.expected_redemption_value == Decimal(1450 - 326)
        recorded = finance.liability(
            session, program, as_of=date(2026, 4, 9), now=clock.now(), basis="recorded"
        )
        # Recorded: the expiries count on 04-10, when the job wrote them.
        assert recorded.outstanding_points == 1900


def test_liability_counts_lots_past_expiry_before_the_job_runs(db: Database) -> None:
    s = build(db, run_expiry=False)
    clock.freeze(at(4, 9))
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, s.code)
        owed = finance.liability(session, program, as_of=date(2026, 4, 3), now=clock.now())
        assert (owed.ledger_points, owed.overdue_points, owed.outstanding_points) == (
            1900,
            1600,
            300,
        )
        assert owed.lifetime["expired"] == 1600


def test_member_balance_as_of_equals_what_the_totals_showed(db: Database) -> None:
    s = build(db)
    later_sale = s.late_sale_recorded
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, s.code)
        for instant, member_id, seen in s.shown:
            account = get_account(session, program, member_id)
            got = finance.member_balance(session, program, account, at=instant, now=clock.now())
            want = seen.model_dump(
                include={"balance", "available", "pending", "debt", "earned", "redeemed"}
            ) | {"expired": seen.expired, "adjusted": seen.adjusted}
            have = got.model_dump(include=set(want))
            if member_id == s.b and at(3, 1, 5) <= instant < later_sale:
                # B's sale of 1 March was sent on 4 March: dated in the past, it is in the
                # balance as of any instant after 1 March 05:00 — which the totals then lacked.
                assert have["balance"] == want["balance"] + 200, instant
                assert have["earned"] == want["earned"] + 200, instant
                continue
            assert have == want, (instant, member_id)


def test_members_report(db: Database) -> None:
    s = build(db)
    clock.freeze(at(7, 15))
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, s.code)
        rng = day_range(program, first=date(2026, 1, 1), last=date(2026, 3, 31), now=clock.now())
        report = members.members_report(session, program, rng, now=clock.now(), as_of=D)
        assert (report.members, report.active, report.dormant, report.never_purchased) == (
            2,
            2,
            0,
            0,
        )
        assert [(n.period, n.count) for n in report.new_members] == [("2026-01", 2)]
        tiers = {t.tier: t.members for t in report.tier_distribution}
        assert tiers == {"basic": 1, "silver": 0, None: 1}  # A basic on 1 March, B none yet
        moves = {(m.from_tier, m.to_tier, m.direction): m.count for m in report.tier_moves}
        assert moves == {
            (None, "basic", "up"): 1,
            ("basic", "silver", "up"): 1,
            (None, "silver", "up"): 1,
        }
        late = members.members_report(
            session, program, rng, now=clock.now(), as_of=date(2026, 7, 1)
        )
        assert (late.active, late.dormant) == (0, 2)
        assert {t.tier: t.members for t in late.tier_distribution} == {
            "basic": 0,
            "silver": 2,
            None: 0,
        }
        short = members.members_report(
            session, program, rng, now=clock.now(), as_of=date(2026, 4, 1), dormant_days=31
        )
        # The last sales were on 2 March (local): the 31 days up to 1 April start on 2 March.
        assert short.active == 2
        shorter = members.members_report(
            session, program, rng, now=clock.now(), as_of=date(2026, 4, 1), dormant_days=30
        )
        assert shorter.active == 0


def test_journal_balances_each_day_and_moves_the_liability_by_net(db: Database) -> None:
    s = build(db)
    rollup.refresh(db, now=clock.now(), limit=5)
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, s.code)
        rng = day_range(program, first=date(2026, 3, 1), last=date(2026, 4, 30), now=clock.now())
        out = finance.journal(session, program, rng)
    for day in out.days:
        assert day.debit == day.credit
        lines = [line for line in out.lines if line.day == day.day]
        assert sum(line.debit for line in lines) == sum(line.credit for line in lines)
    by_ref = {(line.entry, line.account): (line.debit, line.credit) for line in out.lines}
    assert by_ref[("2026-03-01/issued", "Loyalty expense")] == (Decimal(450), Decimal(0))
    assert by_ref[("2026-03-01/issued", "Points liability")] == (Decimal(0), Decimal(450))
    assert by_ref[("2026-03-02/redeemed", "Points redemption")] == (Decimal(0), Decimal(1000))
    assert by_ref[("2026-03-03/restored", "Points redemption")] == (Decimal(1000), Decimal(0))
    assert by_ref[("2026-03-03/reversed", "Loyalty expense")] == (Decimal(0), Decimal(540))
    assert by_ref[("2026-04-03/expired", "Breakage income")] == (Decimal(0), Decimal(1150))
    liability = [line for line in out.lines if line.account == "Points liability"]
    assert sum(line.credit - line.debit for line in liability) == 0  # 1900 issued, 1900 gone
    assert [d.day for d in out.days] == sorted(OCCURRED)


def test_day_ranges_move_with_the_range(db: Database) -> None:
    s = build(db)
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, s.code)
        rng = day_range(program, first=None, last=date(2026, 3, 4), now=clock.now())
        assert (rng.first, rng.days) == (date(2026, 3, 4) - timedelta(days=29), 30)
