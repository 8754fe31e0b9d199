"""Merge and transfer through the services, on SQLite and PostgreSQL: lots keep their expiry,
histories explain the moves, `patron check` stays clean, refusals are clear, retries answer
the first result, and concurrent writers on real connections lose and double nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from patron.audit.models import AuditRecord
from patron.audit.service import CLI
from patron.check import run_check
from patron.db.engine import Database
from patron.errors import InsufficientPoints, PatronError
from patron.events.models import DomainEvent
from patron.ledger.models import Account, Entry, Lot
from patron.members.models import Card, Member
from patron.members.schemas import MemberRef
from patron.moves import merge as merges
from patron.moves import transfer as transfers
from patron.programs.service import get_program
from patron.sales import purchases
from patron.sales.schemas import AdjustRequest, PurchaseRequest, RefundRequest
from tests.factories import make_member, make_program
from tests.test_concurrency import run_together


def _buy(session, member_id: int, order: str, amount: int, now, spend: int = 0):
    program = get_program(session, "bakery")
    req = PurchaseRequest(
        external_id=order, member=MemberRef(id=member_id), amount=amount, points_to_spend=spend
    )
    return purchases.purchase(session, program, req, actor=CLI, now=now)


def _account(session, member_id: int) -> Account:
    return session.scalars(
        select(Account)
        .where(Account.member_id == member_id)
        .execution_options(populate_existing=True)
    ).one()


def _clean(session) -> None:
    report = run_check(session)
    assert report.violations == []


@pytest.fixture
def pair(db: Database, frozen):
    """Bakery program (transfers on), two members: A with purchases in two months, B with one."""
    with db.unit_of_work() as session:
        program = make_program(session, now=frozen)
        transfers.set_settings(
            session,
            program,
            enabled=True,
            max_per_transfer=50_000,
            max_per_day=80_000,
            actor=CLI,
            now=frozen,
        )
        a = make_member(session, now=frozen, program=program, phone="010-1111-2222", card="CARD-A")
        b = make_member(session, now=frozen, program=program, phone="010-3333-4444")
        ids = a.id, b.id
    with db.unit_of_work() as session:
        _buy(session, ids[0], "A-1", 100_000, frozen - timedelta(days=40))  # 1,000 points
        _buy(session, ids[0], "A-2", 300_000, frozen)  # 3,000 points
        _buy(session, ids[1], "B-1", 50_000, frozen)  # 500 points
    return ids


def _lots(session, member_id: int) -> list[tuple[int, object]]:
    account = _account(session, member_id)
    return sorted(
        (r, e)
        for r, e in session.execute(
            select(Lot.remaining, Lot.expires_at).where(
                Lot.account_id == account.id, Lot.remaining > 0
            )
        )
    )


def test_merge_moves_lots_with_their_expiry_cards_history_and_is_idempotent(db, pair, frozen):
    a, b = pair
    with db.unit_of_work() as session:
        before = _lots(session, a)
        result = merges.merge(
            session, a, b, reason="same person, two phones", actor=CLI, now=frozen
        )
    assert result["programs"][0]["points"] == 4000 and result["cards_moved"] == 1
    with db.unit_of_work() as session:
        source = session.get(Member, a)
        assert source is not None and (source.status, source.merged_into) == ("merged", b)
        assert _account(session, a).available == 0
        survivor = _account(session, b)
        assert survivor.available == 4500
        moved = [lot for lot in _lots(session, b) if lot[0] != 500]
        assert sorted(moved) == sorted(before)  # same points, same expiry dates
        kinds = set(session.scalars(select(Entry.kind).where(Entry.account_id == survivor.id)))
        assert {"merge_in", "earn"} <= kinds
        entry = session.scalars(select(Entry).where(Entry.kind == "merge_in")).first()
        assert entry is not None and entry.details["merge"]["source_id"] == a
        assert "same person" in (entry.reason or "")
        assert session.scalar(select(Card.member_id).where(Card.number == "CARD-A")) == b
        assert (
            session.scalar(
                select(func.count())
                .select_from(AuditRecord)
                .where(AuditRecord.action == "member.merged")
            )
            == 2
        )
        assert (
            session.scalar(
                select(func.count())
                .select_from(DomainEvent)
                .where(DomainEvent.kind == "member.merged")
            )
            == 1
        )
        _clean(session)
    with db.unit_of_work() as session:  # twice: the first answer, nothing written
        n = session.scalar(select(func.count()).select_from(Entry))
        again = merges.merge(session, a, b, reason="other words", actor=CLI, now=frozen)
        assert again == result
        assert session.scalar(select(func.count()).select_from(Entry)) == n


def test_refund_after_merge_takes_from_survivor(db, pair, frozen):
    a, b = pair
    with db.unit_of_work() as session:
        merges.merge(session, a, b, reason="dup", actor=CLI, now=frozen)
    with db.unit_of_work() as session:
        program = get_program(session, "bakery")
        out = purchases.refund(
            session, program, "A-2", RefundRequest(refund_id="r1", full=True), actor=CLI, now=frozen
        )
        assert out["points_reversed"] == 3000
        assert _account(session, b).available == 1500
        assert _account(session, a).available == 0
        _clean(session)


def test_merge_refusals(db, pair, frozen):
    a, b = pair
    with db.unit_of_work() as session:
        with pytest.raises(PatronError) as same:
            merges.merge(session, a, a, reason="x", actor=CLI, now=frozen)
        assert (same.value.code, same.value.status) == ("same_member", 422)
        with pytest.raises(PatronError) as no_reason:
            merges.merge(session, a, b, reason=" ", actor=CLI, now=frozen)
        assert no_reason.value.code == "reason_required"
        with pytest.raises(PatronError) as missing:
            merges.merge(session, a, 999_999, reason="x", actor=CLI, now=frozen)
        assert missing.value.status == 404
    with db.unit_of_work() as session:
        merges.merge(session, a, b, reason="dup", actor=CLI, now=frozen)
    with db.unit_of_work() as session:
        c = make_member(session, now=frozen, program=get_program(session, "bakery")).id
    with db.unit_of_work() as session:
        for src, dst in ((a, c), (c, a)):
            with pytest.raises(PatronError) as merged:
                merges.merge(session, src, dst, reason="x", actor=CLI, now=frozen)
            assert (merged.value.code, merged.value.status) == ("already_merged", 409)


def test_merge_moves_debt_and_keeps_higher_tier(db, pair, frozen):
    a, b = pair
    with db.unit_of_work() as session:
        program = get_program(session, "bakery")
        purchases.adjust(
            session,
            program,
            AdjustRequest(member=MemberRef(id=a), points=-6000, reason="fraud"),
            actor=CLI,
            now=frozen,
        )
        assert _account(session, a).debt == 2000
    with db.unit_of_work() as session:
        merges.merge(session, a, b, reason="dup", actor=CLI, now=frozen)
    with db.unit_of_work() as session:
        survivor = _account(session, b)
        assert (survivor.available, survivor.debt) == (0, 1500)
        _clean(session)


def test_transfer_keeps_expiry_and_is_idempotent(db, pair, frozen):
    a, b = pair
    with db.unit_of_work() as session:
        program = get_program(session, "bakery")
        first = transfers.transfer(
            session,
            program,
            a,
            receiver_id=b,
            points=1500,
            key="t1",
            note="gift",
            actor=CLI,
            now=frozen,
        )
    assert [e["points"] for e in first["in_entries"]] == [1000, 500]  # two expiry dates
    with db.unit_of_work() as session:
        program = get_program(session, "bakery")
        again = transfers.transfer(
            session,
            program,
            a,
            receiver_id=b,
            points=1500,
            key="t1",
            note="gift",
            actor=CLI,
            now=frozen,
        )
        assert again["replayed"] and again["out_entry_id"] == first["out_entry_id"]
        with pytest.raises(PatronError) as other:
            transfers.transfer(
                session,
                program,
                a,
                receiver_id=b,
                points=10,
                key="t1",
                note="gift",
                actor=CLI,
                now=frozen,
            )
        assert other.value.code == "idempotency_conflict"
    with db.unit_of_work() as session:
        assert _account(session, a).available == 2500
        assert _account(session, b).available == 2000
        out = session.scalars(select(Entry).where(Entry.kind == "transfer_out")).one()
        assert out.points == -1500 and out.details["transfer"]["to_member_id"] == b
        _clean(session)


def test_transfer_refusals(db, pair, frozen):
    a, b = pair
    with db.unit_of_work() as session:
        program = get_program(session, "bakery")

        def code(**kw) -> str:
            args = {"receiver_id": b, "points": 100, "key": "k", "note": None} | kw
            with pytest.raises(PatronError) as err:
                transfers.transfer(session, program, a, actor=CLI, now=frozen, **args)
            return err.value.code

        assert code(points=60_000) == "over_transfer_limit"
        assert code(points=5000) == "insufficient_points"
        assert code(receiver_id=a) == "same_member"
        assert code(points=0) == "invalid_points"
        other = make_program(session, now=frozen, code="cafe", stores=())
        stranger = make_member(session, now=frozen, program=other).id
        assert code(receiver_id=stranger) == "not_in_program"
        transfers.set_settings(
            session,
            program,
            enabled=False,
            max_per_transfer=None,
            max_per_day=None,
            actor=CLI,
            now=frozen,
        )
        assert code() == "transfers_disabled"


def test_daily_limit(db, pair, frozen):
    a, b = pair
    with db.unit_of_work() as session:
        program = get_program(session, "bakery")
        transfers.set_settings(
            session,
            program,
            enabled=True,
            max_per_transfer=None,
            max_per_day=1000,
            actor=CLI,
            now=frozen,
        )
        transfers.transfer(
            session,
            program,
            a,
            receiver_id=b,
            points=800,
            key="d1",
            note=None,
            actor=CLI,
            now=frozen,
        )
        with pytest.raises(PatronError) as err:
            transfers.transfer(
                session,
                program,
                a,
                receiver_id=b,
                points=300,
                key="d2",
                note=None,
                actor=CLI,
                now=frozen,
            )
        assert err.value.code == "over_daily_limit"
        transfers.transfer(
            session,
            program,
            a,
            receiver_id=b,
            points=300,
            key="d3",
            note=None,
            actor=CLI,
            now=frozen + timedelta(days=1),
        )


def test_concurrent_transfers_never_spend_twice(db, pair, frozen):
    """Twenty transfers of 400 from a 4,000-point sender at once: exactly ten go through."""
    a, b = pair

    def send(n: int):
        def call():
            with db.unit_of_work() as session:
                program = get_program(session, "bakery")
                return transfers.transfer(
                    session,
                    program,
                    a,
                    receiver_id=b,
                    points=400,
                    key=f"c{n}",
                    note=None,
                    actor=CLI,
                    now=frozen,
                )

        return call

    results = run_together([send(n) for n in range(20)], workers=10)
    ok = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, InsufficientPoints)]
    assert (len(ok), len(refused)) == (10, 10), results
    with db.unit_of_work() as session:
        assert _account(session, a).available == 0
        assert _account(session, b).available == 4500
        _clean(session)


def test_sale_racing_a_merge_loses_no_points(db, pair, frozen):
    """Sales to the source at the same time as the merge: each is recorded before it (and its
    points move) or refused after it (member_blocked); none lands on the merged source."""
    a, b = pair

    def sale(n: int):
        def call():
            with db.unit_of_work() as session:
                return _buy(session, a, f"race-{n}", 10_000, frozen)

        return call

    def merge():
        with db.unit_of_work() as session:
            return merges.merge(session, a, b, reason="dup", actor=CLI, now=frozen)

    results = run_together([sale(0), sale(1), sale(2), merge, *map(sale, range(3, 8))], workers=9)
    earned = sum(
        r["points_earned"] for r in results if isinstance(r, dict) and "points_earned" in r
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(r, PatronError) and r.code == "member_blocked" for r in errors), errors
    with db.unit_of_work() as session:
        assert _account(session, a).available == 0  # nothing reached the source after it
    with db.unit_of_work() as session:
        assert _account(session, a).available == 0
        assert _account(session, b).available == 4500 + earned
        _clean(session)


def test_merge_keeps_the_higher_tier_and_counts_the_qualifying_history(db, pair, frozen):
    """Silver at 5,000 points in the calendar year: A (4,000) and B (500) each below it; after
    the merge the survivor keeps A's silver and its window counts A's qualifying points."""
    from patron.demo import BAKERY_TIERS
    from patron.tiers import service as tiers
    from patron.tiers.metrics import metric_values
    from patron.tiers.periods import window_at

    a, b = pair
    with db.unit_of_work() as session:
        program = get_program(session, "bakery")
        tiers.set_tiers(session, program, BAKERY_TIERS, actor=CLI, now=frozen)
        source = _account(session, a)
        tiers.move(
            session,
            program,
            source,
            to_tier="silver",
            reason="appeal",
            at=frozen,
            actor=CLI,
            valid=None,
            grace=0,
        )
    with db.unit_of_work() as session:
        merges.merge(session, a, b, reason="dup", actor=CLI, now=frozen)
    with db.unit_of_work() as session:
        program = get_program(session, "bakery")
        survivor = _account(session, b)
        assert survivor.tier == "silver"
        policy = tiers.get_policy(session, program.id)
        assert policy is not None
        window = window_at(policy.window, frozen, program.timezone)
        values = metric_values(session, program_id=program.id, metric="points", window=window)
        assert values.get(survivor.id) == 4500 and values.get(_account(session, a).id, 0) == 0
        _clean(session)


def test_merge_opens_the_survivors_account_in_a_program_only_the_source_had(db, pair, frozen):
    a, b = pair
    with db.unit_of_work() as session:
        cafe = make_program(session, now=frozen, code="cafe", stores=())
        members_ = session.get(Member, a)
        assert members_ is not None
        from patron.members.service import enroll

        enroll(session, members_, cafe, actor=CLI, now=frozen)
        purchases.adjust(
            session,
            cafe,
            AdjustRequest(member=MemberRef(id=a), points=700, reason="welcome"),
            actor=CLI,
            now=frozen,
        )
    with db.unit_of_work() as session:
        result = merges.merge(session, a, b, reason="dup", actor=CLI, now=frozen)
        assert [p["program"] for p in result["programs"]] == ["bakery", "cafe"]
    with db.unit_of_work() as session:
        cafe_id = get_program(session, "cafe").id
        opened = session.scalars(
            select(Account).where(Account.member_id == b, Account.program_id == cafe_id)
        ).one()
        assert opened.available == 700
        _clean(session)
