"""Refunds: full, partial by amount or lines, replays, restoring spent lots, negative balances."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from patron.errors import Conflict
from patron.ledger.models import Entry, Purchase
from patron.sales.purchases import share_half_up
from tests.factories import BAKERY, SHANGHAI, make_member, make_program
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

PROPERTY = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_codes = itertools.count(1)


def _setup(db, now, members=1, **overrides):
    with db.unit_of_work() as session:
        prog = make_program(session, now=now, **overrides)
        ids = [make_member(session, now=now, program=prog).id for _ in range(members)]
    return prog.code, ids


def test_full_refund_reverses_all_earned_and_restores_all_spent(db, frozen):
    code, (mid,) = _setup(db, frozen)
    with db.unit_of_work() as session:
        prog = program(session, code)
        adjust(session, prog, mid, 2000, now=frozen)
        sale = buy(session, prog, mid, 25800, ext="A-1", spend=1000, now=frozen)
    assert (sale["points_earned"], sale["totals"]["balance"]) == (240, 1240)
    with db.unit_of_work() as session:
        out = refund(
            session,
            program(session, code),
            "A-1",
            refund_id="R-1",
            full=True,
            now=frozen + timedelta(hours=1),
        )
    got = (out["points_reversed"], out["points_restored"], out["points_written_off"])
    assert got == (240, 1000, 0)
    assert (Decimal(out["amount"]), Decimal(out["refunded_total"])) == (25800, 25800)
    t = totals(db, code, mid, frozen + timedelta(hours=1))
    assert (t.balance, t.earned, t.redeemed, t.adjusted, t.debt) == (2000, 0, 0, 2000, 0)
    with pytest.raises(Conflict) as err, db.unit_of_work() as session:
        refund(session, program(session, code), "A-1", refund_id="R-2", full=True, now=frozen)
    assert err.value.code == "already_refunded"
    assert_clean(db)


def _spend_for(base: dict, amount_minor: int, fraction: float) -> int:
    """A valid points_to_spend for the bill under the program's redemption policy (or 0)."""
    if base is BAKERY:  # 1 point = 1 KRW, min 1,000, step 10, up to the whole bill
        cap = amount_minor
        if cap < 1000 or fraction < 0.2:
            return 0
        return 1000 + int((cap - 1000) * fraction) // 10 * 10
    cap = amount_minor // 2  # 1 point = 0.01 CNY, min 100, up to half the bill
    if cap < 100 or fraction < 0.2:
        return 0
    return 100 + int((cap - 100) * fraction)


def _money(base: dict, minor: int) -> Decimal:
    return Decimal(minor) if base is BAKERY else Decimal(minor) / 100


@PROPERTY
@given(
    base=st.sampled_from([BAKERY, SHANGHAI]),
    amount_minor=st.integers(min_value=1, max_value=500_000),
    fraction=st.floats(min_value=0, max_value=1),
    cuts=st.lists(
        st.floats(min_value=0, max_value=1, exclude_min=True, exclude_max=True),
        min_size=1,
        max_size=6,
    ),
)
def test_partial_refunds_by_amount_sum_exactly_to_a_full_refund(
    db, frozen, base, amount_minor, fraction, cuts
):
    code, (split_mid, whole_mid) = _setup(
        db, frozen, members=2, base=base, code=f"amt{next(_codes)}"
    )
    spend = _spend_for(base, amount_minor, fraction)
    amount = _money(base, amount_minor)
    with db.unit_of_work() as session:
        prog = program(session, code)
        for mid in (split_mid, whole_mid):
            adjust(session, prog, mid, 1_000_000, now=frozen)
        sale = buy(session, prog, split_mid, amount, ext="split", spend=spend, now=frozen)
        twin = buy(session, prog, whole_mid, amount, ext="whole", spend=spend, now=frozen)
    earned, spent = sale["points_earned"], sale["points_spent"]
    assert (twin["points_earned"], twin["points_spent"]) == (earned, spent)

    points = sorted({max(1, min(amount_minor - 1, int(amount_minor * c))) for c in cuts})
    bounds = [0, *[p for p in points if 0 < p < amount_minor], amount_minor]
    pieces = [b - a for a, b in itertools.pairwise(bounds) if b > a]
    reversed_total = restored_total = refunded = 0
    with db.unit_of_work() as session:
        prog = program(session, code)
        for n, piece in enumerate(pieces):
            out = refund(
                session, prog, "split", refund_id=f"r{n}", amount=_money(base, piece), now=frozen
            )
            refunded += piece
            reversed_total += out["points_reversed"]
            restored_total += out["points_restored"]
            # The cumulative rule: reversed so far = round_half_up(earned × refunded ÷ total).
            assert reversed_total == share_half_up(earned, refunded, amount_minor)
            assert restored_total == share_half_up(spent, refunded, amount_minor)
        whole = refund(session, prog, "whole", refund_id="all", full=True, now=frozen)
    assert refunded == amount_minor
    assert (reversed_total, restored_total) == (whole["points_reversed"], whole["points_restored"])
    assert (reversed_total, restored_total) == (earned, spent)
    a, b = totals(db, code, split_mid, frozen), totals(db, code, whole_mid, frozen)
    assert a == b
    assert (a.balance, a.earned, a.redeemed) == (1_000_000, 0, 0)
    assert_clean(db)


