"""Redeeming and using rewards from many connections at once: no oversell, no double use.

LESSONS.md, fuint #71 (a read-check-write race spent a balance twenty times) applies to stock,
per-member limits, coupons and gift-card balances alike. Every test starts its callers together
behind a barrier (`run_together`), each caller in its own unit of work on its own connection, on
SQLite (writers queue on the engine's writer lock, with the project's busy timeout) and on
PostgreSQL (row locks and guarded UPDATEs). Every refusal must be the expected PatronError: an
OperationalError such as SQLite's "database is locked" fails the test, it is never retried.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from patron.audit.service import CLI
from patron.check import run_check
from patron.coupons import lookup
from patron.coupons import use as coupon_use
from patron.coupons.models import Coupon, CouponEvent, Redemption, Reward, StockMove
from patron.coupons.schemas import UseRequest
from patron.db.engine import Database
from patron.errors import PatronError
from patron.ledger.models import Account, Entry, Lot
from patron.members.models import Member
from patron.programs.service import get_program
from patron.rewards import catalog, redeem
from patron.rewards.schemas import RewardCreate
from tests import test_concurrency as ledger_races
from tests.conftest import auth
from tests.factories import make_member
from tests.ledger._helpers import adjust
from tests.test_concurrency import run_together

# The real app under uvicorn on a loopback port, as the ledger's concurrency tests use it.
live_server = ledger_races.live_server

OK = "ok"


def outcomes(results: list[Any]) -> Counter[str]:
    """How each caller ended: "ok", a PatronError's code, or the repr of anything else (which
    no assertion below accepts, so a "database is locked" shows in the failure message)."""
    return Counter(
        OK
        if not isinstance(r, BaseException)
        else r.code
        if isinstance(r, PatronError)
        else repr(r)
        for r in results
    )


def add_reward(db: Database, now: datetime, code: str, **fields: Any) -> None:
    body = {
        "code": code,
        "kind": "goods",
        "names": {"en": code},
        "points_cost": 1000,
        "valid_days": 30,
        **fields,
    }
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        catalog.create_reward(s, program, RewardCreate.model_validate(body), actor=CLI, now=now)


def funded_members(db: Database, now: datetime, count: int, points: int) -> list[int]:
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        ids = []
        for _ in range(count):
            member = make_member(s, now=now, program=program)
            adjust(s, program, member.id, points, now=now)
            ids.append(member.id)
        return ids


def redeem_call(db: Database, reward: str, member_id: int, now: datetime) -> Callable[[], int]:
    """One redemption in its own unit of work; answers the balance left."""

    def call() -> int:
        with db.unit_of_work() as s:
            program = get_program(s, "bakery")
            member = s.get(Member, member_id)
            assert member is not None
            _redemption, _coupons, account = redeem.redeem(
                s, program, reward, member=member, quantity=1, store="mapo", channel="pos",
                actor=CLI, now=now,
            )  # fmt: skip
            return redeem.balance_after(s, account, now)

    return call


def redeem_one(db: Database, reward: str, member_id: int, now: datetime) -> str:
    """Redeem one unit, serially; the coupon's code."""
    redeem_call(db, reward, member_id, now)()
    with db.unit_of_work(readonly=True) as s:
        return s.scalars(
            select(Coupon.code)
            .join(Reward, Reward.id == Coupon.reward_id)
            .where(Reward.code == reward, Coupon.member_id == member_id)
            .order_by(Coupon.id.desc())
            .limit(1)
        ).one()


def use_call(
    db: Database, code: str, order: str, now: datetime, *, amount: str = "4500", **extra: Any
) -> Callable[[], tuple[str, bool]]:
    def call() -> tuple[str, bool]:
        with db.unit_of_work() as s:
            program = get_program(s, "bakery")
            req = UseRequest.model_validate(
                {"amount": amount, "store": "mapo", "order": order, **extra}
            )
            used = coupon_use.use(s, program, code, req, actor=CLI, now=now)
            return order, used.replayed

    return call


