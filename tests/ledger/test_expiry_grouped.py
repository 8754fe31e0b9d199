"""One expire entry per account and expiry instant, a movement per lot (decision 0008).

The nightly job (set-based, both engines) and the ORM's `settle_due` write the same shape: the
entry carries the sum of the account's lots expiring at one instant, dated at that instant,
names the lot only when it covers one, and its movements tie it to each lot; one
points.expired event per entry. FloCafe #78 (LESSONS.md): only each lot's unspent remainder
expires, so the balance stays the sum of lot remainders — `patron check` proves it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from patron.check import run_check
from patron.db.engine import Database
from patron.events.models import DomainEvent
from patron.events.outbox import entry_payload
from patron.ledger.jobs import run_expiry
from patron.ledger.models import Account, Entry, Lot
from tests.factories import make_member, make_program
from tests.ledger._helpers import (
    account,
    adjust,
    assert_clean,
    buy,
    entries,
    movements_of,
    program,
    refund,
)

# Points credited on T0's day (Seoul) expire at 2027-03-03 00:00 Seoul; a day later, a day on.
FIRST = datetime(2027, 3, 2, 15, 0, tzinfo=UTC)
SECOND = FIRST + timedelta(days=1)
RUN_AT = datetime(2027, 6, 1, tzinfo=UTC)


def _two_members(db: Database, now: datetime) -> tuple[int, int]:
    """Ann: 100, 200 and 300 credited on T0's day, 400 the next day, 50 of the 100 spent.
    Bob: 1,000 on T0's day."""
    with db.unit_of_work() as session:
        prog = make_program(session, now=now)
        ann = make_member(session, now=now, program=prog).id
        bob = make_member(session, now=now, program=prog).id
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        for hours, points in enumerate((100, 200, 300)):
            adjust(session, prog, ann, points, now=now + timedelta(hours=hours))
        adjust(session, prog, ann, 400, now=now + timedelta(days=1))
        adjust(session, prog, ann, -50, now=now + timedelta(hours=5))
        adjust(session, prog, bob, 1000, now=now)
    return ann, bob


def _expire_entries(db: Database, member_id: int) -> list[tuple[datetime, int, bool, list[int]]]:
    """(instant, points, names a lot, the remainders its movements took) per expire entry."""
    with db.unit_of_work(readonly=True) as session:
        acc = account(session, program(session, "bakery"), member_id)
        out = []
        for e in entries(session, acc.id, "expire"):
            moved = movements_of(session, e.id)
            if e.lot_id is not None:
                assert list(moved) == [e.lot_id]
            out.append(
                (
                    e.occurred_at.astimezone(UTC),
                    e.points,
                    e.lot_id is not None,
                    sorted(moved.values()),
                )
            )
    return sorted(out)


def _events_match_entries(db: Database) -> None:
    """One points.expired event per expire entry, its payload what `entry_payload` gives."""
    with db.unit_of_work(readonly=True) as session:
        expired = list(session.scalars(select(Entry).where(Entry.kind == "expire")))
        events = {
            e.entry_id: e
            for e in session.scalars(
                select(DomainEvent).where(DomainEvent.kind == "points.expired")
            )
        }
        assert len(events) == len(expired)
        for entry in expired:
            acc = session.get(Account, entry.account_id)
            assert acc is not None
            assert events[entry.id].payload == entry_payload(
                program="bakery",
                member_id=acc.member_id,
                entry_id=entry.id,
                entry_kind="expire",
                points=entry.points,
                occurred_at=entry.occurred_at,
                reason="points expired",
            )


@pytest.mark.parametrize("batch_size", [1, 2, 5000])
def test_the_job_writes_one_entry_per_account_and_instant(db, frozen, batch_size):
    ann, bob = _two_members(db, frozen)

    report = run_expiry(db, RUN_AT, batch_size=batch_size)

    # A chunk never splits an account's lots of one instant, whatever its size.
    assert (report.lots, report.points, report.accounts, report.entries) == (5, 1950, 2, 3)
    assert _expire_entries(db, ann) == [
        (FIRST, -550, False, [-300, -200, -50]),
        (SECOND, -400, True, [-400]),
    ]
    assert _expire_entries(db, bob) == [(FIRST, -1000, True, [-1000])]
    with db.unit_of_work(readonly=True) as session:
        prog = program(session, "bakery")
        acc = account(session, prog, ann)
        assert (acc.available, acc.expired) == (0, 950)
        assert set(session.scalars(select(Lot.remaining))) == {0}
    _events_match_entries(db)
    assert run_expiry(db, RUN_AT, batch_size=batch_size).lots == 0
    assert_clean(db)


