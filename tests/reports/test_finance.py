"""Money in a currency with cents, pending points and debt: as-of balances, liability, journal."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal

from openpyxl import load_workbook

from patron import clock
from patron.db.engine import Database
from patron.ledger.views import get_account
from patron.programs.service import get_program
from patron.reports import export, finance, rollup
from patron.reports.common import day_range, money
from tests.factories import SHANGHAI, make_member, make_program
from tests.reports._scenario import at, full_refund, sale, shown


def test_cents_pending_points_and_debt(db: Database) -> None:
    clock.freeze(at(1, 1))
    with db.unit_of_work() as session:
        program = make_program(
            session, now=at(1, 1), base=SHANGHAI, stores=("nanjing-rd",), pending_days=7
        )
        member = make_member(session, now=at(1, 1), program=program).id
    snaps = []

    def snap(instant):
        snaps.append((instant, shown(db, "shanghai", member, instant)))

    # 200 CNY → 200 points, pending for 7 days.
    sale(db, "shanghai", member, 200, ext="s1", now=at(3, 1, 2), store="nanjing-rd")
    snap(at(3, 1, 2))
    snap(at(3, 8, 1, 59))  # still pending
    snap(at(3, 8, 2))  # released at this instant
    # Pay 150 points (1.50 CNY) of a 100 CNY bill: earns on 98.50 → 98 points (pending).
    sale(db, "shanghai", member, 100, ext="s2", now=at(3, 9), spend=150)
    snap(at(3, 9))
    # Refund the first sale: 200 points to take back, only 50 + 98 pending left → debt 52.
    full_refund(db, "shanghai", "s1", now=at(3, 10))
    snap(at(3, 10))
    clock.freeze(at(3, 21))
    snap(at(3, 20))
    rollup.refresh(db, now=clock.now(), limit=2)

    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, "shanghai")
        account = get_account(session, program, member)
        for instant, seen in snaps:
            got = finance.member_balance(session, program, account, at=instant, now=clock.now())
            assert (got.balance, got.available, got.pending, got.debt) == (
                seen.balance,
                seen.available,
                seen.pending,
                seen.debt,
            ), instant
        last = finance.member_balance(session, program, account, at=at(3, 20), now=clock.now())
        assert (last.debt, last.balance, last.value) == (52, -52, Decimal("-0.52"))

        assert money(program, 123) == Decimal("1.23")
        owed = finance.liability(session, program, as_of=date(2026, 3, 9), now=clock.now())
        assert owed.outstanding_points == 148  # 200 − 150 + 98: pending points count
        assert owed.outstanding_value == Decimal("1.48")

        rng = day_range(program, first=date(2026, 3, 1), last=date(2026, 3, 31), now=clock.now())
        journal = finance.journal(session, program, rng)
    amounts = {(line.entry, line.account): line.credit or line.debit for line in journal.lines}
    assert amounts[("2026-03-01/issued", "Points liability")] == Decimal("2.00")
    assert amounts[("2026-03-09/redeemed", "Points redemption")] == Decimal("1.50")
    assert amounts[("2026-03-10/reversed", "Loyalty expense")] == Decimal("2.00")
    assert all(day.debit == day.credit for day in journal.days)

    book = load_workbook(io.BytesIO(export.to_xlsx(export.journal_tables(journal))))
    sheet = book["Journal"]
    assert sheet["A2"].value == "Date" and sheet["D3"].number_format == "#,##0.00"
    assert sheet["D3"].value == 2  # a number, formatted with the currency's two decimals
