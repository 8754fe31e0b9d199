"""The sale planner: a snapshot of the accounts involved and a list of sales in, every row to
write and every answer to give out. No I/O: `patron.sales.snapshot` reads what it needs,
`patron.sales.apply` writes what it returns.

Sales are planned in the order given, each on its account's running state, so the tenth sale of
a member in a batch sees the nine before it exactly as if they had been recorded one at a time.
A sale that fails a check changes nothing and is answered alone; the others still go through.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from patron.errors import Conflict, InsufficientPoints, MemberBlocked, PatronError
from patron.events.kinds import ENTRY_EVENTS
from patron.events.outbox import entry_payload
from patron.experiments import arms as rule_arms
from patron.ledger.expiry import ExpiryRule, pending_until
from patron.ledger.rolling import ACTIVITY_KINDS
from patron.ledger.schemas import EntryOut, Totals
from patron.ledger.views import EXPIRING_WINDOW
from patron.money import to_minor
from patron.rules.engine import MemberContext, evaluate
from patron.rules.service import payable_amount, qualifying_points
from patron.sales import basket
from patron.sales.program_cache import ProgramConfig
from patron.sales.schemas import (
    BasketIn,
    CouponApplied,
    PurchaseOut,
    PurchaseRequest,
    ReviewHeld,
)
from patron.tiers.metrics import qualify
from patron.tiers.periods import Window, window_at

# The account totals a plan moves, by column.
DELTA_COLUMNS = ("available", "pending", "debt", "earned", "redeemed", "expired", "adjusted")


@dataclass
class LotState:
    """A lot points can be spent from, as the snapshot read it."""

    id: int
    remaining: int
    expires_at: datetime | None


@dataclass
class Expiry:
    """An expire entry a late sale may still draw on: what it took, less what was given back."""

    entry_id: int
    at: datetime  # the expiry instant
    points: int  # still restorable


@dataclass(frozen=True)
class Source:
    """Where an entry came from, copied onto it: the till's store and channel, the order or
    reward it names, the purchase it belongs to."""

    store_id: int | None = None
    channel: str | None = None
    external_ref: str | None = None
    purchase_id: int | None = None


NO_SOURCE = Source()


@dataclass
class OpenLot:
    """A lot a redemption took points from, with what is still not given back."""

    id: int
    remaining: int
    expires_at: datetime | None
    pending: bool
    open: int


@dataclass
class Taken:
    """What a clawback did: its entry (None when nothing could be taken), the points taken
    from lots, the debt it left and the points it wrote off (`negative_balance`)."""

    entry: EntryOut | None
    taken: int
    debt_added: int
    written_off: int


@dataclass
class AccountState:
    """One member's account in the program, settled at `now` (nothing due), under its lock."""

    account_id: int
    member_id: int
    tier: str | None
    available: int
    pending: int
    debt: int
    earned: int
    redeemed: int
    expired: int
    adjusted: int
    member_status: str
    attributes: dict[str, Any] | None
    birthday: date | None
    member_created_at: datetime
    expiring: int = 0  # points in lots expiring in (now, now + EXPIRING_WINDOW]
    # The account's rolling expiry policy (`ledger.rolling`), None when its dates do not roll;
    # `rolls_past_window`: its latest activity already moves every open lot beyond the
    # window, so nothing expires in it whatever the lots' stored dates say.
    rolling: ExpiryRule | None = None
    rolls_past_window: bool = False
    metric: int = 0  # the tier metric in the upgrade window, before these sales
    lots: list[LotState] | None = None  # spendable lots, soonest expiry first (when one spends)
    pending_lots: list[LotState] | None = None  # pending lots, soonest expiry first (clawbacks)
    # Expiries after the earliest late sale that spends (read only for such members).
    expiries: list[Expiry] = field(default_factory=list)
    new: bool = False  # not in the database yet: the first sale that goes through opens it


@dataclass
class LotMove:
    """Points moved out of a lot to another member (a merge, a transfer), with the dates the
    receiving lot keeps."""

    lot: LotState
    points: int
    pending_until: datetime | None = None
    earned_at: datetime | None = None
    # Moves with the same key land in one receiving lot (a transfer groups by expiry).
    group: object = None

    @property
    def expires_at(self) -> datetime | None:
        return self.lot.expires_at


@dataclass
class SaleOp:
    """One sale to plan, its member resolved, with what the rules read beyond the basket."""

    req: PurchaseRequest
    digest: str
    member_id: int
    card_status: str | None = None  # the card the member was named by
    paying: BasketIn | None = None  # with coupons: the basket after every discount
    earning: BasketIn | None = None  # with coupons: after the discounts points are not earned on
    coupon_codes: tuple[str, ...] = ()  # the rewards whose coupons apply (the rules read them)
    coupons_out: tuple[Decimal, list[CouponApplied]] | None = None  # for the answer
    figures: dict[str, int] = field(default_factory=dict)  # points this day/month/year (caps)
    purchases_before: int = 0  # for purchase-count rules
    recent_purchases: dict[int, int] = field(default_factory=dict)  # days → earlier purchases
    budgets: dict[str, int] | None = None  # promotion budgets left
    segments: frozenset[str] = frozenset()  # the segments rule conditions name she is in
    # (campaign id, arm) of the running rule experiments she is in (patron.experiments.arms)
    campaign_arms: tuple[tuple[int, str], ...] = ()


@dataclass
class Outcome:
    """A planned sale: its answer, or the error it is answered with alone."""

    answer: dict[str, Any] | None = None
    error: PatronError | None = None
    account_id: int | None = None
    upgrade: bool = False  # the member reaches a higher tier with it
    budget_used: dict[str, int] = field(default_factory=dict)
    # (campaign id, member id, points) a rule experiment's arm added to this sale
    campaign_points: list[tuple[int, int, int]] = field(default_factory=list)


