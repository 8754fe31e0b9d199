"""Random sequences of sales, refunds, adjustments and batches against a reference model.

The public sale operations (`purchases.purchase`, `purchases.refund`, `purchases.adjust` and the
batch `batch.ingest`) run on several members of one program while the clock moves on; a small
Python model of the ledger follows the documented rules. After every step each answer, each
member's totals (`views.totals`) and live lots (`views.lots`: which lots hold the points shows the
spending order) must equal the model's, and `patron check` must pass at the end of every run:

- a sale earns 10 points per full 1,000 KRW of the amount not paid with points, times the
  member's tier multiplier (tiers on lifetime qualifying points, upgraded at once after a sale);
- new points are pending for `pending_days`, and valid through the local day `months` later
  (plus the tier's extra months); a credit first pays any debt;
- points are spent soonest-to-expire first (pending points cannot be spent); a sale asking for
  more than the balance is refused with `insufficient_points`; a removal of more points than
  the account holds leaves debt (allow_debt) or is refused (write_off);
- a refund reverses round_half_up(earned × refunded so far ÷ amount) and restores
  round_half_up(spent × refunded so far ÷ amount), less what earlier refunds already moved;
  restored points go back to the lots the sale took them from, latest expiry first; a clawback
  takes the sale's own lot first, then spendable, then pending points, and what it cannot find
  becomes debt (allow_debt) or is written off (write_off); the part of the sale's points that
  expired unspent is not taken again;
- the same order id with the same body answers the first answer, with another body
  `duplicate_order`; the same holds for refund ids (`duplicate_refund`);
- a member's first sale opens their account.

Not modelled (so not generated): rule sets beyond the base rate (caps, promotions, bonuses),
coupons, refunds by line, stores, late sales (occurred_at in the past), blocked members, member
references other than the id, tier windows other than lifetime, and tier downgrades. The model
is also checked without tiers, with and without pending days, and for both debt policies.
"""

from __future__ import annotations

import calendar
import itertools
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from patron import clock
from patron.audit.service import CLI
from patron.check import run_check
from patron.errors import PatronError
from patron.ledger import views
from patron.ledger.jobs import run_expiry
from patron.members.schemas import MemberRef
from patron.programs import service as programs
from patron.sales import batch, purchases
from patron.sales.schemas import AdjustRequest, PurchaseRequest, RefundRequest
from patron.tiers import service as tiers
from patron.tiers.schemas import TierSetup
from tests.conftest import T0
from tests.factories import make_member, make_program
from tests.ledger._helpers import set_expiry

TIMEZONE = "Asia/Seoul"
EXPIRING_WINDOW = timedelta(days=30)
# (code, lifetime qualifying points needed, earn multiplier, extra months of validity)
TIERS = [("basic", 0, 1, 0), ("silver", 400, Decimal("1.5"), 1), ("gold", 1200, 2, 0)]

_programs = itertools.count(1)


# --- the reference model -------------------------------------------------------------------
# Written apart from the product's own helpers (expiry dates, refund rounding), so a mistake in
# those shows as a difference instead of being copied into the model.


def valid_through(earned_at: datetime, months: int) -> datetime:
    """The instant points earned at `earned_at` stop being valid: the local midnight after the
    same day `months` later (the month's last day when it is shorter)."""
    day = earned_at.astimezone(ZoneInfo(TIMEZONE)).date()
    year, month = divmod(day.month - 1 + months, 12)
    year, month = day.year + year, month + 1
    last = date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
    midnight = datetime.combine(last + timedelta(days=1), time(0), tzinfo=ZoneInfo(TIMEZONE))
    return midnight.astimezone(UTC)


def half_up(points: int, part: int, whole: int) -> int:
    """round_half_up(points × part ÷ whole)."""
    return math.floor(Fraction(points * part, whole) + Fraction(1, 2))


@dataclass
class MLot:
    idx: int  # creation order (lot ids grow the same way)
    points: int
    remaining: int
    expires: datetime
    pending_until: datetime | None
    expired: int = 0  # points of this lot that expired unspent

    def pending(self, now: datetime) -> bool:
        return self.pending_until is not None and self.pending_until > now


