"""`patron check` must notice when a cached sum or a ledger row has been tampered with."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from patron.check import run_check
from patron.ledger.jobs import run_expiry
from tests.factories import make_member, make_program
from tests.ledger._helpers import adjust, buy, program, refund


@pytest.fixture
def history(db, frozen):
    """Earn, spend, a partial refund, debt, and an expiry: every kind of entry and movement."""
    with db.unit_of_work() as session:
        prog = make_program(
            session, now=frozen, redemption={"min_points": 10, "step": 10, "max_share": "1"}
        )
        kim = make_member(session, now=frozen, program=prog).id
        lee = make_member(session, now=frozen, program=prog).id
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        adjust(session, prog, kim, 1000, now=frozen)
        buy(session, prog, kim, 25800, ext="A", spend=500, now=frozen)
        refund(session, prog, "A", refund_id="r1", amount=10000, now=frozen)
        buy(session, prog, lee, 25800, ext="B", now=frozen)
        buy(session, prog, lee, 250, ext="C", spend=250, now=frozen)
        refund(session, prog, "B", refund_id="r2", full=True, now=frozen)  # lee owes 250
    run_expiry(db, frozen + timedelta(days=400))
    with db.unit_of_work(readonly=True) as session:
        report = run_check(session)
    assert report.ok, report.violations
    assert (report.accounts, report.lots) == (2, 3)
    return db


TAMPERING = [
    (
        "UPDATE accounts SET available = available + 1 WHERE id = (SELECT min(id) FROM accounts)",
        "account totals differ",
    ),
    ("UPDATE accounts SET earned = earned - 1", "account totals differ"),
    ("UPDATE accounts SET redeemed = redeemed + 10", "account totals differ"),
    ("UPDATE accounts SET expired = 0", "account totals differ"),
    ("UPDATE accounts SET debt = 0", "account totals differ"),
    (
        "UPDATE lots SET remaining = remaining + 1 WHERE id = (SELECT min(id) FROM lots)",
        "lot remaining != points + movements",
    ),
    (
        "UPDATE lots SET points = points + 5 WHERE id = (SELECT max(id) FROM lots)",
        "entry points != lot created + movements",
    ),
    (
        "DELETE FROM movements WHERE id = (SELECT max(id) FROM movements WHERE lot_id IS NOT NULL)",
        "lot remaining != points + movements",
    ),
    ("DELETE FROM movements WHERE lot_id IS NULL", "account totals differ"),
    (
        "UPDATE entries SET points = points - 1 "
        "WHERE id = (SELECT min(id) FROM entries WHERE kind = 'redeem')",
        "entry points != lot created + movements",
    ),
    (
        "UPDATE movements SET points = -points WHERE entry_id = "
        "(SELECT min(id) FROM entries WHERE kind = 'redeem')",
        "a redemption/expiry that gives points",
    ),
]


@pytest.mark.parametrize(("sql", "label"), TAMPERING, ids=[str(i) for i in range(len(TAMPERING))])
def test_check_finds_tampering(history, sql, label):
    db = history
    with db.engine.begin() as conn:
        assert conn.execute(text(sql)).rowcount >= 1
    with db.unit_of_work(readonly=True) as session:
        report = run_check(session)
    assert not report.ok
    assert any(label in violation for violation in report.violations), report.violations


def test_check_finds_a_refund_that_gave_back_more_than_the_redemption_took(history):
    db = history
    with db.engine.begin() as conn:
        # Move kim's restore onto another lot of hers: the totals still add up per lot,
        # but the refund now gives a lot points the redemption never took from it.
        restore = conn.execute(
            text(
                "SELECT m.id, m.lot_id FROM movements m JOIN entries e ON e.id = m.entry_id "
                "JOIN entries r ON r.id = e.reverses_entry_id "
                "WHERE e.kind = 'reverse' AND r.kind = 'redeem' AND m.points > 0"
            )
        ).first()
        assert restore is not None
        other = conn.execute(
            text(
                "SELECT l.id FROM lots l JOIN lots x ON x.account_id = l.account_id "
                "WHERE x.id = :lot AND l.id != :lot ORDER BY l.id LIMIT 1"
            ),
            {"lot": restore.lot_id},
        ).scalar()
        conn.execute(
            text("UPDATE movements SET lot_id = :other WHERE id = :id"),
            {"other": other, "id": restore.id},
        )
    with db.unit_of_work(readonly=True) as session:
        report = run_check(session)
    label = "gave back more to a lot than the redemption took"
    assert any(label in v for v in report.violations), report.violations