def cancel_call(db: Database, code: str, now: datetime) -> Callable[[], int]:
    def call() -> int:
        with db.unit_of_work() as s:
            program = get_program(s, "bakery")
            row = lookup.find_coupon(s, program, code)
            back = redeem.cancel(s, program, row, reason="race", actor=CLI, now=now)
            return back.points_returned

    return call


def available(db: Database, member_id: int) -> tuple[int, int]:
    """(available, debt) of the member's account."""
    with db.unit_of_work(readonly=True) as s:
        account = s.scalars(select(Account).where(Account.member_id == member_id)).one()
        return account.available, account.debt


def assert_check_clean(db: Database) -> None:
    with db.unit_of_work(readonly=True) as s:
        report = run_check(s)
    assert report.violations == [] and report.ok


def count(s: Any, model: Any, *where: Any) -> int:
    return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@pytest.fixture
def second_worker(db: Database) -> Iterator[Database]:
    """Another Database on the same URL, as a second server worker or process would hold (on
    SQLite: its own writer lock, so the two queue on the file lock, not a thread lock)."""
    other = Database(db.url, pool_size=15)
    yield other
    other.dispose()


def test_200_members_race_for_50_units_and_exactly_50_get_one(db, second_worker, bakery, frozen):
    add_reward(db, frozen, "tumbler", stock=50)
    ids = funded_members(db, frozen, 200, 2000)
    # Half the callers through each "worker", interleaved.
    calls = [
        redeem_call(db if n % 2 else second_worker, "tumbler", member, frozen)
        for n, member in enumerate(ids)
    ]

    results = run_together(calls)

    assert outcomes(results) == Counter({OK: 50, "out_of_stock": 150})
    winners = {m for m, r in zip(ids, results, strict=True) if not isinstance(r, BaseException)}
    assert all(r == 1000 for r in results if not isinstance(r, BaseException))
    with db.unit_of_work(readonly=True) as s:
        reward = s.scalars(select(Reward).where(Reward.code == "tumbler")).one()
        assert reward.stock_left == 0
        assert count(s, Coupon, Coupon.reward_id == reward.id) == 50
        assert count(s, Redemption, Redemption.reward_id == reward.id) == 50
        assert count(s, Entry, Entry.kind == "redeem") == 50
        assert set(s.scalars(select(Coupon.member_id))) == winners
        moves = list(s.scalars(select(StockMove.delta).where(StockMove.reward_id == reward.id)))
        assert moves.count(50) == 1 and moves.count(-1) == 50 and len(moves) == 51
        assert sum(moves) == 0
        balances = dict(
            s.execute(
                select(Account.member_id, Account.available).where(Account.member_id.in_(ids))
            ).all()
        )
    assert {m: b for m, b in balances.items() if m in winners} == dict.fromkeys(winners, 1000)
    assert set(balances.values()) == {1000, 2000} and list(balances.values()).count(2000) == 150
    assert_check_clean(db)


def test_one_member_racing_a_limit_of_one_gets_one(db, bakery, frozen):
    add_reward(db, frozen, "once", stock=100, limit_ever=1)
    member = bakery["rich"]  # 10,000 points: ten units' worth

    results = run_together([redeem_call(db, "once", member, frozen) for _ in range(20)])

    assert outcomes(results) == Counter({OK: 1, "limit_reached": 19})
    assert available(db, member) == (9000, 0)
    with db.unit_of_work(readonly=True) as s:
        assert count(s, Redemption) == 1 and count(s, Coupon) == 1
        assert s.scalar(select(Reward.stock_left).where(Reward.code == "once")) == 99
    assert_check_clean(db)


