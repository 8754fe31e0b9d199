"""Earning: base rate, rounding, paid-with-points, amount validation, splits and expiry dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from patron import clock
from patron.errors import Invalid
from patron.ledger.expiry import add_months, expires_at, pending_until
from patron.ledger.models import Lot
from patron.money import Rounding, parse_amount, round_points, split_proportionally
from tests.factories import SHANGHAI, make_member, make_program
from tests.ledger._helpers import account, adjust, assert_clean, buy, lot_rows, program, totals

SEOUL = ZoneInfo("Asia/Seoul")


def _setup(db, now, **overrides):
    with db.unit_of_work() as session:
        prog = make_program(session, now=now, **overrides)
        member = make_member(session, now=now, program=prog)
    return prog.code, member.id


def test_bakery_25800_krw_earns_250_points(db, frozen):
    code, mid = _setup(db, frozen)
    with db.unit_of_work() as session:
        out = buy(session, program(session, code), mid, 25800, ext="A-1", now=frozen)
    assert out["points_earned"] == 250
    assert out["totals"]["balance"] == 250
    (base,) = out["entries"][0]["breakdown"]  # every earn explains itself
    assert (base["kind"], base["result"]) == ("base_rate", 250)
    assert out["entries"][0]["rule_version"] == 1
    t = totals(db, code, mid, frozen)
    assert (t.balance, t.earned, t.redeemed, t.available) == (250, 250, 0, 250)
    assert_clean(db)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [("999", 0), ("1000", 10), ("1999", 10), ("25800", 250), ("100000", 1000)],
)
def test_bakery_counts_only_full_thousands(db, frozen, amount, expected):
    code, mid = _setup(db, frozen)
    with db.unit_of_work() as session:
        out = buy(session, program(session, code), mid, amount, ext="A", now=frozen)
    assert out["points_earned"] == expected


@pytest.mark.parametrize(
    ("rounding", "amount", "expected"),
    [
        ("down", "25.80", 25),
        ("half_up", "25.80", 26),
        ("up", "25.80", 26),
        ("down", "25.50", 25),
        ("half_up", "25.50", 26),
        ("up", "25.50", 26),
        ("down", "25.49", 25),
        ("half_up", "25.49", 25),
        ("up", "25.49", 26),
        ("down", "25.00", 25),
        ("half_up", "25.00", 25),
        ("up", "25.00", 25),
        ("up", "0.01", 1),
        ("down", "0.99", 0),
    ],
)
def test_cny_proportional_rounding(db, frozen, rounding, amount, expected):
    earning = {**SHANGHAI["earning"], "rounding": rounding}
    code, mid = _setup(db, frozen, base=SHANGHAI, earning=earning)
    with db.unit_of_work() as session:
        out = buy(session, program(session, code), mid, amount, ext="S-1", now=frozen)
    assert out["points_earned"] == expected
    assert totals(db, code, mid, frozen).balance == expected


@pytest.mark.parametrize(("earn_on_redeemed", "expected"), [(False, 240), (True, 250)])
def test_points_paid_part_earns_only_when_configured(db, frozen, earn_on_redeemed, expected):
    code, mid = _setup(db, frozen, earn_on_redeemed=earn_on_redeemed)
    with db.unit_of_work() as session:
        prog = program(session, code)
        adjust(session, prog, mid, 2000, now=frozen)
        # 25,800 KRW with 1,000 paid by points: 24,800 KRW earns 240 (or all 25,800 earns 250).
        out = buy(session, prog, mid, 25800, ext="A-1", spend=1000, now=frozen)
    assert out["points_earned"] == expected
    assert out["points_spent"] == 1000
    assert Decimal(out["spend_value"]) == Decimal(1000)
    t = totals(db, code, mid, frozen)
    assert (t.balance, t.earned, t.redeemed, t.adjusted) == (1000 + expected, expected, 1000, 2000)
    assert_clean(db)


@pytest.mark.parametrize(
    ("base", "amount"),
    [({}, "25800.5"), ({}, "25800.01"), (SHANGHAI, "25.805"), (SHANGHAI, "0.001")],
)
def test_amount_with_too_many_decimals_is_rejected(db, frozen, base, amount):
    code, mid = _setup(db, frozen, base=base or None)
    with pytest.raises(Invalid) as err, db.unit_of_work() as session:
        buy(session, program(session, code), mid, amount, ext="X", now=frozen)
    assert err.value.code == "invalid_amount"
    with db.unit_of_work(readonly=True) as session:
        assert lot_rows(session, account(session, program(session, code), mid).id) == []


def test_line_amount_with_too_many_decimals_is_rejected(db, frozen):
    code, mid = _setup(db, frozen, base=SHANGHAI)
    with pytest.raises(Invalid) as err, db.unit_of_work() as session:
        buy(
            session,
            program(session, code),
            mid,
            "10.00",
            ext="X",
            now=frozen,
            lines=[("a", "5.005", 1), ("b", "4.995", 1)],
        )
    assert err.value.code == "invalid_amount"
    assert "lines[0].amount" in err.value.detail


def test_currency_mismatch_is_rejected(db, frozen):
    code, mid = _setup(db, frozen)
    with pytest.raises(Invalid) as err, db.unit_of_work() as session:
        buy(session, program(session, code), mid, "25800", currency="USD", ext="X", now=frozen)
    assert err.value.code == "currency_mismatch"
    with db.unit_of_work() as session:  # the program's own currency, stated, is fine
        out = buy(
            session, program(session, code), mid, "25800", currency="KRW", ext="Y", now=frozen
        )
    assert out["points_earned"] == 250


def test_lines_must_sum_to_amount(db, frozen):
    code, mid = _setup(db, frozen)
    with pytest.raises(Invalid) as err, db.unit_of_work() as session:
        buy(
            session,
            program(session, code),
            mid,
            "25800",
            ext="X",
            now=frozen,
            lines=[("1", "20000", 1), ("2", "5000", 1)],
        )
    assert err.value.code == "lines_total_mismatch"
    with db.unit_of_work() as session:
        out = buy(
            session,
            program(session, code),
            mid,
            "25800",
            ext="Y",
            now=frozen,
            lines=[("1", "20000", 1), ("2", "5800", 1)],
        )
    assert out["points_earned"] == 250
    assert_clean(db)


def test_earn_lot_expires_at_local_midnight_after_a_seoul_edge_purchase(db, frozen):
    """23:59 on 30 June in Seoul is still 30 June locally (14:59 UTC)."""
    code, mid = _setup(db, frozen)
    sale = datetime(2026, 6, 30, 23, 59, tzinfo=SEOUL)
    clock.freeze(sale)
    with db.unit_of_work() as session:
        buy(session, program(session, code), mid, 25800, ext="late", now=clock.now())
    with db.unit_of_work(readonly=True) as session:
        (lot,) = session.scalars(
            select(Lot).where(Lot.account_id == account(session, program(session, code), mid).id)
        ).all()
        assert clock.as_utc(lot.expires_at) == datetime(2027, 7, 1, 0, 0, tzinfo=SEOUL)
        assert clock.as_utc(lot.expires_at) == datetime(2027, 6, 30, 15, 0, tzinfo=UTC)


# --- pure units -------------------------------------------------------------------------


@given(
    total=st.integers(min_value=0, max_value=10**9),
    weights=st.lists(
        st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=12,
    ),
)
def test_split_proportionally_sums_and_stays_within_one_of_exact_share(total, weights):
    parts = split_proportionally(total, weights)
    assert len(parts) == len(weights)
    assert sum(parts) == total
    weight_sum = sum(weights, Decimal(0))
    if weight_sum == 0:
        assert parts[0] == total
        return
    for part, weight in zip(parts, weights, strict=True):
        exact = Fraction(total) * Fraction(weight) / Fraction(weight_sum)
        assert abs(Fraction(part) - exact) < 1
        assert part >= 0


def test_split_proportionally_examples():
    assert split_proportionally(250, [Decimal(20000), Decimal(5800)]) == [194, 56]
    assert split_proportionally(10, [Decimal(1), Decimal(1), Decimal(1)]) == [4, 3, 3]
    assert split_proportionally(7, []) == []
    assert split_proportionally(5, [Decimal(0), Decimal(0)]) == [5, 0]


@pytest.mark.parametrize(
    ("value", "rounding", "expected"),
    [
        ("25.5", Rounding.DOWN, 25),
        ("25.5", Rounding.HALF_UP, 26),
        ("25.5", Rounding.UP, 26),
        ("25.49", Rounding.HALF_UP, 25),
        ("25.01", Rounding.UP, 26),
        ("25", Rounding.UP, 25),
    ],
)
def test_round_points(value, rounding, expected):
    assert round_points(Decimal(value), rounding) == expected


def test_parse_amount_minor_units():
    assert parse_amount("25800", "KRW") == Decimal(25800)
    assert parse_amount("25800.000", "KRW") == Decimal(25800)
    assert parse_amount("25.8", "CNY") == Decimal("25.80")
    for bad, currency in (("25800.5", "KRW"), ("1.001", "CNY"), ("NaN", "CNY"), ("abc", "KRW")):
        with pytest.raises(ValueError):
            parse_amount(bad, currency)


def _seoul(*args: int) -> datetime:
    return datetime(*args, tzinfo=SEOUL).astimezone(UTC)


@pytest.mark.parametrize(
    ("earned", "kind", "months", "expected"),
    [
        # months: valid through the same local day N months later.
        (_seoul(2026, 3, 2, 12, 0), "months", 12, _seoul(2027, 3, 3)),
        # The Seoul edge: 23:59 local on 30 June is 30 June; 00:30 local on 1 July is 1 July,
        # although both are 30 June in UTC.
        (_seoul(2026, 6, 30, 23, 59), "months", 12, _seoul(2027, 7, 1)),
        (_seoul(2026, 7, 1, 0, 30), "months", 12, _seoul(2027, 7, 2)),
        # Month-end clamping: 31 January + 1 month is 28 February (29 in a leap year).
        (_seoul(2026, 1, 31, 10, 0), "months", 1, _seoul(2026, 3, 1)),
        (_seoul(2028, 1, 31, 10, 0), "months", 1, _seoul(2028, 3, 1)),
        (_seoul(2026, 8, 31, 10, 0), "months", 6, _seoul(2027, 3, 1)),
        # end_of_month: through the last day of the month N months after earning.
        (_seoul(2026, 6, 30, 23, 59), "end_of_month", 0, _seoul(2026, 7, 1)),
        (_seoul(2026, 7, 1, 0, 30), "end_of_month", 0, _seoul(2026, 8, 1)),
        (_seoul(2026, 1, 31, 10, 0), "end_of_month", 1, _seoul(2026, 3, 1)),
        (_seoul(2026, 11, 15, 10, 0), "end_of_month", 2, _seoul(2027, 2, 1)),
        # end_of_year: through 31 December of the year N months after earning.
        (_seoul(2026, 12, 31, 23, 59), "end_of_year", 0, _seoul(2027, 1, 1)),
        (_seoul(2027, 1, 1, 0, 30), "end_of_year", 0, _seoul(2028, 1, 1)),
        (_seoul(2026, 7, 1, 0, 30), "end_of_year", 6, _seoul(2028, 1, 1)),
        (_seoul(2026, 6, 30, 23, 59), "end_of_year", 6, _seoul(2027, 1, 1)),
    ],
)
def test_expires_at_in_program_timezone(earned, kind, months, expected):
    assert expires_at(earned, kind=kind, months=months, timezone="Asia/Seoul") == expected


def test_expires_at_utc_program_differs_from_seoul_on_the_edge():
    earned = _seoul(2026, 7, 1, 0, 30)  # 30 June 15:30 UTC
    assert expires_at(earned, kind="months", months=12, timezone="UTC") == datetime(
        2027, 7, 1, tzinfo=UTC
    )
    assert expires_at(earned, kind="none", months=0, timezone="Asia/Seoul") is None


def test_add_months_clamps_and_rolls_years():
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)
    assert add_months(date(2026, 12, 15), 1) == date(2027, 1, 15)
    assert add_months(date(2026, 3, 31), 23) == date(2028, 2, 29)


def test_pending_until():
    earned = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    assert pending_until(earned, days=0) is None
    assert pending_until(earned, days=7) == earned + timedelta(days=7)


def _split_in_decimals(total: int, weights: list[Decimal]) -> list[int]:
    """The split as it was computed before it moved to whole numbers (Decimal division)."""
    weight_sum = sum(weights, Decimal(0))
    if weight_sum <= 0:
        return [total] + [0] * (len(weights) - 1)
    raw = [Decimal(total) * w / weight_sum for w in weights]
    parts = [int(r.to_integral_value(rounding=ROUND_FLOOR)) for r in raw]
    left = total - sum(parts)
    for i in sorted(range(len(weights)), key=lambda i: (-(raw[i] - parts[i]), i))[:left]:
        parts[i] += 1
    return parts


@given(
    total=st.integers(min_value=-(10**9), max_value=10**9),
    weights=st.lists(
        st.decimals(
            min_value=-(10**6), max_value=10**9, places=3, allow_nan=False, allow_infinity=False
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_split_proportionally_in_whole_numbers_splits_as_decimals_did(total, weights):
    assert split_proportionally(total, weights) == _split_in_decimals(total, weights)