class Ids:
    """New row ids, handed out in the order rows are planned (read beforehand: a range after
    every id in use on SQLite, sequence values on PostgreSQL)."""

    def __init__(self, purchases: Iterator[int], lots: Iterator[int], entries: Iterator[int]):
        self.purchases, self.lots, self.entries = purchases, lots, entries

    def purchase(self) -> int:
        return next(self.purchases)

    def lot(self) -> int:
        return next(self.lots)

    def entry(self) -> int:
        return next(self.entries)


@dataclass
class Rows:
    """Everything a plan writes, table by table, in insert order."""

    accounts: list[dict[str, Any]] = field(default_factory=list)
    purchases: list[dict[str, Any]] = field(default_factory=list)
    lots: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    movements: list[dict[str, Any]] = field(default_factory=list)
    lot_takes: dict[int, int] = field(default_factory=dict)  # lot id → points taken
    deltas: dict[int, dict[str, int]] = field(default_factory=dict)  # account id → column → delta
    events: list[dict[str, Any]] = field(default_factory=list)
    # Rows this plan inserts, by id: what later sales of the plan take from a new lot, or add
    # to a new account, is written into the row itself (one statement never inserts a row and
    # updates it too).
    new_accounts: dict[int, dict[str, Any]] = field(default_factory=dict)
    new_lots: dict[int, dict[str, Any]] = field(default_factory=dict)

    def move(self, account_id: int, **delta: int) -> None:
        new = self.new_accounts.get(account_id)
        totals = (
            new
            if new is not None
            else self.deltas.setdefault(account_id, dict.fromkeys(DELTA_COLUMNS, 0))
        )
        for column, value in delta.items():
            totals[column] += value

    def take(self, lot_id: int, points: int) -> None:
        new = self.new_lots.get(lot_id)
        if new is not None:
            new["remaining"] -= points
        else:
            self.lot_takes[lot_id] = self.lot_takes.get(lot_id, 0) + points


def upgrade_window(config: ProgramConfig, tier: str | None, now: datetime) -> Window | None:
    """The window whose tier metric a sale may lift the member by: only if the program
    upgrades at once and the member is not at the top already."""
    policy = config.policy
    if policy is None or policy.upgrade != "immediate" or config.rank_of(tier) >= config.top_rank:
        return None
    return window_at(policy.window, now, config.timezone, rolling_months=policy.rolling_months)