@PROPERTY
@given(
    lines=st.lists(
        st.tuples(st.integers(min_value=0, max_value=90_000), st.integers(1, 5)),
        min_size=1,
        max_size=4,
    ),
    spend_fraction=st.floats(min_value=0, max_value=1),
    data=st.data(),
)
def test_partial_refunds_by_lines_sum_exactly_to_a_full_refund(
    db, frozen, lines, spend_fraction, data
):
    total = sum(a for a, _ in lines)
    if total == 0:
        lines = [(lines[0][0] + 1000, lines[0][1]), *lines[1:]]
        total = sum(a for a, _ in lines)
    code, (split_mid, whole_mid) = _setup(db, frozen, members=2, code=f"lines{next(_codes)}")
    spend = _spend_for(BAKERY, total, spend_fraction)
    basket = [(f"L{i}", amount, qty) for i, (amount, qty) in enumerate(lines)]
    with db.unit_of_work() as session:
        prog = program(session, code)
        for mid in (split_mid, whole_mid):
            adjust(session, prog, mid, 1_000_000, now=frozen)
        sale = buy(
            session, prog, split_mid, total, ext="split", spend=spend, lines=basket, now=frozen
        )
        buy(session, prog, whole_mid, total, ext="whole", spend=spend, lines=basket, now=frozen)

    # Refund every unit, one random line quantity at a time, in a random order.
    units = [(line_id, 1) for line_id, _, qty in basket for _ in range(qty)]
    order = data.draw(st.permutations(units))
    groups: list[list[tuple[str, int]]] = []
    while order:
        size = data.draw(st.integers(1, len(order)))
        groups.append(order[:size])
        order = order[size:]
    reversed_total = restored_total = refunded = 0
    with db.unit_of_work() as session:
        prog = program(session, code)
        for n, group in enumerate(groups):
            out = refund(session, prog, "split", refund_id=f"r{n}", lines=group, now=frozen)
            reversed_total += out["points_reversed"]
            restored_total += out["points_restored"]
            refunded += int(Decimal(out["amount"]))
        whole = refund(session, prog, "whole", refund_id="all", full=True, now=frozen)
    assert refunded == total == int(Decimal(whole["amount"]))
    assert (reversed_total, restored_total) == (whole["points_reversed"], whole["points_restored"])
    assert (reversed_total, restored_total) == (sale["points_earned"], spend)
    assert totals(db, code, split_mid, frozen) == totals(db, code, whole_mid, frozen)
    assert totals(db, code, split_mid, frozen).balance == 1_000_000
    assert_clean(db)


def test_refund_of_one_line_reverses_that_lines_share(db, frozen):
    code, (mid,) = _setup(db, frozen)
    with db.unit_of_work() as session:
        sale = buy(
            session,
            program(session, code),
            mid,
            25800,
            ext="A",
            now=frozen,
            lines=[("cake", 20000, 2), ("bread", 5800, 1)],
        )
    # 250 points split by line amount: 193.8 → 194 and 56.2 → 56 (largest remainder).
    assert sale["points_earned"] == 250
    with db.unit_of_work(readonly=True) as session:
        row = session.scalars(select(Purchase).where(Purchase.external_id == "A")).one()
        assert [line["points_earned"] for line in row.lines] == [194, 56]
    with db.unit_of_work() as session:
        one = refund(
            session, program(session, code), "A", refund_id="r1", lines=[("cake", 1)], now=frozen
        )
        bread = refund(
            session, program(session, code), "A", refund_id="r2", lines=[("bread", 1)], now=frozen
        )
    assert (Decimal(one["amount"]), one["points_reversed"]) == (10000, 97)
    assert (Decimal(bread["amount"]), bread["points_reversed"]) == (5800, 56)
    assert totals(db, code, mid, frozen).balance == 250 - 97 - 56
    assert_clean(db)