def test_one_member_whose_points_cover_three_gets_three(db, bakery, frozen):
    add_reward(db, frozen, "cake", stock=100)
    [member] = funded_members(db, frozen, 1, 3500)

    results = run_together([redeem_call(db, "cake", member, frozen) for _ in range(20)])

    assert outcomes(results) == Counter({OK: 3, "insufficient_points": 17})
    # Each winner saw the balance its own debit left, one after another; never below zero.
    assert sorted(r for r in results if not isinstance(r, BaseException)) == [500, 1500, 2500]
    assert available(db, member) == (500, 0)
    with db.unit_of_work(readonly=True) as s:
        assert count(s, Coupon) == 3 and count(s, Entry, Entry.kind == "redeem") == 3
        assert s.scalar(select(Reward.stock_left).where(Reward.code == "cake")) == 97
        assert count(s, Lot, Lot.remaining < 0) == 0
    assert_check_clean(db)


def test_one_coupon_at_ten_tills_on_ten_orders_is_used_once(db, bakery, frozen):
    add_reward(db, frozen, "americano", stock=10)
    code = redeem_one(db, "americano", bakery["rich"], frozen)

    results = run_together([use_call(db, code, f"till-{n}", frozen) for n in range(10)])

    assert outcomes(results) == Counter({OK: 1, "coupon_used": 9})
    [(order, replayed)] = [r for r in results if not isinstance(r, BaseException)]
    assert replayed is False
    with db.unit_of_work(readonly=True) as s:
        coupon = s.scalars(select(Coupon)).one()
        assert (coupon.status, coupon.used_order) == ("used", order)
        uses = list(s.scalars(select(CouponEvent.order_ref).where(CouponEvent.kind == "used")))
        assert uses == [order]
    assert_check_clean(db)


def test_one_coupon_on_one_order_from_ten_tills_is_one_use_and_nine_replays(db, bakery, frozen):
    add_reward(db, frozen, "americano", stock=10)
    code = redeem_one(db, "americano", bakery["rich"], frozen)

    results = run_together([use_call(db, code, "order-7", frozen) for _ in range(10)])

    assert outcomes(results) == Counter({OK: 10})
    assert sorted(replayed for _order, replayed in results) == [False] + [True] * 9
    with db.unit_of_work(readonly=True) as s:
        assert count(s, CouponEvent, CouponEvent.kind == "used") == 1
    assert_check_clean(db)


def test_a_gift_card_of_10000_spent_by_eight_orders_of_3000_pays_three(db, bakery, frozen):
    add_reward(db, frozen, "gift", kind="gift_card", gift_value="10000", points_cost=1000)
    code = redeem_one(db, "gift", bakery["rich"], frozen)

    results = run_together(
        [use_call(db, code, f"o-{n}", frozen, amount="3000", gift_amount="3000") for n in range(8)]
    )

    got = outcomes(results)
    assert got[OK] == 3 and set(got) <= {OK, "coupon_used", "coupon_not_applicable"}
    with db.unit_of_work(readonly=True) as s:
        coupon = s.scalars(select(Coupon)).one()
        assert (coupon.balance_minor, coupon.status) == (1000, "issued")
        paid = list(s.scalars(select(CouponEvent.amount_minor).where(CouponEvent.kind == "used")))
        assert paid == [3000, 3000, 3000]
    assert_check_clean(db)
    # The card still holds 1,000: the refused tills hear so (coupon_not_applicable).
    assert got == Counter({OK: 3, "coupon_not_applicable": 5})


def test_a_gift_card_on_one_order_from_four_tills_pays_once(db, bakery, frozen):
    add_reward(db, frozen, "gift", kind="gift_card", gift_value="10000", points_cost=1000)
    code = redeem_one(db, "gift", bakery["rich"], frozen)

    results = run_together(
        [use_call(db, code, "o-1", frozen, amount="3000", gift_amount="3000") for _ in range(4)]
    )

    got = outcomes(results)
    assert got[OK] >= 1 and set(got) <= {OK, "coupon_used"}
    assert [r[1] for r in results if not isinstance(r, BaseException)].count(False) == 1
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(Coupon.balance_minor)) == 7000
        assert count(s, CouponEvent, CouponEvent.kind == "used") == 1
    assert_check_clean(db)
    # "The same (coupon, order) again is answered as the first time": the others replay.
    assert got == Counter({OK: 4})