def test_a_sale_after_the_date_settles_the_same_shape_as_the_job(db, frozen):
    """`settle_due` (the ORM, run by a till before it spends) groups by instant too."""
    ann, _ = _two_members(db, frozen)
    with db.unit_of_work() as session:
        buy(session, program(session, "bakery"), ann, 1000, ext="late", now=RUN_AT)

    assert _expire_entries(db, ann) == [
        (FIRST, -550, False, [-300, -200, -50]),
        (SECOND, -400, True, [-400]),
    ]
    _events_match_entries(db)
    assert_clean(db)
    # The job finds what the till did not touch (Bob's lot) and nothing of Ann's.
    report = run_expiry(db, RUN_AT)
    assert (report.lots, report.accounts, report.entries) == (1, 1, 1)
    assert_clean(db)


def test_a_pending_and_an_available_lot_of_one_instant_leave_their_own_totals(db, frozen):
    with db.unit_of_work() as session:
        prog = make_program(
            session, now=frozen, pending_days=60, expiry={"kind": "months", "months": 1}
        )
        mid = make_member(session, now=frozen, program=prog).id
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        buy(session, prog, mid, 100_000, ext="held", now=frozen)  # 1,000 pending for 60 days
        adjust(session, prog, mid, 500, now=frozen + timedelta(hours=1))  # available
    run_at = frozen + timedelta(days=45)  # both past their date, the purchase's still pending

    report = run_expiry(db, run_at)

    assert (report.lots, report.points, report.entries) == (2, 1500, 1)
    with db.unit_of_work(readonly=True) as session:
        acc = account(session, program(session, "bakery"), mid)
        assert (acc.available, acc.pending, acc.expired) == (0, 0, 1500)
    assert_clean(db)


def test_a_refund_after_a_grouped_expiry_takes_back_only_what_was_not_expired(db, frozen):
    """The purchase's lot expired with another lot of the same day in one entry: the refund
    finds its expired share through the lot's movements, not the entry's lot_id."""
    with db.unit_of_work() as session:
        prog = make_program(session, now=frozen)
        mid = make_member(session, now=frozen, program=prog).id
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        buy(session, prog, mid, 25800, ext="old", now=frozen)  # 250 points
        adjust(session, prog, mid, 300, now=frozen + timedelta(hours=1))
    assert run_expiry(db, RUN_AT).entries == 1

    with db.unit_of_work() as session:
        out = refund(
            session, program(session, "bakery"), "old", refund_id="r", full=True, now=RUN_AT
        )

    assert (out["points_reversed"], out["points_already_expired"], out["debt_added"]) == (
        0,
        250,
        0,
    )
    with db.unit_of_work(readonly=True) as session:
        acc = account(session, program(session, "bakery"), mid)
        assert (acc.available, acc.debt, acc.expired) == (0, 0, 550)
    assert_clean(db)


TAMPERING = [
    # An expire movement moved to a lot of the same account expiring at another instant.
    (
        "UPDATE movements SET lot_id = (SELECT max(l.id) FROM lots l JOIN entries e"
        " ON e.account_id = l.account_id WHERE e.id = movements.entry_id)"
        " WHERE id = (SELECT min(m.id) FROM movements m JOIN entries e ON e.id = m.entry_id"
        " WHERE e.kind = 'expire' AND e.lot_id IS NULL)",
        "not due at its entry's instant",
    ),
    # A grouped entry claiming to be one lot's.
    (
        "UPDATE entries SET lot_id = (SELECT min(m.lot_id) FROM movements m"
        " WHERE m.entry_id = entries.id)"
        " WHERE kind = 'expire' AND lot_id IS NULL",
        "not the lot it names",
    ),
]


@pytest.mark.parametrize(("sql", "label"), TAMPERING, ids=["instant", "lot"])
def test_check_catches_a_corrupted_grouped_expiry(db, frozen, sql, label):
    _two_members(db, frozen)
    run_expiry(db, RUN_AT)
    assert_clean(db)
    with db.engine.begin() as conn:
        assert conn.execute(text(sql)).rowcount == 1
    with db.unit_of_work(readonly=True) as session:
        report = run_check(session)
    assert any(label in violation for violation in report.violations), report.violations