class Planner:
    """Plans sales one after another on the running state of their accounts."""

    def __init__(
        self,
        config: ProgramConfig,
        accounts: dict[int, AccountState],
        *,
        ids: Ids,
        actor: str,
        now: datetime,
        guard: Any = None,
    ) -> None:
        self.config, self.accounts, self.ids = config, accounts, ids
        self.actor, self.now = actor, now
        self.rows = Rows()
        self.guard = guard  # the fraud controls of the round (patron.fraud.guard), if any

    def sale(self, op: SaleOp) -> Outcome:
        try:
            return self._sale(op)
        except PatronError as exc:
            return Outcome(error=exc)

    # --- one sale ---------------------------------------------------------------------------

    def _sale(self, op: SaleOp) -> Outcome:
        config, now, req = self.config, self.now, op.req
        state = self.accounts[op.member_id]
        if op.card_status is not None and op.card_status != "active":
            raise Conflict(f"card {req.member.card} is {op.card_status}", code="card_not_active")
        if state.member_status != "active":
            raise MemberBlocked(f"member {state.member_id} is blocked and cannot earn or redeem")
        occurred_at = basket.check_occurred_at(req.occurred_at, now)
        spend = req.points_to_spend
        order, store_id = basket.order_of(
            config,
            op.paying or req,
            occurred_at=occurred_at,
            points_to_spend=spend,
            store_id_of=config.store_id_of,
        )
        earn_order = order
        if op.earning is not None:
            earn_order, _ = basket.order_of(
                config,
                op.earning,
                occurred_at=occurred_at,
                points_to_spend=spend,
                store_id_of=config.store_id_of,
            )
        if op.coupons_out is not None:
            earn_order = replace(earn_order, coupons=op.coupon_codes)
        doc = config.doc
        can_pay, blocked = payable_amount(doc, order)
        balance = state.available - state.debt
        late = self._late(state, occurred_at) if spend > balance else []
        basket.check_spend(config, can_pay, spend, balance + sum(x.points for x in late), blocked)
        on_hand = sum(lot.remaining for lot in state.lots or [])
        taken = self._lots_for(state, min(spend, on_hand))
        restored = self._restored(late, spend - min(spend, on_hand))
        tier = config.tier_by_code.get(state.tier) if state.tier is not None else None
        context = MemberContext(
            tier=state.tier,
            tier_factor=tier.multiplier if tier is not None else None,
            attributes=state.attributes or {},
            joined_on=state.member_created_at.astimezone(ZoneInfo(config.timezone)).date(),
            birthday=state.birthday,
            purchases=op.purchases_before,
            recent_purchases=op.recent_purchases,
            earned_day=op.figures.get("member_day", 0),
            earned_month=op.figures.get("member_month", 0),
            earned_year=op.figures.get("member_year", 0),
            segments=op.segments,
        )
        arms = (
            rule_arms.arms_at(config.rule_campaigns, op.campaign_arms, occurred_at)
            if op.campaign_arms
            else []
        )
        campaign_points: list[tuple[int, int, int]] = []
        if arms:
            # A rule experiment: the rule set plus the member's arms' rules; what each arm adds
            # is the difference its rules alone make (the campaign's rule points).
            budgets = op.budgets or {}
            plain = evaluate(doc, earn_order, context, budgets).points
            doc = rule_arms.merged(doc, arms)
            result = evaluate(doc, earn_order, context, budgets)
            for arm in arms:
                alone = (
                    result
                    if len(arms) == 1
                    else evaluate(rule_arms.merged(config.doc, [arm]), earn_order, context, budgets)
                )
                campaign_points.append((arm.campaign_id, state.member_id, alone.points - plain))
            rule_arms.annotate(result.steps, arms)
        else:
            result = evaluate(doc, earn_order, context, op.budgets or {})
        held = checked = None
        if self.guard is not None:  # may refuse a redemption, or hold the points
            checked = fraud_sale(op, store_id, to_minor(order.total, config.currency), occurred_at)
            held = self.guard.check(checked, result.points)
        # Every check passed: from here on the sale is written.
        if state.new:
            self._open(state)
        p_id = self.ids.purchase()
        sale = _Writer(
            self,
            state,
            occurred_at,
            Source(store_id, req.channel, req.external_id, p_id),
            order_id=req.external_id,
        )
        entries: list[EntryOut] = []
        redeem_id = earn_id = None
        if spend:
            for expiry, part in restored:
                lot, out = sale.restore(expiry, part)
                taken.append((lot, part))
                entries.append(out)
            redeem_id, out = sale.redeem(
                spend, taken, reason=f"paid {order.paid_with_points} {config.currency} with points"
            )
            entries.append(out)
        metric_gain = 0
        if result.points:
            qualifying = qualifying_points(doc, result)
            earn_id, out = sale.earn(result, tier, qualifying, held=held is not None)
            entries.append(out)
            metric_gain = qualifying
        window = upgrade_window(config, state.tier, now)
        upgrade = False
        if window is not None and config.policy is not None:
            if occurred_at >= window.start and (window.end is None or occurred_at < window.end):
                # As `tiers.metrics` counts: qualifying points, money kept, or purchases kept.
                metric = config.policy.metric
                kept = to_minor(order.total, config.currency)
                if metric == "points":
                    state.metric += metric_gain
                elif metric == "spend":
                    state.metric += kept
                elif kept > 0:
                    state.metric += 1
            target = qualify(config.tiers, state.metric)  # type: ignore[arg-type]
            upgrade = target is not None and target.rank > config.rank_of(state.tier)
        spent_lines = basket.spent_per_line(doc, order, spend)
        currency = config.currency
        answer_out = PurchaseOut.model_construct(
            external_id=req.external_id,
            member_id=state.member_id,
            amount=req.amount if op.coupons_out is not None else order.total,
            points_earned=result.points,
            points_spent=spend,
            spend_value=order.paid_with_points,
            occurred_at=occurred_at,
            entries=entries,
            totals=self.totals(state),
        )
        if op.coupons_out is not None:
            answer_out.discount, answer_out.coupons = op.coupons_out
        if held is not None:
            answer_out.review = ReviewHeld.model_validate(held.answer(result.points))
        answer = answer_out.answer()
        self.rows.purchases.append(
            {
                "id": p_id,
                "program_id": config.id,
                "account_id": state.account_id,
                "external_id": req.external_id,
                "store_id": store_id,
                "channel": req.channel,
                "payment_method": req.payment_method,
                "occurred_at": occurred_at,
                "created_at": now,
                "amount_minor": to_minor(order.total, currency),
                "lines": [
                    {
                        "id": line.id,
                        "sku": line.sku,
                        "category": line.category,
                        "quantity": str(line.quantity),
                        "amount_minor": to_minor(line.amount, currency),
                        "points_earned": earned,
                        "points_spent": spent,
                        "refunded_quantity": "0",
                    }
                    for line, earned, spent in zip(
                        order.lines, result.line_points, spent_lines, strict=True
                    )
                ],
                "points_earned": result.points,
                "points_spent": spend,
                "earn_entry_id": earn_id,
                "redeem_entry_id": redeem_id,
                "refunded_minor": 0,
                "reversed_points": 0,
                "restored_points": 0,
                "request_hash": op.digest,
                "response": answer,
            }
        )
        if checked is not None:
            self.guard.recorded(
                checked,
                purchase_id=p_id,
                account_id=state.account_id,
                points=result.points,
                earn_entry_id=earn_id,
                hold=held,
            )
        return Outcome(
            answer=answer,
            account_id=state.account_id,
            upgrade=upgrade,
            budget_used=dict(result.budget_used or {}),
            campaign_points=campaign_points,
        )

    def _lots_for(self, state: AccountState, points: int) -> list[tuple[LotState, int]]:
        """The lots `points` are spent from, soonest expiry first (checked before any write)."""
        if not points:
            return []
        lots = state.lots or []
        plan: list[tuple[LotState, int]] = []
        need = points
        for lot in lots:
            if need == 0:
                break
            part = min(need, lot.remaining)
            if part > 0:
                plan.append((lot, part))
                need -= part
        if need:
            on_hand = sum(lot.remaining for lot in lots)
            raise InsufficientPoints(f"{points} points needed but only {on_hand} are available")
        return plan

    # --- an adjustment by staff -------------------------------------------------------------

    def adjust(self, member_id: int, points: int, *, reason: str, qualifying: bool) -> EntryOut:
        """Points given (a new lot, as an earn's) or taken (available lots soonest expiry
        first, then pending ones). What the lots do not hold becomes debt where the program
        allows debt, and is refused otherwise."""
        state = self.accounts[member_id]
        writer = _Writer(self, state, self.now)
        if points > 0:
            tier = self.config.tier_by_code.get(state.tier) if state.tier is not None else None
            _id, out = writer.credit(
                "adjust",
                points,
                reason=reason,
                qualifying=points if qualifying else 0,
                policy=self.config.expiry_rule(tier),
                pending_days=0,
            )
            return out
        wanted = -points
        lots = [*(state.lots or []), *(state.pending_lots or [])]
        on_hand = sum(lot.remaining for lot in lots)
        shortfall = "allow_debt" if self.config.negative_balance == "allow_debt" else "reject"
        if wanted > on_hand and shortfall == "reject":
            raise InsufficientPoints(f"{wanted} points needed but only {on_hand} are left")
        taken = writer.take_back(
            "adjust",
            wanted,
            on_hand=lots,
            reason=reason,
            qualifying=points if qualifying else 0,
            shortfall=shortfall,
        )
        assert taken.entry is not None
        return taken.entry

    # --- a migration's opening balance (patron.bulk) ---------------------------------------

    def opening_balance(
        self, member_id: int, points: int, *, policy: ExpiryRule | None, reason: str
    ) -> EntryOut | None:
        """A member brought over from another system: the account opened (member.enrolled)
        if new, then `points` (if any) credited as an adjustment in a lot of their own,
        expiring by `policy` (the old system's date; None: the member's tier's policy).
        Never qualifying: the tier comes over as it was, not from these points."""
        state = self.accounts[member_id]
        if state.new:
            self._open(state)
        if points <= 0:
            return None
        tier = self.config.tier_by_code.get(state.tier) if state.tier is not None else None
        _id, out = _Writer(self, state, self.now).credit(
            "adjust",
            points,
            reason=reason,
            qualifying=0,
            policy=policy or self.config.expiry_rule(tier),
            pending_days=0,
        )
        return out

    # --- refunds, rewards and events -------------------------------------------------------

    def credit(
        self,
        member_id: int,
        points: int,
        *,
        reason: str,
        occurred_at: datetime,
        source: Source,
        qualifying: int,
        breakdown: list[dict[str, Any]] | None = None,
        rule_version: int | None = None,
    ) -> EntryOut:
        """Points an event earns: a new lot, valid as a sale's (the tier may lengthen it),
        never pending; points already past their date expire at once."""
        state = self.accounts[member_id]
        tier = self.config.tier_by_code.get(state.tier) if state.tier is not None else None
        _id, out = _Writer(self, state, occurred_at, source).credit(
            "earn",
            points,
            reason=reason,
            qualifying=qualifying,
            policy=self.config.expiry_rule(tier),
            pending_days=0,
            breakdown=breakdown,
            rule_version=rule_version,
        )
        return out

    def spend(
        self,
        member_id: int,
        points: int,
        *,
        reason: str,
        source: Source,
        details: dict[str, Any] | None = None,
    ) -> EntryOut:
        """Points paying for a reward: available lots, soonest expiry first."""
        state = self.accounts[member_id]
        taken = self._lots_for(state, points)
        _id, out = _Writer(self, state, self.now, source).redeem(
            points, taken, reason=reason, details=details
        )
        return out

    def give_back(
        self,
        member_id: int,
        redemption_id: int,
        points: int,
        opened: list[OpenLot],
        *,
        reason: str,
        occurred_at: datetime,
        source: Source,
    ) -> EntryOut:
        """Points a redemption spent, given back (a refund, a cancelled coupon): refused if
        the redemption has fewer left to give back (`opened`: its lots, what each still
        owes)."""
        left = sum(lot.open for lot in opened)
        if left < points:
            raise InsufficientPoints(f"only {left} points of this redemption are left to give back")
        state = self.accounts[member_id]
        writer = _Writer(self, state, occurred_at, source)
        return writer.give_back(redemption_id, points, opened, reason=reason)

    def claw_back(
        self,
        member_id: int,
        points: int,
        *,
        reverses: int,
        first_lot: int | None,
        shortfall: str,
        reason: str,
        occurred_at: datetime,
        source: Source,
        qualifying: int = 0,
        details: dict[str, Any] | None = None,
    ) -> Taken:
        """Points earned, taken back (a refund): the earn's own lot first, then available,
        then pending lots; what they do not hold goes by `shortfall`."""
        state = self.accounts[member_id]
        lots = [*(state.lots or []), *(state.pending_lots or [])]
        lots.sort(key=lambda lot: lot.id != first_lot)  # stable: the rest keep their order
        held = sum(lot.remaining for lot in lots)
        if points > held and shortfall == "reject":
            raise InsufficientPoints(f"{points} points needed but only {held} are left")
        return _Writer(self, state, occurred_at, source).take_back(
            "reverse",
            points,
            on_hand=lots,
            reason=reason,
            qualifying=qualifying,
            reverses=reverses,
            shortfall=shortfall,
            details=details,
        )

    def qualifying_back(
        self,
        member_id: int,
        *,
        reverses: int,
        qualifying: int,
        reason: str,
        occurred_at: datetime,
        source: Source,
    ) -> EntryOut:
        """A zero-point reversal that takes back only qualifying points (a refund that could
        take no points: they expired, or were written off)."""
        assert qualifying < 0
        return _Writer(self, self.accounts[member_id], occurred_at, source)._entry(
            "reverse",
            0,
            reason=reason,
            qualifying=qualifying,
            reverses=reverses,
            details={"qualifying_only": True},
        )

    # --- moves between two members: a merge, a transfer (patron.moves.merge, .transfer) ---

    def move_lots(
        self,
        from_member: int,
        to_member: int,
        moves: list[LotMove],
        *,
        kinds: tuple[str, str],
        reasons: tuple[str, str],
        details: tuple[dict[str, Any], dict[str, Any]],
    ) -> tuple[EntryOut, list[tuple[EntryOut, int]]]:
        """Points out of the lots of `from_member` (one entry of kinds[0], a movement per lot)
        into new lots of `to_member` (an entry of kinds[1] each, with the expiry, pending date
        and earning date `moves` give them). A debt of the receiver is paid from them first.
        Returns the out entry and each in entry with its new lot's id."""
        src, dst = self.accounts[from_member], self.accounts[to_member]
        if dst.new:
            self._open(dst)
        total = sum(m.points for m in moves)
        assert total > 0
        out = _Writer(self, src, self.now)._entry(
            kinds[0], -total, reason=reasons[0], details=details[0]
        )
        pending = {id(lot) for lot in src.pending_lots or []}
        writer = _Writer(self, src, self.now)
        for m in moves:
            writer._take(
                m.lot, m.points, out.id, "pending" if id(m.lot) in pending else "available"
            )
        for attr in ("lots", "pending_lots"):
            lots = getattr(src, attr)
            if lots is not None:
                setattr(src, attr, [lot for lot in lots if lot.remaining > 0])
        ins: list[tuple[EntryOut, int]] = []
        w = _Writer(self, dst, self.now)
        soon = self.now + EXPIRING_WINDOW
        for group in _in_groups(moves):
            points = sum(m.points for m in group)
            first = group[0]
            is_pending = first.pending_until is not None and first.pending_until > self.now
            lot_id = self.ids.lot()
            settled = min(dst.debt, points) if dst.debt > 0 else 0
            extra: dict[str, Any] = {
                **details[1],
                "from_lots": [m.lot.id for m in group],
                "expires_at": first.expires_at.isoformat() if first.expires_at else None,
                "pending_until": (
                    first.pending_until.isoformat()
                    if is_pending and first.pending_until is not None
                    else None
                ),
            }
            if settled:
                extra["debt_settled"] = settled
            entry = w._entry(
                kinds[1],
                points,
                reason=reasons[1],
                lot_id=lot_id,
                details=extra,
                expires=first.expires_at,
            )
            remaining = points - settled
            if settled:
                self.rows.movements.append(
                    {"entry_id": entry.id, "lot_id": lot_id, "points": -settled}
                )
                self.rows.movements.append(
                    {"entry_id": entry.id, "lot_id": None, "points": settled}
                )
            bucket = "pending" if is_pending else "available"
            setattr(dst, bucket, getattr(dst, bucket) + remaining)
            dst.debt -= settled
            self.rows.move(dst.account_id, debt=-settled, **{bucket: remaining})
            if first.expires_at is not None and self.now < first.expires_at <= soon:
                dst.expiring += remaining
            lot = self.rows.new_lots[lot_id] = {
                "id": lot_id,
                "account_id": dst.account_id,
                "points": points,
                "remaining": remaining,
                "earned_at": first.earned_at or self.now,
                "pending_until": first.pending_until if is_pending else None,
                "pending": is_pending,
                "expires_at": first.expires_at,
            }
            self.rows.lots.append(lot)
            target = dst.pending_lots if is_pending else dst.lots
            if target is not None and remaining > 0:
                target.append(LotState(lot_id, remaining, first.expires_at))
                target.sort(key=_spend_order)
            ins.append((entry, lot_id))
        return out, ins

    def move_debt(
        self,
        from_member: int,
        to_member: int,
        *,
        kinds: tuple[str, str],
        reasons: tuple[str, str],
        details: tuple[dict[str, Any], dict[str, Any]],
    ) -> tuple[EntryOut, EntryOut] | None:
        """The debt of `from_member` (who then holds no points) moved to `to_member`: paid
        from the receiver's lots (available, then pending, soonest expiry first), the rest
        stays debt there."""
        src, dst = self.accounts[from_member], self.accounts[to_member]
        debt = src.debt
        if debt <= 0:
            return None
        if dst.new:
            self._open(dst)
        out = _Writer(self, src, self.now)._entry(
            kinds[0], debt, reason=reasons[0], details={**details[0], "debt": debt}
        )
        self.rows.movements.append({"entry_id": out.id, "lot_id": None, "points": debt})
        src.debt = 0
        self.rows.move(src.account_id, debt=-debt)
        w = _Writer(self, dst, self.now)
        entry = w._entry(kinds[1], -debt, reason=reasons[1], details={**details[1], "debt": debt})
        need = debt
        pending = {id(lot) for lot in dst.pending_lots or []}
        for lot in [*(dst.lots or []), *(dst.pending_lots or [])]:
            part = min(need, lot.remaining)
            if part <= 0:
                continue
            need -= part
            w._take(lot, part, entry.id, "pending" if id(lot) in pending else "available")
        if need:
            dst.debt += need
            self.rows.movements.append({"entry_id": entry.id, "lot_id": None, "points": -need})
            self.rows.move(dst.account_id, debt=need)
        return out, entry

    def move_qualifying(
        self,
        from_member: int,
        to_member: int,
        groups: list[tuple[datetime, int]],
        *,
        kinds: tuple[str, str],
        reasons: tuple[str, str],
        details: tuple[dict[str, Any], dict[str, Any]],
    ) -> int:
        """Tier-qualifying points (no points) moved, each group dated at its own instant so it
        counts in the same tier window as the entries it comes from. Returns the entries
        written per side."""
        src, dst = self.accounts[from_member], self.accounts[to_member]
        if dst.new:
            self._open(dst)
        out_w, in_w = _Writer(self, src, self.now), _Writer(self, dst, self.now)
        for at, qualifying in groups:
            if not qualifying:
                continue
            extra = {"qualifying_only": True}
            out_w._entry(
                kinds[0],
                0,
                reason=reasons[0],
                qualifying=-qualifying,
                occurred_at=at,
                details={**details[0], **extra},
            )
            in_w._entry(
                kinds[1],
                0,
                reason=reasons[1],
                qualifying=qualifying,
                occurred_at=at,
                details={**details[1], **extra},
            )
        return len(groups)

    def _late(self, state: AccountState, occurred_at: datetime) -> list[Expiry]:
        """Points that were valid when a late sale happened and expired before it was
        recorded: the sale may still spend them (docs/concepts.md, "Sales recorded late")."""
        if occurred_at >= self.now:
            return []
        return [x for x in state.expiries if x.at > occurred_at and x.points > 0]

    @staticmethod
    def _restored(late: list[Expiry], need: int) -> list[tuple[Expiry, int]]:
        """What each expiry gives back for `need` points, earliest expiry first (checked
        before any write)."""
        plan: list[tuple[Expiry, int]] = []
        for expiry in sorted(late, key=lambda x: (x.at, x.entry_id)):
            if need == 0:
                break
            part = min(need, expiry.points)
            plan.append((expiry, part))
            need -= part
        if need:
            raise InsufficientPoints(f"{need} points more are needed than the balance holds")
        return plan

    def _open(self, state: AccountState) -> None:
        """The member's first sale in the program opens the account (member.enrolled)."""
        state.new = False
        row = self.rows.new_accounts[state.account_id] = {
            "id": state.account_id,
            "program_id": self.config.id,
            "member_id": state.member_id,
            "available": 0,
            "pending": 0,
            "debt": 0,
            "earned": 0,
            "redeemed": 0,
            "expired": 0,
            "adjusted": 0,
            "created_at": self.now,
        }
        self.rows.accounts.append(row)
        self.rows.events.append(
            {
                "program_id": self.config.id,
                "member_id": state.member_id,
                "entry_id": None,
                "kind": "member.enrolled",
                "payload": {"program": self.config.code, "member_id": state.member_id},
                "at": self.now,
                "dispatched": False,
            }
        )

    @staticmethod
    def totals(state: AccountState) -> Totals:
        """The account's totals as the plan leaves them (what the answer shows)."""
        return Totals.model_construct(
            balance=state.available - state.debt,
            available=state.available,
            pending=state.pending,
            debt=state.debt,
            earned=state.earned,
            redeemed=state.redeemed,
            expired=state.expired,
            adjusted=state.adjusted,
            expiring_30_days=0 if state.rolls_past_window else state.expiring,
        )