def test_one_coupon_cancelled_from_five_screens_gives_the_points_back_once(db, bakery, frozen):
    add_reward(db, frozen, "americano", stock=10, points_cost=1500)
    member = bakery["rich"]
    code = redeem_one(db, "americano", member, frozen)

    results = run_together([cancel_call(db, code, frozen) for _ in range(5)])

    assert outcomes(results) == Counter({OK: 1, "coupon_cancelled": 4})
    assert available(db, member) == (10_000, 0)
    with db.unit_of_work(readonly=True) as s:
        assert count(s, Entry, Entry.kind == "reverse") == 1
        assert s.scalar(select(Reward.stock_left)) == 10
    assert_check_clean(db)


def test_cancel_racing_use_on_the_same_coupon_one_wins(db, bakery, frozen):
    add_reward(db, frozen, "americano", stock=20, points_cost=1500)
    member = bakery["rich"]
    codes = [redeem_one(db, "americano", member, frozen) for _ in range(6)]
    assert available(db, member) == (10_000 - 6 * 1500, 0)
    # Per coupon a cancel and a use, in alternating order of submission.
    calls: list[Callable[[], Any]] = []
    for n, code in enumerate(codes):
        pair = [cancel_call(db, code, frozen), use_call(db, code, f"till-{n}", frozen)]
        calls += pair if n % 2 else pair[::-1]

    results = run_together(calls)

    cancelled = 0
    for n, code in enumerate(codes):
        first, second = results[2 * n], results[2 * n + 1]
        cancel, use = (first, second) if n % 2 else (second, first)
        got = outcomes([cancel, use])
        if isinstance(cancel, BaseException):
            assert got == Counter({OK: 1, "coupon_used": 1}), (code, cancel, use)
        else:
            assert got == Counter({OK: 1, "coupon_cancelled": 1}), (code, cancel, use)
            assert cancel == 1500
            cancelled += 1
    with db.unit_of_work(readonly=True) as s:
        statuses = Counter(s.scalars(select(Coupon.status)))
        assert statuses == Counter({"cancelled": cancelled, "used": 6 - cancelled})
        returned = dict(
            s.execute(
                select(Coupon.status, func.sum(Coupon.points_returned)).group_by(Coupon.status)
            ).all()
        )
        assert returned == {st: 1500 * cancelled if st == "cancelled" else 0 for st in statuses}
        assert count(s, Entry, Entry.kind == "reverse") == cancelled
        assert s.scalar(select(Reward.stock_left)) == 20 - 6 + cancelled
    # Points came back only for the coupons whose cancel won.
    assert available(db, member) == (10_000 - 6 * 1500 + 1500 * cancelled, 0)
    assert_check_clean(db)


def test_one_idempotency_key_sent_to_redeem_concurrently_redeems_once(
    db, bakery, keys, live_server, frozen
):
    add_reward(db, frozen, "americano", stock=10, points_cost=1500)
    member = bakery["rich"]
    headers = {**auth(keys["pos"]), "Idempotency-Key": "till-3-sale-991"}
    with httpx.Client(
        base_url=live_server, timeout=30, limits=httpx.Limits(max_connections=10)
    ) as http:

        def call() -> httpx.Response:
            return http.post(
                "/api/v1/programs/bakery/rewards/americano/redeem",
                json={"member": {"id": member}, "store": "mapo"},
                headers=headers,
            )

        answers = run_together([call] * 10, workers=10)

    assert [a.status_code for a in answers] == [201] * 10, answers[0].text
    assert all(a.json() == answers[0].json() for a in answers)
    assert [a.headers.get("Idempotent-Replayed") for a in answers].count(None) == 1
    assert available(db, member) == (10_000 - 1500, 0)
    with db.unit_of_work(readonly=True) as s:
        assert count(s, Redemption) == 1 and count(s, Coupon) == 1
        assert s.scalar(select(Reward.stock_left)) == 9
    assert_check_clean(db)
