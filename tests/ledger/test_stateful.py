"""Random purchases, refunds, adjustments and expiry against a pure-Python model of the ledger.

The model keeps its own lots (points, remainder, expiry) and follows the documented rules:
spend soonest-to-expire first; a refund reverses round_half_up(earned × refunded share) and
restores round_half_up(spent × refunded share), both on the cumulative share; restored points go
back to the lots the redemption took them from, latest expiry first; a clawback that finds no
points leaves debt (allow_debt), paid from the next credit; a lot past its date expires.
After every step the service's totals must equal the model's and `patron check` must pass.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from patron.check import run_check
from patron.ledger import views
from patron.ledger.expiry import expires_at
from patron.ledger.jobs import run_expiry
from patron.money import split_proportionally
from patron.sales.purchases import share_half_up
from tests.conftest import T0
from tests.factories import make_member, make_program
from tests.ledger._helpers import account, adjust, buy, program, refund, set_expiry

_programs = itertools.count(1)


@dataclass
class MLot:
    idx: int
    points: int
    remaining: int
    expires: datetime
    expired: int = 0  # points of this lot that expired unspent


@dataclass
class MPurchase:
    ext: str
    amount: int
    lines: list[tuple[str, int, int]]  # id, amount, quantity
    earned: int
    spent: int
    earn_lot: MLot | None
    taken: dict[int, int]  # lot idx -> points the redemption took
    line_points: list[int] = field(default_factory=list)
    line_spent: list[int] = field(default_factory=list)
    given_back: dict[int, int] = field(default_factory=dict)
    refunded: int = 0
    reversed: int = 0
    restored: int = 0
    mode: str | None = None
    expired_counted: int = 0  # expired points of its lot that refunds did not take back again
    refunded_qty: list[int] = field(default_factory=list)
    refunds: int = 0

    def done(self) -> bool:
        if self.mode == "lines":
            return all(r == q for r, (_, _, q) in zip(self.refunded_qty, self.lines, strict=True))
        return self.refunded == self.amount


class Model:
    def __init__(self, now: datetime) -> None:
        self.now = now
        self.lots: list[MLot] = []
        self.debt = self.earned = self.redeemed = self.expired = self.adjusted = 0
        self.months = 12  # the program's expiry policy, changed by a rule

    # -- lots
    def settle(self) -> None:
        for lot in self.lots:
            if lot.remaining and lot.expires <= self.now:
                self.expired += lot.remaining
                lot.expired += lot.remaining
                lot.remaining = 0

    def spendable(self) -> list[MLot]:
        live = [lot for lot in self.lots if lot.remaining > 0 and lot.expires > self.now]
        return sorted(live, key=lambda lot: (lot.expires, lot.idx))

    @property
    def available(self) -> int:
        return sum(lot.remaining for lot in self.spendable())

    @property
    def balance(self) -> int:
        return self.available - self.debt

    def _pay_debt(self, lots: list[MLot]) -> None:
        for lot in lots:
            part = min(self.debt, lot.remaining)
            lot.remaining -= part
            self.debt -= part

    def credit(self, points: int) -> MLot:
        lot = MLot(
            len(self.lots),
            points,
            points,
            expires_at(self.now, kind="months", months=self.months, timezone="Asia/Seoul"),
        )
        self.lots.append(lot)
        self._pay_debt([lot])
        return lot

    def take(self, points: int, lots: list[MLot]) -> tuple[dict[int, int], int]:
        taken: dict[int, int] = {}
        for lot in lots:
            part = min(points, lot.remaining)
            if part:
                lot.remaining -= part
                taken[lot.idx] = part
                points -= part
        return taken, points  # what is still missing

    # -- refunds
    def restore(self, p: MPurchase, points: int) -> None:
        open_per_lot = {i: p.taken[i] - p.given_back.get(i, 0) for i in p.taken}
        # Latest expiry first, as the service gives back the points that stay valid longest.
        order = sorted(
            (self.lots[i] for i in open_per_lot),
            key=lambda lot: (-lot.expires.timestamp(), -lot.idx),
        )
        touched = []
        for lot in order:
            part = min(points, open_per_lot[lot.idx])
            if part <= 0:
                continue
            lot.remaining += part
            p.given_back[lot.idx] = p.given_back.get(lot.idx, 0) + part
            touched.append(lot)
            points -= part
        assert points == 0
        # Restored points pay any debt first, from the lots they went back to.
        self._pay_debt(touched)

    def reverse(self, p: MPurchase, points: int) -> int:
        """Take back `points`; returns how many were not taken because they had expired."""
        lot = p.earn_lot
        assert lot is not None
        covered = max(0, min(points - lot.remaining, lot.expired - p.expired_counted))
        p.expired_counted += covered
        points -= covered
        if points == 0:
            return covered
        lots = self.spendable()
        if p.earn_lot in lots:
            lots = [p.earn_lot, *[lot for lot in lots if lot is not p.earn_lot]]
        _, missing = self.take(points, lots)
        self.debt += missing
        self.earned -= points
        return covered


class LedgerMachine(RuleBasedStateMachine):
    db = None  # set per test

    def __init__(self) -> None:
        super().__init__()
        self.model = Model(T0)
        with self.db.unit_of_work() as session:
            prog = make_program(
                session,
                now=T0,
                code=f"sm{next(_programs)}",
                redemption={"min_points": 10, "step": 10, "max_share": "1"},
            )
            self.member_id = make_member(session, now=T0, program=prog).id
        self.code = prog.code
        self.purchases: list[MPurchase] = []
        self.orders = itertools.count(1)

    # -- rules
    @rule(
        amount=st.integers(1, 150_000),
        spend_share=st.sampled_from([0, 0.3, 0.7, 1]),
        lines=st.booleans(),
        cut=st.floats(0, 1),
        qty=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    )
    def purchase(self, amount, spend_share, lines, cut, qty):
        m = self.model
        m.settle()
        # Redemption policy of this program: from 10 points, in steps of 10, up to the whole bill.
        cap = min(amount, m.balance) // 10 * 10
        spend = int(cap * spend_share) // 10 * 10 if cap >= 10 else 0
        basket: list[tuple[str, int, int]] = []
        if lines:
            first = int(amount * cut)
            basket = [("a", first, qty[0]), ("b", amount - first, qty[1])]
        ext = f"o{next(self.orders)}"
        with self.db.unit_of_work() as session:
            out = buy(
                session,
                program(session, self.code),
                self.member_id,
                amount,
                ext=ext,
                spend=spend,
                lines=basket,
                now=m.now,
            )
        earned = (amount - spend) // 1000 * 10
        assert (out["points_earned"], out["points_spent"]) == (earned, spend)
        taken, missing = m.take(spend, m.spendable())
        assert missing == 0
        m.redeemed += spend
        earn_lot = None
        if earned:
            earn_lot = m.credit(earned)
            m.earned += earned
        weights = [Decimal(a) for _, a, _ in basket]
        self.purchases.append(
            MPurchase(
                ext=ext,
                amount=amount,
                lines=basket,
                earned=earned,
                spent=spend,
                earn_lot=earn_lot,
                taken=taken,
                line_points=split_proportionally(earned, weights),
                line_spent=split_proportionally(spend, weights),
                refunded_qty=[0] * len(basket),
            )
        )

    def _open(self, mode: str) -> list[MPurchase]:
        if mode == "amount":
            return [p for p in self.purchases if p.mode in (None, "amount") and not p.done()]
        if mode == "lines":
            return [
                p for p in self.purchases if p.lines and p.mode in (None, "lines") and not p.done()
            ]
        return [p for p in self.purchases if not p.done()]

    @precondition(lambda self: self._open("full"))
    @rule(data=st.data())
    def refund_full(self, data):
        self._refund(data, "full")

    @precondition(lambda self: self._open("amount"))
    @rule(data=st.data())
    def refund_amount(self, data):
        self._refund(data, "amount")

    @precondition(lambda self: self._open("lines"))
    @rule(data=st.data())
    def refund_lines(self, data):
        self._refund(data, "lines")

    def _refund(self, data, mode: str) -> None:
        m = self.model
        p = data.draw(st.sampled_from(self._open(mode)))
        kwargs: dict = {}
        if mode == "full":
            kwargs["full"] = True
            mode = p.mode or ("lines" if p.lines else "amount")
        if mode == "amount":
            if "full" in kwargs:
                piece = p.amount - p.refunded
            else:
                piece = data.draw(st.integers(1, p.amount - p.refunded))
                kwargs["amount"] = piece
            p.refunded += piece
            reversed_target = share_half_up(p.earned, p.refunded, p.amount)
            restored_target = share_half_up(p.spent, p.refunded, p.amount)
        else:
            asked = [q - r for (_, _, q), r in zip(p.lines, p.refunded_qty, strict=True)]
            if "full" not in kwargs:
                i = data.draw(st.sampled_from([i for i, left in enumerate(asked) if left]))
                asked = [0] * len(asked)
                asked[i] = data.draw(st.integers(1, p.lines[i][2] - p.refunded_qty[i]))
                kwargs["lines"] = [(p.lines[i][0], asked[i])]
            reversed_target = restored_target = 0
            for i, (_, amount, qty) in enumerate(p.lines):
                old, new = p.refunded_qty[i], p.refunded_qty[i] + asked[i]
                p.refunded += share_half_up(amount, new, qty) - share_half_up(amount, old, qty)
                reversed_target += share_half_up(p.line_points[i], new, qty)
                restored_target += share_half_up(p.line_spent[i], new, qty)
                p.refunded_qty[i] = new
        p.mode = mode
        p.refunds += 1
        with self.db.unit_of_work() as session:
            out = refund(
                session,
                program(session, self.code),
                p.ext,
                refund_id=f"{p.ext}-r{p.refunds}",
                now=m.now,
                **kwargs,
            )
        m.settle()
        to_restore, to_reverse = restored_target - p.restored, reversed_target - p.reversed
        if to_restore > 0:
            if any(m.lots[i].expires <= m.now for i in p.taken):
                event("restore to an expired lot")
            m.restore(p, to_restore)
            m.redeemed -= to_restore
        covered = 0
        if to_reverse > 0:
            debt = m.debt
            covered = m.reverse(p, to_reverse)
            if covered:
                event("refund after the purchase's points expired")
            if m.debt > debt:
                event("refund left debt")
        m.settle()
        p.restored, p.reversed = restored_target, reversed_target
        assert (out["points_restored"], out["points_reversed"], out["points_already_expired"]) == (
            max(to_restore, 0),
            max(to_reverse, 0) - covered,
            covered,
        )

    @rule(points=st.integers(1, 3000))
    def adjust_up(self, points):
        m = self.model
        with self.db.unit_of_work() as session:
            adjust(session, program(session, self.code), self.member_id, points, now=m.now)
        m.settle()
        m.credit(points)
        m.adjusted += points

    @rule(points=st.integers(1, 3000))
    def adjust_down(self, points):
        m = self.model
        m.settle()
        with self.db.unit_of_work() as session:
            adjust(session, program(session, self.code), self.member_id, -points, now=m.now)
        # The program allows debt: what the lots do not hold is owed.
        _, missing = m.take(points, m.spendable())
        if missing:
            event("adjustment left debt")
        m.debt += missing
        m.adjusted -= points

    @rule(months=st.sampled_from([1, 3, 12, 24]))
    def change_expiry_policy(self, months):
        # New lots may then expire before older ones: spending must follow expiry, not age.
        with self.db.unit_of_work() as session:
            set_expiry(session, program(session, self.code), months=months, now=self.model.now)
        self.model.months = months

    @rule(days=st.integers(1, 400), run_job=st.booleans())
    def time_passes(self, days, run_job):
        m = self.model
        m.now += timedelta(days=days)
        m.settle()
        if run_job:
            report = run_expiry(self.db, m.now, batch_size=3)
            again = run_expiry(self.db, m.now)
            assert (again.lots, again.points) == (0, 0)
            assert report.points >= 0

    @invariant()
    def totals_match_the_model_and_the_ledger_checks(self):
        m = self.model
        with self.db.unit_of_work(readonly=True) as session:
            t = views.totals(
                session, account(session, program(session, self.code), self.member_id), m.now
            )
            report = run_check(session)
        assert report.ok, report.violations
        expected = {
            "balance": m.balance,
            "available": m.available,
            "pending": 0,
            "debt": m.debt,
            "earned": m.earned,
            "redeemed": m.redeemed,
            "expired": m.expired,
            "adjusted": m.adjusted,
        }
        assert t.model_dump(exclude={"expiring_30_days"}) == expected


def test_ledger_matches_the_model(db):
    machine = type("Ledger", (LedgerMachine,), {"db": db})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=15,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