class _Writer:
    """The entries of one operation on one account, written into the planner's rows and the
    account's state."""

    def __init__(
        self,
        planner: Planner,
        state: AccountState,
        occurred_at: datetime,
        source: Source = NO_SOURCE,
        *,
        order_id: str | None = None,
    ) -> None:
        self.p, self.state, self.occurred_at = planner, state, occurred_at
        self.source, self.order_id = source, order_id

    def _entry(
        self,
        kind: str,
        points: int,
        *,
        reason: str,
        lot_id: int | None = None,
        qualifying: int = 0,
        breakdown: list[dict[str, Any]] | None = None,
        rule_version: int | None = None,
        details: dict[str, Any] | None = None,
        expires: datetime | None = None,
        occurred_at: datetime | None = None,
        sourced: bool = True,
        reverses: int | None = None,
    ) -> EntryOut:
        p = self.p
        entry_id = p.ids.entry()
        occurred = occurred_at or self.occurred_at
        state = self.state
        if state.rolling is not None and kind in ACTIVITY_KINDS and not state.rolls_past_window:
            # Activity moves every open lot to the rolling date (`ledger.rolling`).
            until = state.rolling.expires_at(occurred, p.config.timezone)
            state.rolls_past_window = until is not None and until > p.now + EXPIRING_WINDOW
        src = self.source if sourced else NO_SOURCE
        store_id, channel, ref = src.store_id, src.channel, src.external_ref
        store = p.config.store_codes.get(store_id) if store_id else None
        p.rows.entries.append(
            {
                "id": entry_id,
                "program_id": p.config.id,
                "account_id": self.state.account_id,
                "kind": kind,
                "points": points,
                "qualifying": qualifying,
                "lot_id": lot_id,
                "reverses_entry_id": reverses,
                "purchase_id": src.purchase_id,
                "occurred_at": occurred,
                "created_at": p.now,
                "reason": reason,
                "store_id": store_id,
                "channel": channel,
                "actor": p.actor,
                "external_ref": ref,
                "rule_version": rule_version,
                "breakdown": breakdown,
                "details": details,
            }
        )
        p.rows.events.append(
            {
                "program_id": p.config.id,
                "member_id": self.state.member_id,
                "entry_id": entry_id,
                "kind": ENTRY_EVENTS[kind],
                "payload": entry_payload(
                    program=p.config.code,
                    member_id=self.state.member_id,
                    entry_id=entry_id,
                    entry_kind=kind,
                    points=points,
                    occurred_at=occurred,
                    reason=reason,
                    order=ref,
                    store=store,
                    channel=channel,
                    expires_at=expires,
                ),
                "at": p.now,
                "dispatched": False,
            }
        )
        return EntryOut.model_construct(
            id=entry_id,
            kind=kind,
            points=points,
            occurred_at=occurred,
            created_at=p.now,
            reason=reason,
            store=store,
            channel=channel,
            external_ref=ref,
            actor=p.actor,
            reverses_entry_id=reverses,
            rule_version=rule_version,
            breakdown=breakdown,
            details=details,
        )

    def restore(self, expiry: Expiry, points: int) -> tuple[LotState, EntryOut]:
        """A late sale spends points that expired after it happened: an adjustment gives them
        back in a lot of their own (naming the expiry it answers), which the redemption then
        empties. The expiry stays in the history; this entry explains what undid part of it."""
        p, state = self.p, self.state
        lot_id = p.ids.lot()
        out = self._entry(
            "adjust",
            points,
            reason=(
                f"points expired on {expiry.at.date().isoformat()} given back: "
                f"sale {self.order_id} happened before and was recorded late"
            ),
            lot_id=lot_id,
            details={"late_sale": True, "expired_at": expiry.at.isoformat()},
            expires=expiry.at,
            reverses=expiry.entry_id,
        )
        lot = p.rows.new_lots[lot_id] = {
            "id": lot_id,
            "account_id": state.account_id,
            "points": points,
            "remaining": points,
            "earned_at": self.occurred_at,
            "pending_until": None,
            "pending": False,
            "expires_at": expiry.at,
        }
        p.rows.lots.append(lot)
        expiry.points -= points
        state.available += points
        state.adjusted += points
        p.rows.move(state.account_id, available=points, adjusted=points)
        return LotState(lot_id, points, expiry.at), out

    def take_back(
        self,
        kind: str,
        points: int,
        *,
        on_hand: list[LotState],
        reason: str,
        qualifying: int = 0,
        reverses: int | None = None,
        shortfall: str = "reject",
        details: dict[str, Any] | None = None,
    ) -> Taken:
        """A clawback (a refund's reverse, a negative adjustment): `points` from the lots
        `on_hand` in order; what they do not hold is refused, left as debt or written off
        (`shortfall`, the program's negative-balance policy). The caller checked a refusal."""
        p, state = self.p, self.state
        held = sum(lot.remaining for lot in on_hand)
        missing = max(0, points - held)
        debt_added = missing if shortfall == "allow_debt" else 0
        written_off = missing if shortfall == "write_off" else 0
        taken = points - missing
        if taken + debt_added == 0:
            return Taken(None, 0, 0, written_off)
        extra = dict(details or {})
        if debt_added:
            extra["debt_added"] = debt_added
        if written_off:
            extra["written_off"] = written_off
        out = self._entry(
            kind,
            -(taken + debt_added),
            reason=reason,
            qualifying=qualifying,
            reverses=reverses,
            details=extra or None,
        )
        pending = {id(lot) for lot in state.pending_lots or []}
        need = taken
        for lot in on_hand:
            part = min(need, lot.remaining)
            if part <= 0:
                continue
            need -= part
            self._take(lot, part, out.id, "pending" if id(lot) in pending else "available")
        if debt_added:
            state.debt += debt_added
            p.rows.movements.append({"entry_id": out.id, "lot_id": None, "points": -debt_added})
        total = "adjusted" if kind == "adjust" else "earned"
        setattr(state, total, getattr(state, total) - (taken + debt_added))
        p.rows.move(state.account_id, debt=debt_added, **{total: -(taken + debt_added)})
        return Taken(out, taken, debt_added, written_off)

    def _take(self, lot: LotState, part: int, entry_id: int, bucket: str) -> None:
        """`part` points out of `lot` (in `bucket`) for the entry `entry_id`."""
        p, state = self.p, self.state
        lot.remaining -= part
        p.rows.take(lot.id, part)
        p.rows.movements.append({"entry_id": entry_id, "lot_id": lot.id, "points": -part})
        if lot.expires_at is not None and p.now < lot.expires_at <= p.now + EXPIRING_WINDOW:
            state.expiring -= part
        setattr(state, bucket, getattr(state, bucket) - part)
        p.rows.move(state.account_id, **{bucket: -part})

    def redeem(
        self,
        points: int,
        taken: list[tuple[LotState, int]],
        *,
        reason: str,
        details: dict[str, Any] | None = None,
    ) -> tuple[int, EntryOut]:
        """Points spent (on part of a bill, on a reward), taken from the lots
        `Planner._lots_for` chose."""
        p, state = self.p, self.state
        out = self._entry("redeem", -points, reason=reason, details=details)
        for lot, part in taken:
            self._take(lot, part, out.id, "available")
        if state.lots is not None:
            state.lots = [lot for lot in state.lots if lot.remaining > 0]
        state.redeemed += points
        p.rows.move(state.account_id, redeemed=points)
        return out.id, out

    def give_back(
        self, redemption_id: int, points: int, opened: list[OpenLot], *, reason: str
    ) -> EntryOut:
        """Spent points back to the lots the redemption took them from, latest expiry first
        (the member gets back what stays valid longest); a debt is paid from them first, and
        what lands in a lot past its date expires again at once, dated at that date."""
        p, state = self.p, self.state
        out = self._entry("reverse", points, reason=reason, reverses=redemption_id)
        soon = p.now + EXPIRING_WINDOW
        need = points
        touched: list[OpenLot] = []
        for lot in sorted(opened, key=_give_order):
            part = min(need, lot.open)
            if part <= 0:
                continue
            need -= part
            lot.remaining += part
            lot.open -= part
            p.rows.take(lot.id, -part)
            p.rows.movements.append({"entry_id": out.id, "lot_id": lot.id, "points": part})
            bucket = "pending" if lot.pending else "available"
            setattr(state, bucket, getattr(state, bucket) + part)
            p.rows.move(state.account_id, **{bucket: part})
            if lot.expires_at is not None and p.now < lot.expires_at <= soon:
                state.expiring += part
            touched.append(lot)
            if need == 0:
                break
        state.redeemed -= points
        p.rows.move(state.account_id, redeemed=-points)
        for lot in touched:  # a debt takes the points first
            if state.debt <= 0:
                break
            part = min(state.debt, lot.remaining)
            if part <= 0:
                continue
            as_lot = LotState(lot.id, lot.remaining, lot.expires_at)
            self._take(as_lot, part, out.id, "pending" if lot.pending else "available")
            lot.remaining = as_lot.remaining
            state.debt -= part
            p.rows.movements.append({"entry_id": out.id, "lot_id": None, "points": part})
            p.rows.move(state.account_id, debt=-part)
        self._expire_again([lot for lot in touched if lot.remaining > 0])
        for lot in touched:  # what later operations of the plan may take from
            lots = state.pending_lots if lot.pending else state.lots
            if lots is None:
                continue
            found = next((x for x in lots if x.id == lot.id), None)
            if found is not None:
                found.remaining = lot.remaining
            elif lot.remaining > 0:
                lots.append(LotState(lot.id, lot.remaining, lot.expires_at))
                lots.sort(key=_spend_order)
        return out

    def _expire_again(self, lots: list[OpenLot]) -> None:
        """Lots given points back after their date: one expire entry per expiry instant, as
        `ledger.service.settle_due` and the nightly job write them."""
        p, state = self.p, self.state
        by_instant: dict[datetime, list[OpenLot]] = {}
        for lot in sorted(lots, key=lambda lot: lot.id):
            if lot.expires_at is not None and lot.expires_at <= p.now:
                by_instant.setdefault(lot.expires_at, []).append(lot)
        for at in sorted(by_instant):
            group = by_instant[at]
            total = sum(lot.remaining for lot in group)
            out = self._entry(
                "expire",
                -total,
                reason="points expired",
                lot_id=group[0].id if len(group) == 1 else None,
                occurred_at=at,
                sourced=False,
            )
            for lot in group:
                part = lot.remaining
                as_lot = LotState(lot.id, part, lot.expires_at)
                self._take(as_lot, part, out.id, "pending" if lot.pending else "available")
                lot.remaining = 0
            state.expired += total
            p.rows.move(state.account_id, expired=total)

    def earn(
        self, result: Any, tier: Any, qualifying: int, *, held: bool = False
    ) -> tuple[int, EntryOut]:
        """The points earned, in a new lot (`credit`); `held`: pending until staff review the
        sale (no release date: patron.fraud)."""
        config = self.p.config
        return self.credit(
            "earn",
            result.points,
            reason=f"purchase {self.order_id}",
            qualifying=qualifying,
            policy=config.expiry_rule(tier),
            pending_days=config.pending_days,
            breakdown=result.steps,
            rule_version=config.rule_version,
            held=held,
        )

    def credit(
        self,
        kind: str,
        points: int,
        *,
        reason: str,
        qualifying: int,
        policy: ExpiryRule,
        pending_days: int,
        breakdown: list[dict[str, Any]] | None = None,
        rule_version: int | None = None,
        held: bool = False,
    ) -> tuple[int, EntryOut]:
        """New points in a new lot (an earn, or a positive adjustment); a debt is paid from it
        first. Points whose validity ended before `now` (a sale recorded late) expire at once.
        `policy`: the expiry policy of the member's tier at earning time
        (`ProgramConfig.expiry_rule`)."""
        p, state = self.p, self.state
        expiry = policy.expires_at(self.occurred_at, p.config.timezone)
        until = pending_until(self.occurred_at, days=pending_days)
        is_pending = until is not None and until > p.now
        if held:  # pending until staff decide (patron.review.queue), never released by date
            until, is_pending = None, True
        settled = min(state.debt, points) if state.debt > 0 else 0
        details: dict[str, Any] = {
            "expires_at": expiry.isoformat() if expiry else None,
            "pending_until": until.isoformat() if until and is_pending else None,
        }
        if held:
            details["held_for_review"] = True
        if settled:
            details["debt_settled"] = settled
        lot_id = p.ids.lot()
        out = self._entry(
            kind,
            points,
            reason=reason,
            lot_id=lot_id,
            qualifying=qualifying,
            breakdown=breakdown,
            rule_version=rule_version,
            details=details,
            expires=expiry,
        )
        remaining = points - settled
        if settled:
            p.rows.movements.append({"entry_id": out.id, "lot_id": lot_id, "points": -settled})
            p.rows.movements.append({"entry_id": out.id, "lot_id": None, "points": settled})
        bucket = "pending" if is_pending else "available"
        setattr(state, bucket, getattr(state, bucket) + remaining)
        state.debt -= settled
        total = "earned" if kind == "earn" else "adjusted"
        setattr(state, total, getattr(state, total) + points)
        p.rows.move(state.account_id, debt=-settled, **{total: points, bucket: remaining})
        if expiry is not None and expiry <= p.now and remaining > 0:
            self._expire_at_birth(lot_id, remaining, expiry, bucket)
            remaining = 0
        elif expiry is not None and expiry <= p.now + EXPIRING_WINDOW and remaining > 0:
            state.expiring += remaining
        lot = p.rows.new_lots[lot_id] = {
            "id": lot_id,
            "account_id": state.account_id,
            "points": points,
            "remaining": remaining,
            "earned_at": self.occurred_at,
            "pending_until": until,
            "pending": is_pending,
            "expires_at": expiry,
        }
        p.rows.lots.append(lot)
        if state.lots is not None and remaining > 0 and not is_pending:
            state.lots.append(LotState(lot_id, remaining, expiry))
            state.lots.sort(key=_spend_order)
        return out.id, out

    def _expire_at_birth(self, lot_id: int, points: int, expiry: datetime, bucket: str) -> None:
        p, state = self.p, self.state
        out = self._entry(
            "expire",
            -points,
            reason="points expired",
            lot_id=lot_id,
            occurred_at=expiry,
            sourced=False,
        )
        p.rows.movements.append({"entry_id": out.id, "lot_id": lot_id, "points": -points})
        setattr(state, bucket, getattr(state, bucket) - points)
        state.expired += points
        p.rows.move(state.account_id, expired=points, **{bucket: -points})


