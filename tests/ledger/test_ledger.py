"""Lots: spending order, pending points, redemption policy, blocked members, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from patron import clock
from patron.audit.service import CLI
from patron.errors import InsufficientPoints, Invalid, MemberBlocked
from patron.ledger import views
from patron.ledger.jobs import run_expiry
from patron.ledger.models import Account, Entry, Lot, Movement
from patron.members import service as members
from tests.factories import make_member, make_program
from tests.ledger._helpers import (
    account,
    adjust,
    assert_clean,
    buy,
    entries,
    lot_rows,
    movements_of,
    program,
    refund,
    set_expiry,
    totals,
)


def _setup(db, now, **overrides):
    with db.unit_of_work() as session:
        prog = make_program(session, now=now, **overrides)
        member = make_member(session, now=now, program=prog)
    return prog.code, member.id


def _at(days: float) -> datetime:
    return clock.now() + timedelta(days=days)


# --- spending order ------------------------------------------------------------------------


def test_spending_takes_the_soonest_to_expire_lot_first_not_the_oldest(db, frozen):
    code, mid = _setup(db, frozen)
    with db.unit_of_work() as session:
        prog = program(session, code)
        buy(session, prog, mid, 25800, ext="old", now=frozen)  # lot 1: 250, 12 months
        set_expiry(session, prog, months=1, now=frozen)
        adjust(session, prog, mid, 1000, now=frozen + timedelta(hours=1))  # lot 2: 1000, 1 month
        set_expiry(session, prog, months=12, now=frozen)
    with db.unit_of_work(readonly=True) as session:
        acct = account(session, program(session, code), mid)
        earn_lot, adjust_lot = lot_rows(session, acct.id)
        assert earn_lot.expires_at > adjust_lot.expires_at  # created first, expires last
        listed = views.lots(session, acct, now=frozen)
        assert [lot.id for lot in listed] == [adjust_lot.id, earn_lot.id]
        earn_id, adjust_id, acct_id = earn_lot.id, adjust_lot.id, acct.id

    later = frozen + timedelta(days=2)
    with db.unit_of_work() as session:
        out = buy(session, program(session, code), mid, 10000, ext="spend", spend=1010, now=later)
    redeem = next(e for e in out["entries"] if e["kind"] == "redeem")
    with db.unit_of_work(readonly=True) as session:
        assert movements_of(session, redeem["id"]) == {adjust_id: -1000, earn_id: -10}
        rows = {lot.id: lot.remaining for lot in lot_rows(session, acct_id)}
        assert rows[adjust_id] == 0 and rows[earn_id] == 240

    # Nothing was left in the short lot, so nothing expires when its month is over.
    report = run_expiry(db, frozen + timedelta(days=40))
    assert (report.lots, report.points) == (0, 0)
    t = totals(db, code, mid, frozen + timedelta(days=40))
    # 250 + 1000 - 1010 + 80 (8,990 KRW paid in money earns 80)
    assert (t.balance, t.expired, t.redeemed) == (320, 0, 1010)
    assert_clean(db)


# --- pending points ------------------------------------------------------------------------


def test_pending_points_are_not_spendable_until_their_date_then_settle_in_a_purchase(db, frozen):
    code, mid = _setup(db, frozen, pending_days=7)
    with db.unit_of_work() as session:
        out = buy(session, program(session, code), mid, 100000, ext="big", now=frozen)
    assert out["totals"]["pending"] == 1000 and out["totals"]["available"] == 0
    assert out["totals"]["balance"] == 0

    almost = frozen + timedelta(days=7) - timedelta(seconds=1)
    t = totals(db, code, mid, almost)
    assert (t.pending, t.available, t.balance) == (1000, 0, 0)
    with pytest.raises(InsufficientPoints), db.unit_of_work() as session:
        buy(session, program(session, code), mid, 5000, ext="too-soon", spend=1000, now=almost)

    due = frozen + timedelta(days=7)
    t = totals(db, code, mid, due)  # read side already counts them as available
    assert (t.pending, t.available, t.balance) == (1000 - 1000, 1000, 1000)
    with db.unit_of_work() as session:
        out = buy(session, program(session, code), mid, 5000, ext="now", spend=1000, now=due)
    assert out["points_spent"] == 1000
    # 4,000 KRW paid in money earns 40 more, pending again for a week.
    got = out["totals"]
    assert (got["available"], got["pending"], got["balance"]) == (0, 40, 0)
    with db.unit_of_work(readonly=True) as session:
        acct = account(session, program(session, code), mid)
        assert (acct.available, acct.pending) == (0, 40)
    assert_clean(db)


def test_pending_points_are_released_by_the_expiry_job(db, frozen):
    code, mid = _setup(db, frozen, pending_days=7)
    other_code_mid = make_second_member(db, code, frozen)
    with db.unit_of_work() as session:
        prog = program(session, code)
        buy(session, prog, mid, 100000, ext="a", now=frozen)
        buy(session, prog, other_code_mid, 25800, ext="b", now=frozen + timedelta(days=3))

    early = run_expiry(db, frozen + timedelta(days=6))
    assert (early.released_lots, early.released_points) == (0, 0)

    dry = run_expiry(db, frozen + timedelta(days=8), dry_run=True)
    assert (dry.released_lots, dry.released_points) == (1, 1000)
    report = run_expiry(db, frozen + timedelta(days=8))
    assert (report.released_lots, report.released_points, report.lots) == (1, 1000, 0)
    with db.unit_of_work(readonly=True) as session:
        prog = program(session, code)
        a, b = account(session, prog, mid), account(session, prog, other_code_mid)
        assert (a.available, a.pending) == (1000, 0)
        assert (b.available, b.pending) == (0, 250)
    assert run_expiry(db, frozen + timedelta(days=8)).released_lots == 0
    report = run_expiry(db, frozen + timedelta(days=10), batch_size=1)
    assert (report.released_lots, report.released_points) == (1, 250)
    assert_clean(db)


def make_second_member(db, code: str, now: datetime) -> int:
    with db.unit_of_work() as session:
        return make_member(session, now=now, program=program(session, code)).id


# --- redemption policy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "spend", "error", "code"),
    [
        (10000, 990, Invalid, "below_minimum_redemption"),
        (10000, 1005, Invalid, "invalid_redemption_step"),
        (10000, 5010, Invalid, "exceeds_max_share"),  # max_share 0.5: at most 5,000 KRW of 10,000
        (20000, 6000, InsufficientPoints, "insufficient_points"),
    ],
)
def test_redemption_policy(db, frozen, amount, spend, error, code):
    prog_code, mid = _setup(
        db, frozen, redemption={"min_points": 1000, "step": 10, "max_share": "0.5"}
    )
    with db.unit_of_work() as session:
        adjust(session, program(session, prog_code), mid, 5500, now=frozen)
    with pytest.raises(error) as err, db.unit_of_work() as session:
        buy(session, program(session, prog_code), mid, amount, ext="x", spend=spend, now=frozen)
    assert err.value.code == code
    t = totals(db, prog_code, mid, frozen)
    assert (t.balance, t.redeemed, t.earned) == (5500, 0, 0)
    with db.unit_of_work() as session:  # the largest allowed spend works
        out = buy(
            session, program(session, prog_code), mid, 10000, ext="ok", spend=5000, now=frozen
        )
    assert out["totals"]["balance"] == 500 + 50
    assert_clean(db)


def test_insufficient_points_counts_debt(db, frozen):
    prog_code, mid = _setup(db, frozen, redemption={"min_points": 10, "step": 10, "max_share": "1"})
    with db.unit_of_work() as session:
        prog = program(session, prog_code)
        buy(session, prog, mid, 25800, ext="earn", now=frozen)
        buy(session, prog, mid, 250, ext="spend", spend=250, now=frozen)
        refund(session, prog, "earn", refund_id="r", full=True, now=frozen)  # debt 250
        adjust(session, prog, mid, 200, now=frozen)  # pays 200 of the debt
    t = totals(db, prog_code, mid, frozen)
    assert (t.balance, t.debt, t.available) == (-50, 50, 0)
    with pytest.raises(InsufficientPoints), db.unit_of_work() as session:
        buy(session, program(session, prog_code), mid, 1000, ext="x", spend=10, now=frozen)
    assert_clean(db)


# --- blocked members -----------------------------------------------------------------------


def test_blocked_member_cannot_earn_or_redeem_but_refunds_work(db, frozen):
    code, mid = _setup(db, frozen)
    with db.unit_of_work() as session:
        prog = program(session, code)
        adjust(session, prog, mid, 2000, now=frozen)
        buy(session, prog, mid, 25800, ext="before", spend=1000, now=frozen)
        members.set_status(
            session,
            members.get_member(session, mid),
            "blocked",
            reason="fraud review",
            actor=CLI,
            now=frozen,
        )
    for spend in (0, 1000):
        with pytest.raises(MemberBlocked) as err, db.unit_of_work() as session:
            buy(
                session,
                program(session, code),
                mid,
                10000,
                ext=f"blocked-{spend}",
                spend=spend,
                now=frozen,
            )
        assert err.value.code == "member_blocked"
    with db.unit_of_work() as session:
        out = refund(
            session, program(session, code), "before", refund_id="r1", full=True, now=frozen
        )
    assert (out["points_reversed"], out["points_restored"]) == (240, 1000)
    t = totals(db, code, mid, frozen)
    assert (t.balance, t.earned, t.redeemed) == (2000, 0, 0)
    assert_clean(db)


# --- expiry --------------------------------------------------------------------------------


def _expiry_scenario(db, frozen):
    """One member: lots of 1,500 (1,000 spent) and 250 expire on 2027-03-03 KST; 300 later."""
    code, mid = _setup(db, frozen)
    with db.unit_of_work() as session:
        prog = program(session, code)
        adjust(session, prog, mid, 1500, now=frozen)
        buy(session, prog, mid, 1000, ext="spend", spend=1000, now=frozen)
        buy(session, prog, mid, 25800, ext="earn", now=frozen)
        buy(session, prog, mid, 30000, ext="later", now=frozen + timedelta(days=30))
    return code, mid


def test_lots_past_their_date_expire_once_each_and_only_their_remainder(db, frozen):
    code, mid = _expiry_scenario(db, frozen)
    first_expiry = datetime(2027, 3, 2, 15, 0, tzinfo=frozen.tzinfo)  # 2027-03-03 00:00 KST
    before = totals(db, code, mid, first_expiry - timedelta(seconds=1))
    assert (before.balance, before.expired, before.expiring_30_days) == (1050, 0, 750)

    after = totals(db, code, mid, first_expiry)  # read side counts them before the job ran
    assert (after.balance, after.available, after.expired) == (300, 300, 750)

    report = run_expiry(db, first_expiry)
    assert (report.lots, report.points, report.accounts, report.entries) == (2, 750, 1, 1)
    with db.unit_of_work(readonly=True) as session:
        acct = account(session, program(session, code), mid)
        # Both lots expire at the same instant: one entry, a movement per lot (decision 0008).
        (e,) = entries(session, acct.id, "expire")
        assert (e.points, e.lot_id) == (-750, None)
        assert sorted(movements_of(session, e.id).values()) == [-500, -250]
        assert clock.as_utc(e.occurred_at) == first_expiry
        assert (acct.available, acct.expired, acct.earned, acct.redeemed) == (300, 750, 550, 1000)
    t = totals(db, code, mid, first_expiry)
    assert (t.balance, t.expired, t.earned, t.redeemed, t.adjusted) == (300, 750, 550, 1000, 1500)
    assert_clean(db)


def test_redeem_after_expiry_date_cannot_use_expired_points_before_the_job_ran(db, frozen):
    code, mid = _setup(db, frozen)
    with db.unit_of_work() as session:
        adjust(session, program(session, code), mid, 1000, now=frozen)
    expiry = datetime(2027, 3, 2, 15, 0, tzinfo=frozen.tzinfo)
    with db.unit_of_work() as session:  # the last valid moment
        out = buy(
            session,
            program(session, code),
            mid,
            1000,
            ext="last-minute",
            spend=1000,
            now=expiry - timedelta(seconds=1),
        )
    assert out["totals"]["balance"] == 0

    code2, mid2 = _setup(db, frozen, code="bakery2")
    with db.unit_of_work() as session:
        adjust(session, program(session, code2), mid2, 1000, now=frozen)
    with pytest.raises(InsufficientPoints), db.unit_of_work() as session:
        buy(session, program(session, code2), mid2, 1000, ext="too-late", spend=1000, now=expiry)
    t = totals(db, code2, mid2, expiry)
    assert (t.balance, t.expired) == (0, 1000)
    # A purchase without points settles the expiry in its own transaction.
    with db.unit_of_work() as session:
        out = buy(session, program(session, code2), mid2, 1000, ext="plain", now=expiry)
    assert (out["totals"]["balance"], out["totals"]["expired"]) == (10, 1000)
    with db.unit_of_work(readonly=True) as session:
        acct = account(session, program(session, code2), mid2)
        assert len(entries(session, acct.id, "expire")) == 1
    assert run_expiry(db, expiry).lots == 0  # already done by the purchase
    assert_clean(db)


def _many_lots(db, frozen) -> tuple[str, list[int]]:
    """Three members, six lots due by 2027-04-01 (five with points: 3,400), two lots not yet due."""
    code, m1 = _setup(db, frozen)
    m2, m3 = make_second_member(db, code, frozen), make_second_member(db, code, frozen)
    with db.unit_of_work() as session:
        prog = program(session, code)
        adjust(session, prog, m1, 1000, now=frozen)
        adjust(session, prog, m1, 2000, now=frozen + timedelta(days=1))
        buy(session, prog, m1, 1500, ext="m1-spend", spend=1500, now=frozen + timedelta(days=2))
        adjust(session, prog, m2, 600, now=frozen)
        buy(session, prog, m2, 25800, ext="m2-a", now=frozen + timedelta(days=5))
        buy(session, prog, m3, 100000, ext="m3-a", now=frozen + timedelta(days=10))
        buy(session, prog, m3, 5000, ext="m3-b", now=frozen + timedelta(days=20))
        buy(session, prog, m3, 9000, ext="m3-late", now=frozen + timedelta(days=60))
        buy(session, prog, m1, 3000, ext="m1-late", now=frozen + timedelta(days=90))
    return code, [m1, m2, m3]


EXPIRY_RUN_AT = datetime(2027, 4, 1, tzinfo=UTC)


@pytest.mark.parametrize("batch_size", [1, 2, 5000])
def test_expiry_job_dry_run_batches_and_idempotence(db, frozen, batch_size):
    code, mids = _many_lots(db, frozen)
    with db.unit_of_work(readonly=True) as session:
        counts_before = session.execute(select(func.count()).select_from(Entry)).scalar_one()

    dry = run_expiry(db, EXPIRY_RUN_AT, dry_run=True, batch_size=batch_size)
    # Due: m1's 2,000 lot (1,500 left; its 1,000 lot was spent first), m2's 600 and 250,
    # m3's 1,000 and 50; m1's 1,000 lot is empty and gets no expire entry.
    assert (dry.dry_run, dry.lots, dry.points, dry.accounts) == (True, 5, 3400, 3)
    with db.unit_of_work(readonly=True) as session:
        count = session.execute(select(func.count()).select_from(Entry)).scalar_one()
        assert count == counts_before
        assert sum(a.expired for a in session.scalars(select(Account))) == 0

    seen: list[int] = []
    report = run_expiry(
        db, EXPIRY_RUN_AT, batch_size=batch_size, progress=lambda r: seen.append(r.lots)
    )
    assert (report.dry_run, report.lots, report.points, report.accounts) == (False, 5, 3400, 3)
    assert seen[-1] == 5
    if batch_size == 1:
        assert seen == [1, 2, 3, 4, 5, 5]
    expected = {mids[0]: (1500, 30), mids[1]: (850, 0), mids[2]: (1050, 90)}
    for mid, (expired, balance) in expected.items():
        t = totals(db, code, mid, EXPIRY_RUN_AT)
        assert (t.expired, t.balance) == (expired, balance), mid

    again = run_expiry(db, EXPIRY_RUN_AT, batch_size=batch_size)
    assert (again.lots, again.points, again.accounts) == (0, 0, 0)
    with db.unit_of_work(readonly=True) as session:
        assert (
            session.execute(
                select(func.count()).select_from(Entry).where(Entry.kind == "expire")
            ).scalar_one()
            == 5
        )
    assert_clean(db)


def test_restored_points_on_an_expired_lot_expire_again(db, frozen):
    code, mid = _setup(db, frozen)
    with db.unit_of_work() as session:
        prog = program(session, code)
        set_expiry(session, prog, months=1, now=frozen)
        adjust(session, prog, mid, 1500, now=frozen)  # lot A: expires 2026-04-03 KST
        set_expiry(session, prog, months=12, now=frozen)
        # Takes 1,000 of lot A and earns 90.
        buy(session, prog, mid, 10000, ext="paid", spend=1000, now=frozen)
    month_later = frozen + timedelta(days=40)
    report = run_expiry(db, month_later)
    assert (report.lots, report.points) == (1, 500)

    with db.unit_of_work() as session:
        out = refund(
            session, program(session, code), "paid", refund_id="r1", full=True, now=month_later
        )
    assert (out["points_restored"], out["points_reversed"]) == (1000, 90)
    assert (out["totals"]["balance"], out["totals"]["expired"]) == (0, 1500)
    with db.unit_of_work(readonly=True) as session:
        acct = account(session, program(session, code), mid)
        lot_a = lot_rows(session, acct.id)[0]
        assert lot_a.remaining == 0
        expired = [e for e in entries(session, acct.id, "expire") if e.lot_id == lot_a.id]
        assert [e.points for e in expired] == [-500, -1000]
        assert (acct.available, acct.expired, acct.redeemed, acct.earned) == (0, 1500, 0, 0)
    assert run_expiry(db, month_later).lots == 0
    assert_clean(db)


def test_lot_and_movement_tables_agree_after_expiry(db, frozen):
    """Σ movements per lot = remaining - points, for every lot, after a mixed history."""
    _many_lots(db, frozen)
    run_expiry(db, EXPIRY_RUN_AT)
    with db.unit_of_work(readonly=True) as session:
        moved = dict(
            session.execute(
                select(Movement.lot_id, func.sum(Movement.points))
                .where(Movement.lot_id.is_not(None))
                .group_by(Movement.lot_id)
            ).all()
        )
        for lot in session.scalars(select(Lot)):
            assert lot.points + int(moved.get(lot.id, 0)) == lot.remaining