def test_mixing_refund_modes_is_a_conflict(db, frozen):
    code, (mid,) = _setup(db, frozen)
    with db.unit_of_work() as session:
        prog = program(session, code)
        buy(session, prog, mid, 25800, ext="A", now=frozen, lines=[("1", 20000, 2), ("2", 5800, 1)])
        buy(session, prog, mid, 25800, ext="B", now=frozen, lines=[("1", 20000, 2), ("2", 5800, 1)])
        refund(session, prog, "A", refund_id="a1", amount=1000, now=frozen)
        refund(session, prog, "B", refund_id="b1", lines=[("1", 1)], now=frozen)
    with pytest.raises(Conflict) as err, db.unit_of_work() as session:
        refund(session, program(session, code), "A", refund_id="a2", lines=[("2", 1)], now=frozen)
    assert err.value.code == "refund_mode_conflict"
    with pytest.raises(Conflict) as err, db.unit_of_work() as session:
        refund(session, program(session, code), "B", refund_id="b2", amount=1000, now=frozen)
    assert err.value.code == "refund_mode_conflict"
    with db.unit_of_work() as session:  # full=true continues in the mode already used
        a = refund(session, program(session, code), "A", refund_id="a3", full=True, now=frozen)
        b = refund(session, program(session, code), "B", refund_id="b3", full=True, now=frozen)
    assert (Decimal(a["amount"]), a["points_reversed"]) == (24800, 250 - 10)
    assert (Decimal(b["amount"]), b["points_reversed"]) == (15800, 250 - 97)
    assert totals(db, code, mid, frozen).balance == 0
    assert_clean(db)


def test_refunding_more_than_was_bought_is_a_conflict(db, frozen):
    code, (mid,) = _setup(db, frozen)
    with db.unit_of_work() as session:
        prog = program(session, code)
        buy(session, prog, mid, 25800, ext="A", now=frozen)
        buy(session, prog, mid, 25800, ext="B", now=frozen, lines=[("1", 20000, 2), ("2", 5800, 1)])
        refund(session, prog, "A", refund_id="a1", amount=20000, now=frozen)
        refund(session, prog, "B", refund_id="b1", lines=[("1", 1)], now=frozen)
    for ext, kwargs in (
        ("A", {"amount": 5801}),
        ("B", {"lines": [("1", 2)]}),
        ("B", {"lines": [("2", "1.001")]}),
    ):
        with pytest.raises(Conflict) as err, db.unit_of_work() as session:
            refund(session, program(session, code), ext, refund_id="too-much", now=frozen, **kwargs)
        assert err.value.code == "refund_exceeds_purchase", kwargs
    with db.unit_of_work() as session:  # exactly what is left is fine
        out = refund(session, program(session, code), "A", refund_id="a2", amount=5800, now=frozen)
    assert (out["points_reversed"], Decimal(out["refunded_total"])) == (250 - 194, 25800)
    assert totals(db, code, mid, frozen).balance == 250 - 97
    assert_clean(db)


def test_refund_replay_returns_the_first_answer_and_a_changed_body_conflicts(db, frozen):
    code, (mid,) = _setup(db, frozen)
    with db.unit_of_work() as session:
        buy(session, program(session, code), mid, 25800, ext="A", now=frozen)
        first = refund(
            session, program(session, code), "A", refund_id="r1", amount=10000, now=frozen
        )
    with db.unit_of_work() as session:
        again = refund(
            session,
            program(session, code),
            "A",
            refund_id="r1",
            amount=10000,
            now=frozen + timedelta(minutes=5),
        )
    assert again == first
    assert first["points_reversed"] == 97
    with pytest.raises(Conflict) as err, db.unit_of_work() as session:
        refund(session, program(session, code), "A", refund_id="r1", amount=5000, now=frozen)
    assert err.value.code == "duplicate_refund"
    t = totals(db, code, mid, frozen)
    assert (t.balance, t.earned) == (250 - 97, 250 - 97)
    with db.unit_of_work(readonly=True) as session:
        acct = account(session, program(session, code), mid)
        assert len(entries(session, acct.id, "reverse")) == 1
    assert_clean(db)