def _in_groups(moves: list[LotMove]) -> list[list[LotMove]]:
    """Moves that land in one receiving lot: same group key, expiry and pending date (a move
    with no group key lands alone); in the order first seen."""
    out: dict[object, list[LotMove]] = {}
    for i, m in enumerate(moves):
        key = (m.group, m.expires_at, m.pending_until) if m.group is not None else ("lot", i)
        out.setdefault(key, []).append(m)
    return list(out.values())


def fraud_sale(op: SaleOp, store_id: int | None, amount_minor: int, occurred_at: datetime) -> Any:
    """A sale as the fraud controls check it (patron.fraud.guard.Sale)."""
    from patron.fraud.guard import Sale

    req = op.req
    return Sale(
        member_id=op.member_id,
        card=req.member.card,
        store_id=store_id,
        external_id=req.external_id,
        amount_minor=amount_minor,
        occurred_at=occurred_at,
        spends=bool(req.points_to_spend or req.coupons),
        spends_points=bool(req.points_to_spend),
    )


def _give_order(lot: OpenLot) -> tuple[bool, float, int]:
    """Lots that never expire first, then latest expiry first, then newest first."""
    at = lot.expires_at
    return (at is not None, -at.timestamp() if at is not None else 0.0, -lot.id)


def _spend_order(lot: LotState) -> tuple[bool, float, int]:
    """Soonest expiry first, lots that never expire last, then oldest first."""
    at = lot.expires_at
    return (at is None, at.timestamp() if at is not None else 0.0, lot.id)