@dataclass
class MAccount:
    lots: list[MLot] = field(default_factory=list)
    debt: int = 0
    earned: int = 0
    redeemed: int = 0
    expired: int = 0
    adjusted: int = 0
    tier: int = 0  # index into TIERS
    qualifying: int = 0  # lifetime qualifying points (the tier metric)

    def settle(self, now: datetime) -> None:
        for lot in self.lots:
            if lot.remaining and lot.expires <= now:
                self.expired += lot.remaining
                lot.expired += lot.remaining
                lot.remaining = 0

    def spendable(self, now: datetime) -> list[MLot]:
        live = [
            lot
            for lot in self.lots
            if lot.remaining > 0 and lot.expires > now and not lot.pending(now)
        ]
        return sorted(live, key=lambda lot: (lot.expires, lot.idx))

    def pending_lots(self, now: datetime) -> list[MLot]:
        held = [lot for lot in self.lots if lot.remaining > 0 and lot.pending(now)]
        return sorted(held, key=lambda lot: (lot.expires, lot.idx))

    def pay_debt(self, lots: list[MLot]) -> None:
        for lot in lots:
            part = min(self.debt, lot.remaining)
            lot.remaining -= part
            self.debt -= part

    def totals(self, now: datetime) -> dict[str, int]:
        available = sum(lot.remaining for lot in self.spendable(now))
        soon = [lot for lot in self.lots if now < lot.expires <= now + EXPIRING_WINDOW]
        return {
            "balance": available - self.debt,
            "available": available,
            "pending": sum(lot.remaining for lot in self.pending_lots(now)),
            "debt": self.debt,
            "earned": self.earned,
            "redeemed": self.redeemed,
            "expired": self.expired,
            "adjusted": self.adjusted,
            "expiring_30_days": sum(lot.remaining for lot in soon),
        }


def take(points: int, lots: list[MLot]) -> tuple[dict[int, int], int]:
    """Take `points` from `lots` in that order: ({lot idx: points}, points still missing)."""
    taken: dict[int, int] = {}
    for lot in lots:
        part = min(points, lot.remaining)
        if part:
            lot.remaining -= part
            taken[lot.idx] = part
            points -= part
    return taken, points


@dataclass
class MSale:
    ext: str
    member: int
    body: PurchaseRequest
    earned: int
    spent: int
    earn_lot: MLot | None
    taken: dict[int, int]  # lot idx -> points the redemption took
    answer: dict[str, Any] | None  # None when the batch recorded it (it returns no answer)
    given_back: dict[int, int] = field(default_factory=dict)
    refunded: int = 0
    reversed: int = 0
    restored: int = 0
    expired_counted: int = 0  # expired points of its lot that refunds did not take again
    refunds: list[tuple[RefundRequest, dict[str, Any]]] = field(default_factory=list)

    @property
    def amount(self) -> int:
        return int(self.body.amount)


class Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Model:
    def __init__(self, *, months: int, pending_days: int, shortfall: str, tiers: bool) -> None:
        self.tiers = TIERS if tiers else TIERS[:1]
        self.now = T0
        self.months = months
        self.pending_days = pending_days
        self.shortfall = shortfall
        self.accounts: dict[int, MAccount] = {}
        self.lot_ids = itertools.count()

    def credit(self, acct: MAccount, points: int, *, pending: bool) -> MLot:
        extra = self.tiers[acct.tier][3]
        expiry = valid_through(self.now, self.months + extra)
        until = self.now + timedelta(days=self.pending_days) if pending else None
        lot = MLot(next(self.lot_ids), points, points, expiry, until if self.pending_days else None)
        acct.lots.append(lot)
        acct.pay_debt([lot])
        return lot

    def sale(self, member: int, ext: str, body: PurchaseRequest) -> MSale:
        """The sale as the model sees it (raises Refused as the service would)."""
        acct = self.accounts.get(member) or MAccount()
        acct.settle(self.now)
        spend = body.points_to_spend
        balance = sum(lot.remaining for lot in acct.spendable(self.now)) - acct.debt
        if spend and spend > balance:  # a sale spending nothing is never refused, even in debt
            raise Refused("insufficient_points")
        if member not in self.accounts:
            event("a first sale opens the account")
        self.accounts[member] = acct  # a first sale opens the account
        amount = int(body.amount)
        earned = int((amount - spend) // 1000 * 10 * self.tiers[acct.tier][2])
        taken, missing = take(spend, acct.spendable(self.now))
        assert missing == 0
        if spend:
            event("a sale spends points")
        acct.redeemed += spend
        lot = None
        if earned:
            lot = self.credit(acct, earned, pending=True)
            acct.earned += earned
            acct.qualifying += earned
            reached = max(i for i, tier in enumerate(self.tiers) if acct.qualifying >= tier[1])
            if reached > acct.tier:
                event("tier upgrade")
            acct.tier = max(acct.tier, reached)  # immediate upgrade, never down
        return MSale(ext, member, body, earned, spend, lot, taken, None)

    def adjust(self, member: int, points: int) -> None:
        acct = self.accounts.get(member)
        if acct is None:
            raise Refused("account_not_found")
        acct.settle(self.now)
        if points > 0:
            self.credit(acct, points, pending=False)
            acct.adjusted += points
            return
        # A removal takes spendable points, then pending ones; what they do not hold becomes
        # debt where the program allows it, and is refused where it writes off.
        lots = acct.spendable(self.now) + acct.pending_lots(self.now)
        if -points > sum(lot.remaining for lot in lots) and self.shortfall != "allow_debt":
            raise Refused("insufficient_points")
        _taken, missing = take(-points, lots)
        acct.debt += missing
        acct.adjusted += points

    def refund(self, sale: MSale, piece: int) -> dict[str, int]:
        """Refund `piece` more of `sale`; the figures the answer must show."""
        acct = self.accounts[sale.member]
        acct.settle(self.now)
        event("refund of a sale that spent points" if sale.spent else "refund")
        sale.refunded += piece
        reversed_target = half_up(sale.earned, sale.refunded, sale.amount)
        restored_target = half_up(sale.spent, sale.refunded, sale.amount)
        to_reverse = reversed_target - sale.reversed
        to_restore = restored_target - sale.restored
        sale.reversed, sale.restored = reversed_target, restored_target
        if to_restore:
            open_per_lot = {i: sale.taken[i] - sale.given_back.get(i, 0) for i in sale.taken}
            by_idx = {lot.idx: lot for lot in acct.lots}
            # Latest expiry first: the member gets back the points that stay valid longest.
            order = sorted(
                (by_idx[i] for i in open_per_lot), key=lambda lot: (lot.expires, lot.idx)
            )[::-1]
            need, touched = to_restore, []
            for lot in order:
                part = min(need, open_per_lot[lot.idx])
                if part > 0:
                    lot.remaining += part
                    sale.given_back[lot.idx] = sale.given_back.get(lot.idx, 0) + part
                    touched.append(lot)
                    need -= part
            assert need == 0
            acct.redeemed -= to_restore
            acct.pay_debt(touched)
        covered = debt_added = written_off = 0
        if to_reverse:
            lot = sale.earn_lot
            assert lot is not None
            # What expired of the sale's own points is already gone: not taken a second time.
            covered = max(0, min(to_reverse - lot.remaining, lot.expired - sale.expired_counted))
            sale.expired_counted += covered
            acct.qualifying -= to_reverse
            wanted = to_reverse - covered
            if wanted:
                lots = acct.spendable(self.now) + acct.pending_lots(self.now)
                if lot in lots:
                    lots = [lot, *[other for other in lots if other is not lot]]
                _, missing = take(wanted, lots)
                if self.shortfall == "allow_debt":
                    debt_added = missing
                    acct.debt += missing
                else:
                    written_off = missing
                acct.earned -= wanted - written_off
        acct.settle(self.now)
        for what, value in [
            ("restored", to_restore),
            ("reversed", to_reverse),
            ("already expired", covered),
            ("debt added", debt_added),
            ("written off", written_off),
        ]:
            if value:
                event(f"refund: {what}")
        return {
            "points_reversed": to_reverse - covered - written_off,
            "points_restored": to_restore,
            "points_written_off": written_off,
            "points_already_expired": covered,
            "debt_added": debt_added,
        }


# --- the machine ----------------------------------------------------------------------------


def _request(ext: str, member: int, amount: int, spend: int) -> PurchaseRequest:
    return PurchaseRequest(
        external_id=ext, member=MemberRef(id=member), amount=Decimal(amount), points_to_spend=spend
    )


def _changed(body: PurchaseRequest) -> PurchaseRequest:
    return body.model_copy(update={"amount": body.amount + 1})


spend_kinds = st.sampled_from(["none", "none", "some", "all", "too_many"])


class SaleMachine(RuleBasedStateMachine):
    db: Any = None  # set per test

    def __init__(self) -> None:
        super().__init__()
        self.model: Model | None = None
        self.sales: dict[str, MSale] = {}
        self.orders = itertools.count(1)

    @initialize(
        pending_days=st.sampled_from([0, 2]),
        shortfall=st.sampled_from(["allow_debt", "write_off"]),
        with_tiers=st.booleans(),
    )
    def setup(self, pending_days: int, shortfall: str, with_tiers: bool) -> None:
        self.model = Model(
            months=1, pending_days=pending_days, shortfall=shortfall, tiers=with_tiers
        )
        clock.freeze(T0)
        with self.db.unit_of_work() as session:
            prog = make_program(
                session,
                now=T0,
                code=f"model{next(_programs)}",
                expiry={"kind": "months", "months": 1},
                pending_days=pending_days,
                negative_balance=shortfall,
                redemption={"min_points": 10, "step": 10, "max_share": "1"},
            )
            if with_tiers:
                setup = {
                    "policy": {"metric": "points", "window": "lifetime", "upgrade": "immediate"},
                    "tiers": [
                        {
                            "code": code,
                            "names": {"en": code.title()},
                            "threshold": threshold,
                            "multiplier": str(factor),
                            "extra_expiry_months": extra,
                        }
                        for code, threshold, factor, extra in TIERS
                    ],
                }
                tiers.set_tiers(session, prog, TierSetup.model_validate(setup), actor=CLI, now=T0)
            # Two members enrolled (an empty account each), two whose first sale opens it.
            self.members = [
                make_member(session, now=T0, program=prog if i < 2 else None).id for i in range(4)
            ]
        self.code = prog.code
        self.with_tiers = with_tiers
        for member in self.members[:2]:
            self.model.accounts[member] = MAccount()

    # helpers

    @property
    def m(self) -> Model:
        assert self.model is not None
        return self.model

    def _spend(self, member: int, amount: int, kind: str) -> int:
        acct = self.m.accounts.get(member)
        if acct is not None:
            acct.settle(self.m.now)
        balance = acct.totals(self.m.now)["balance"] if acct is not None else 0
        cap = min(amount, max(balance, 0)) // 10 * 10
        if kind == "some" and cap >= 20:
            return cap // 20 * 10
        if kind == "all" and cap >= 10:
            return cap
        if kind == "too_many":
            over = (max(balance, 0) // 10 + 1) * 10
            return over if over <= amount else 0
        return 0

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self.db.unit_of_work() as session:
            prog = programs.get_program(session, self.code)
            return fn(session, prog, *args, actor=CLI, now=self.m.now, **kwargs)

    def _refused(self, fn: Any, *args: Any, **kwargs: Any) -> str:
        try:
            out = self._call(fn, *args, **kwargs)
        except PatronError as exc:
            event(f"refused: {exc.code}")
            return exc.code
        raise AssertionError(f"expected a refusal, got {out}")

    def _check_totals(self, member: int, got: Any) -> None:
        if hasattr(got, "model_dump"):
            got = got.model_dump()
        assert got == self.m.accounts[member].totals(self.m.now), member

    # rules

    @precondition(lambda self: self.model is not None)
    @rule(
        who=st.integers(0, 3),
        amount=st.integers(1, 60_000),
        spend_kind=spend_kinds,
    )
    def sale(self, who: int, amount: int, spend_kind: str) -> None:
        member = self.members[who]
        ext = f"o{next(self.orders)}"
        body = _request(ext, member, amount, self._spend(member, amount, spend_kind))
        try:
            expected = self.m.sale(member, ext, body)
        except Refused as refusal:
            assert self._refused(purchases.purchase, body) == refusal.code
            return
        out = self._call(purchases.purchase, body)
        assert (out["member_id"], out["points_earned"], out["points_spent"]) == (
            member,
            expected.earned,
            expected.spent,
        )
        self._check_totals(member, out["totals"])
        expected.answer = out
        self.sales[ext] = expected

    def _with_points(self) -> list[int]:
        out = []
        for who, member in enumerate(self.members):
            acct = self.m.accounts.get(member) if self.model is not None else None
            if acct is not None and acct.totals(self.m.now)["balance"] >= 10:
                out.append(who)
        return out

    @precondition(lambda self: self._with_points())
    @rule(data=st.data(), amount=st.integers(10, 60_000), some=st.booleans())
    def sale_with_points(self, data: st.DataObject, amount: int, some: bool) -> None:
        """A sale that pays with points (the plain `sale` rarely finds a balance)."""
        self.sale(
            data.draw(st.sampled_from(self._with_points())), amount, "some" if some else "all"
        )

    @precondition(lambda self: self.sales)
    @rule(data=st.data(), same=st.booleans())
    def replay(self, data: st.DataObject, same: bool) -> None:
        sale = data.draw(st.sampled_from(sorted(self.sales.values(), key=lambda s: s.ext)))
        if not same:
            assert self._refused(purchases.purchase, _changed(sale.body)) == "duplicate_order"
            return
        out = self._call(purchases.purchase, sale.body)
        if sale.answer is None:  # recorded by a batch: only the figures are known
            assert (out["points_earned"], out["points_spent"]) == (sale.earned, sale.spent)
            sale.answer = out
        assert out == sale.answer

    @precondition(lambda self: self.model is not None)
    @rule(
        data=st.data(),
        size=st.integers(1, 6),
        chunk_size=st.sampled_from([1, 2, 3, 500]),
    )
    def ingest(self, data: st.DataObject, size: int, chunk_size: int) -> None:
        items: list[PurchaseRequest] = []
        expected: list[tuple[Any, ...]] = []
        for _ in range(size):
            kind = data.draw(
                st.sampled_from(["new", "new", "new", "replay", "other_body"])
                if self.sales
                else st.just("new")
            )
            if kind == "new":
                member = self.members[data.draw(st.integers(0, 3))]
                amount = data.draw(st.integers(1, 60_000))
                ext = f"o{next(self.orders)}"
                spend = self._spend(member, amount, data.draw(spend_kinds))
                body = _request(ext, member, amount, spend)
                try:
                    sale = self.m.sale(member, ext, body)
                except Refused as refusal:
                    expected.append(("error", refusal.code, None, 0, 0))
                else:
                    self.sales[ext] = sale
                    expected.append(("created", None, member, sale.earned, sale.spent))
            else:
                sale = data.draw(st.sampled_from(sorted(self.sales.values(), key=lambda s: s.ext)))
                if kind == "replay":
                    body = sale.body
                    expected.append(("replayed", None, sale.member, sale.earned, sale.spent))
                else:
                    body = _changed(sale.body)
                    expected.append(("error", "duplicate_order", None, 0, 0))
            items.append(body)
        report = batch.ingest(
            self.db, self.code, items, actor=CLI, now=self.m.now, chunk_size=chunk_size
        )
        got = [
            (item.status, item.error, item.member_id, item.points_earned, item.points_spent)
            for item in report.items
        ]
        assert got == expected, (got, expected, [i.detail for i in report.items])
        for status, error, *_ in got:
            event(f"batch: {status} {error or ''}".strip())

    def _refundable(self) -> list[MSale]:
        return sorted(
            (s for s in self.sales.values() if s.refunded < s.amount), key=lambda s: s.ext
        )

    @precondition(lambda self: self._refundable())
    @rule(data=st.data(), full=st.booleans())
    def refund(self, data: st.DataObject, full: bool) -> None:
        sales = self._refundable()
        # Give the rarer cases a fair share: points paid to give back, and points earned that
        # were spent or expired since (the clawback then makes debt, writes off, or skips them).
        spent = [s for s in sales if s.spent]
        gone = [s for s in sales if s.earn_lot is not None and s.earn_lot.remaining < s.earned]
        pick = data.draw(st.sampled_from(["any", "spent", "gone"]))
        if pick == "spent" and spent:
            sales = spent
        elif pick == "gone" and gone:
            sales = gone
        sale = data.draw(st.sampled_from(sales))
        left = sale.amount - sale.refunded
        refund_id = f"{sale.ext}-r{len(sale.refunds) + 1}"
        if full:
            req = RefundRequest(refund_id=refund_id, full=True)
            piece = left
        else:
            piece = data.draw(st.integers(1, left))
            req = RefundRequest(refund_id=refund_id, amount=Decimal(piece))
        figures = self.m.refund(sale, piece)
        out = self._call(purchases.refund, sale.ext, req)
        assert {k: out[k] for k in figures} == figures
        assert Decimal(out["amount"]) == piece
        assert Decimal(out["refunded_total"]) == sale.refunded
        self._check_totals(sale.member, out["totals"])
        sale.refunds.append((req, out))

    @precondition(lambda self: any(s.refunds for s in self.sales.values()))
    @rule(data=st.data(), same=st.booleans())
    def replay_refund(self, data: st.DataObject, same: bool) -> None:
        done = sorted((s for s in self.sales.values() if s.refunds), key=lambda s: s.ext)
        sale = data.draw(st.sampled_from(done))
        req, first = data.draw(st.sampled_from(sale.refunds))
        if same:
            assert self._call(purchases.refund, sale.ext, req) == first
            return
        other = RefundRequest(refund_id=req.refund_id, amount=Decimal(1))
        if req.amount == 1:
            other = RefundRequest(refund_id=req.refund_id, full=True)
        assert self._refused(purchases.refund, sale.ext, other) == "duplicate_refund"

    @precondition(lambda self: self.model is not None)
    @rule(who=st.integers(0, 3), points=st.integers(-800, 800).filter(bool))
    def adjust(self, who: int, points: int) -> None:
        member = self.members[who]
        req = AdjustRequest(member=MemberRef(id=member), points=points, reason="model test")
        try:
            self.m.adjust(member, points)
        except Refused as refusal:
            assert self._refused(purchases.adjust, req) == refusal.code
            return
        out = self._call(purchases.adjust, req)
        assert out.entry.points == points
        self._check_totals(member, out.totals)

    def _holding(self) -> list[int]:
        out = []
        for who, member in enumerate(self.members):
            acct = self.m.accounts.get(member) if self.model is not None else None
            if acct is not None:
                t = acct.totals(self.m.now)
                if t["available"] + t["pending"] > 0:
                    out.append(who)
        return out

    @precondition(lambda self: self._holding())
    @rule(data=st.data())
    def remove_everything(self, data: st.DataObject) -> None:
        """An adjustment that empties the account, so a later clawback finds nothing left."""
        who = data.draw(st.sampled_from(self._holding()))
        t = self.m.accounts[self.members[who]].totals(self.m.now)
        self.adjust(who, -(t["available"] + t["pending"]))

    @precondition(lambda self: self.model is not None)
    @rule(months=st.sampled_from([1, 2, 3]))
    def change_expiry(self, months: int) -> None:
        # Later points may then expire before earlier ones: spending follows expiry, not age.
        with self.db.unit_of_work() as session:
            set_expiry(
                session, programs.get_program(session, self.code), months=months, now=self.m.now
            )
        self.m.months = months

    @precondition(lambda self: self.model is not None)
    @rule(
        # Hours (pending points mature) or weeks (lots expire: they last a month or three).
        hours=st.one_of(st.integers(1, 72), st.integers(24 * 7, 24 * 40)),
        run_job=st.booleans(),
    )
    def time_passes(self, hours: int, run_job: bool) -> None:
        self.m.now += timedelta(hours=hours)
        clock.freeze(self.m.now)
        if run_job:  # writing the expiries down changes no total
            run_expiry(self.db, self.m.now, batch_size=2)

    # checks

    @invariant()
    def totals_match_the_model(self) -> None:
        if self.model is None:
            return
        with self.db.unit_of_work(readonly=True) as session:
            prog = programs.get_program(session, self.code)
            for member in self.members:
                if member not in self.m.accounts:
                    try:
                        views.get_account(session, prog, member)
                    except PatronError as exc:
                        assert exc.code == "account_not_found"
                        continue
                    raise AssertionError(f"member {member} has an account before any sale")
                acct = self.m.accounts[member]
                acct.settle(self.m.now)
                account = views.get_account(session, prog, member)
                got = views.totals(session, account, self.m.now)
                assert got.model_dump() == acct.totals(self.m.now), member
                # Which lots hold the points, not only how many: spending order shows here.
                now = self.m.now
                live = sorted(
                    (lot for lot in acct.lots if lot.remaining > 0 and lot.expires > now),
                    key=lambda lot: (lot.expires, lot.idx),
                )
                assert [
                    (lot.points, lot.remaining, lot.expires_at, lot.pending_until, lot.pending)
                    for lot in views.lots(session, account, now=now)
                ] == [
                    (lot.points, lot.remaining, lot.expires, lot.pending_until, lot.pending(now))
                    for lot in live
                ], member
                for name in ("pending", "debt", "expired", "expiring_30_days"):
                    if getattr(got, name):
                        event(f"totals: {name}")
                if self.with_tiers:
                    tier = views.get_account(session, prog, member).tier
                    assert tier == TIERS[acct.tier][0] or (acct.tier == 0 and tier is None)

    def teardown(self) -> None:
        if self.model is None:
            return
        with self.db.unit_of_work(readonly=True) as session:
            report = run_check(session)
        assert report.ok, report.violations


def test_sales_match_the_reference_model(db):
    machine = type("Sales", (SaleMachine,), {"db": db})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=8,
            stateful_step_count=35,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