def test_refund_restores_exactly_the_lots_the_redemption_consumed(db, frozen):
    code, (mid,) = _setup(db, frozen)
    with db.unit_of_work() as session:
        prog = program(session, code)
        set_expiry(session, prog, months=1, now=frozen)
        adjust(session, prog, mid, 600, now=frozen)  # lot A: 600, expires in a month
        set_expiry(session, prog, months=12, now=frozen)
        adjust(session, prog, mid, 1000, now=frozen)  # lot B: 1000, expires in a year
        sale = buy(session, prog, mid, 1000, ext="P", spend=1000, now=frozen)  # A 600 + B 400
        adjust(session, prog, mid, 500, now=frozen)  # lot C: untouched by the redemption
    with db.unit_of_work(readonly=True) as session:
        acct_id = account(session, program(session, code), mid).id
        lot_a, lot_b, lot_c = (lot.id for lot in lot_rows(session, acct_id))
        redeem_id = next(e["id"] for e in sale["entries"] if e["kind"] == "redeem")
        assert movements_of(session, redeem_id) == {lot_a: -600, lot_b: -400}

    with db.unit_of_work() as session:
        half = refund(session, program(session, code), "P", refund_id="r1", amount=500, now=frozen)
    assert half["points_restored"] == 500
    with db.unit_of_work(readonly=True) as session:
        restore_id = next(e["id"] for e in half["entries"] if e["kind"] == "reverse")
        # The longest-valid lot gets its points back first.
        assert movements_of(session, restore_id) == {lot_b: 400, lot_a: 100}
    with db.unit_of_work() as session:
        rest = refund(session, program(session, code), "P", refund_id="r2", full=True, now=frozen)
    assert rest["points_restored"] == 500
    with db.unit_of_work(readonly=True) as session:
        restore_id = next(e["id"] for e in rest["entries"] if e["kind"] == "reverse")
        assert movements_of(session, restore_id) == {lot_a: 500}
        remaining = {lot.id: lot.remaining for lot in lot_rows(session, acct_id)}
        assert remaining == {lot_a: 600, lot_b: 1000, lot_c: 500}
        restores = session.scalars(select(Entry).where(Entry.reverses_entry_id == redeem_id)).all()
        assert sum(e.points for e in restores) == 1000
    t = totals(db, code, mid, frozen)
    assert (t.balance, t.redeemed, t.adjusted) == (2100, 0, 2100)
    assert_clean(db)


def test_refund_after_spending_the_points_leaves_debt_paid_by_the_next_earn(db, frozen):
    code, (mid,) = _setup(db, frozen, redemption={"min_points": 10, "step": 10, "max_share": "1"})
    with db.unit_of_work() as session:
        prog = program(session, code)
        buy(session, prog, mid, 25800, ext="earn", now=frozen)
        spent = buy(session, prog, mid, 250, ext="spend", spend=250, now=frozen)
    assert (spent["points_earned"], spent["totals"]["balance"]) == (0, 0)
    with db.unit_of_work() as session:
        out = refund(session, program(session, code), "earn", refund_id="r", full=True, now=frozen)
    assert (out["points_reversed"], out["debt_added"], out["points_written_off"]) == (250, 250, 0)
    assert out["negative_balance_policy"] == "allow_debt" and "250" in out["note"]
    t = totals(db, code, mid, frozen)
    assert (t.balance, t.debt, t.available, t.earned, t.redeemed) == (-250, 250, 0, 0, 250)
    assert_clean(db)

    with db.unit_of_work() as session:
        out = buy(session, program(session, code), mid, 30000, ext="next", now=frozen)
    earn = next(e for e in out["entries"] if e["kind"] == "earn")
    assert (earn["points"], earn["details"]["debt_settled"]) == (300, 250)
    t = totals(db, code, mid, frozen)
    assert (t.balance, t.debt, t.available, t.earned) == (50, 0, 50, 300)
    assert_clean(db)


