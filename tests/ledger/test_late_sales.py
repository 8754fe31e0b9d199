"""Sales recorded late (a till that was offline) are judged as of when they happened.

A sale that spent points while the till was offline, synced after the expiry job took those
points, still goes through: points that were valid when it happened and expired since are
given back by an adjustment naming the expiry (visible in the history, explained), and the
redemption takes them. Nothing more than the expiry took comes back, and points that had
already expired when the sale happened do not (docs/concepts.md, "Sales recorded late").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from patron.audit.service import CLI
from patron.errors import InsufficientPoints
from patron.ledger.jobs import run_expiry
from patron.ledger.models import Entry
from patron.sales import batch
from patron.sales.schemas import PurchaseRequest
from tests.factories import make_member, make_program
from tests.ledger._helpers import account, assert_clean, buy, program, refund, totals

T0 = datetime(2026, 1, 10, 3, 0, tzinfo=UTC)
SYNC = T0 + timedelta(days=400)  # the 12-month points of T0 expired 34 days ago
HAPPENED = T0 + timedelta(days=100)  # when the offline sales happened: the points were valid


def _member_with_expired_points(db) -> int:
    with db.unit_of_work() as session:
        prog = make_program(session, now=T0)
        member = make_member(session, now=T0, program=prog).id
    with db.unit_of_work() as session:
        buy(session, program(session, "bakery"), member, 300_000, ext="EARLY", now=T0)
    run_expiry(db, SYNC)
    assert totals(db, "bakery", member, SYNC).expired == 3000
    return member


def test_a_late_sale_spends_points_that_expired_after_it_happened(db):
    member = _member_with_expired_points(db)
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        answer = buy(
            session, prog, member, 50_000, ext="LATE-1", now=SYNC, spend=1000, occurred_at=HAPPENED
        )
    given, redeemed, earned = answer["entries"]
    assert (given["kind"], given["points"]) == ("adjust", 1000)
    assert given["details"]["late_sale"] is True
    assert "LATE-1" in given["reason"] and "recorded late" in given["reason"]
    assert (redeemed["kind"], redeemed["points"]) == ("redeem", -1000)
    assert (earned["kind"], earned["points"]) == ("earn", 490)  # on the 49,000 paid in money
    t = answer["totals"]
    assert (t["balance"], t["expired"], t["adjusted"], t["redeemed"]) == (490, 3000, 1000, 1000)
    with db.unit_of_work(readonly=True) as session:
        acct = account(session, program(session, "bakery"), member)
        expire = session.scalars(
            select(Entry).where(Entry.account_id == acct.id, Entry.kind == "expire")
        ).one()
        adjustment = session.get(Entry, given["id"])
        assert adjustment is not None and adjustment.reverses_entry_id == expire.id
    assert_clean(db)

    # The 490 points on hand go first; the expiry gives back only what is still missing.
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        second = buy(
            session, prog, member, 2000, ext="LATE-2", now=SYNC, spend=2000, occurred_at=HAPPENED
        )
    assert [(e["kind"], e["points"]) for e in second["entries"]] == [
        ("adjust", 1510),
        ("redeem", -2000),
    ]
    # 3,000 expired, 2,510 given back: 490 left to draw on, not enough for 1,000.
    with db.unit_of_work() as session, pytest.raises(InsufficientPoints):
        buy(
            session,
            program(session, "bakery"),
            member,
            5000,
            ext="LATE-3",
            now=SYNC,
            spend=1000,
            occurred_at=HAPPENED,
        )
    assert_clean(db)


def test_points_already_expired_when_the_sale_happened_stay_expired(db):
    member = _member_with_expired_points(db)
    after_expiry = T0 + timedelta(days=380)
    with db.unit_of_work() as session, pytest.raises(InsufficientPoints):
        buy(
            session,
            program(session, "bakery"),
            member,
            50_000,
            ext="TOO-LATE",
            now=SYNC,
            spend=1000,
            occurred_at=after_expiry,
        )
    # A sale recorded on time has nothing to draw on either.
    with db.unit_of_work() as session, pytest.raises(InsufficientPoints):
        buy(session, program(session, "bakery"), member, 50_000, ext="NOW", now=SYNC, spend=1000)


def test_a_batch_of_late_sales_draws_on_each_expiry_once(db):
    member = _member_with_expired_points(db)
    bodies = [
        {
            "external_id": f"OFF-{n}",
            "member": {"id": member},
            "amount": "20000",
            "points_to_spend": 1000,
            "occurred_at": (HAPPENED + timedelta(hours=n)).isoformat(),
        }
        for n in range(4)
    ]
    report = batch.ingest(
        db,
        "bakery",
        [PurchaseRequest.model_validate(b) for b in bodies],
        actor=CLI,
        now=SYNC,
    )
    # 3,000 expired, and each sale earns 190 on the 19,000 paid in money: the fourth sale
    # finds 570 on hand, not the 1,000 it spends.
    assert [(i.status, i.error) for i in report.items] == [
        ("created", None),
        ("created", None),
        ("created", None),
        ("error", "insufficient_points"),
    ]
    t = totals(db, "bakery", member, SYNC)
    assert (t.expired, t.redeemed, t.balance) == (3000, 3000, 190)
    assert_clean(db)


def test_refunding_a_late_sale_gives_its_points_back_to_expire_again(db):
    member = _member_with_expired_points(db)
    with db.unit_of_work() as session:
        buy(
            session,
            program(session, "bakery"),
            member,
            10_000,
            ext="LATE-R",
            now=SYNC,
            spend=1000,
            occurred_at=HAPPENED,
        )
    with db.unit_of_work() as session:
        refund(session, program(session, "bakery"), "LATE-R", refund_id="R1", now=SYNC, full=True)
    t = totals(db, "bakery", member, SYNC)
    # The 1,000 come back to the lot that gave them, whose date has passed: expired again.
    assert (t.balance, t.redeemed, t.adjusted, t.expired) == (0, 0, 1000, 4000)
    assert_clean(db)