def test_write_off_policy_takes_what_is_left_and_forgives_the_rest(db, frozen):
    code, (mid,) = _setup(
        db,
        frozen,
        negative_balance="write_off",
        redemption={"min_points": 10, "step": 10, "max_share": "1"},
    )
    with db.unit_of_work() as session:
        prog = program(session, code)
        buy(session, prog, mid, 25800, ext="earn", now=frozen)
        buy(session, prog, mid, 150, ext="spend", spend=150, now=frozen)
    with db.unit_of_work() as session:
        out = refund(session, program(session, code), "earn", refund_id="r", full=True, now=frozen)
    assert (out["points_reversed"], out["points_written_off"], out["debt_added"]) == (100, 150, 0)
    assert out["negative_balance_policy"] == "write_off" and "150" in out["note"]
    t = totals(db, code, mid, frozen)
    assert (t.balance, t.debt, t.available, t.earned, t.redeemed) == (0, 0, 0, 150, 150)
    with db.unit_of_work() as session:
        out = buy(session, program(session, code), mid, 30000, ext="next", now=frozen)
    assert out["totals"]["balance"] == 300  # nothing owed
    assert_clean(db)


def test_partial_refund_with_debt_then_restore_pays_the_debt(db, frozen):
    """Refund of the spending purchase gives back points that first pay the debt."""
    code, (mid,) = _setup(db, frozen, redemption={"min_points": 10, "step": 10, "max_share": "1"})
    with db.unit_of_work() as session:
        prog = program(session, code)
        buy(session, prog, mid, 25800, ext="earn", now=frozen)
        buy(session, prog, mid, 250, ext="spend", spend=250, now=frozen)
        refund(session, prog, "earn", refund_id="r1", full=True, now=frozen)
        out = refund(session, prog, "spend", refund_id="r2", full=True, now=frozen)
    assert out["points_restored"] == 250
    t = totals(db, code, mid, frozen)
    assert (t.balance, t.debt, t.available, t.earned, t.redeemed) == (0, 0, 0, 0, 0)
    assert_clean(db)


def test_refund_after_the_points_expired_unspent_takes_nothing_more(db, frozen):
    """Expired points already left the balance: a refund must not charge them again as debt."""
    code, (mid,) = _setup(db, frozen)
    later = frozen + timedelta(days=400)
    with db.unit_of_work() as session:
        prog = program(session, code)
        buy(session, prog, mid, 25800, ext="old", now=frozen)
        buy(session, prog, mid, 12000, ext="new", now=later)  # 120 points, still valid
    with db.unit_of_work() as session:
        half = refund(
            session, program(session, code), "old", refund_id="r1", amount=12900, now=later
        )
    assert (half["points_reversed"], half["points_already_expired"], half["debt_added"]) == (
        0,
        125,
        0,
    )
    assert "expired unspent" in half["note"]
    with db.unit_of_work() as session:
        rest = refund(session, program(session, code), "old", refund_id="r2", full=True, now=later)
    assert (rest["points_reversed"], rest["points_already_expired"], rest["debt_added"]) == (
        0,
        125,
        0,
    )
    t = totals(db, code, mid, later)
    # The newer purchase's 120 points are untouched; the old 250 count as earned and expired.
    assert (t.balance, t.debt, t.earned, t.expired) == (120, 0, 370, 250)
    assert_clean(db)


def test_refund_after_part_was_spent_and_the_rest_expired(db, frozen):
    """Of 250 earned, 100 were spent and 150 expired: a full refund takes back only the 100."""
    code, (mid,) = _setup(db, frozen, redemption={"min_points": 10, "step": 10, "max_share": "1"})
    later = frozen + timedelta(days=400)
    with db.unit_of_work() as session:
        prog = program(session, code)
        buy(session, prog, mid, 25800, ext="old", now=frozen)
        buy(session, prog, mid, 100, ext="spend", spend=100, now=frozen)
    with db.unit_of_work() as session:
        out = refund(session, program(session, code), "old", refund_id="r", full=True, now=later)
    assert (out["points_reversed"], out["points_already_expired"], out["debt_added"]) == (
        100,
        150,
        100,
    )
    t = totals(db, code, mid, later)
    assert (t.balance, t.debt, t.expired) == (-100, 100, 150)
    assert_clean(db)
