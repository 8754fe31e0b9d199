"""Sales at the till or the web shop: quote, purchase, refund, and manual adjustments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.idempotency import request_hash
from patron.audit.service import Actor
from patron.errors import Conflict, InsufficientPoints, Invalid, NotFound
from patron.ledger import earn, program_cache, views
from patron.ledger import service as ledger
from patron.ledger.expiry import expires_at, pending_until
from patron.ledger.models import Account, Entry, Lot, Purchase, Refund
from patron.ledger.program_cache import ProgramConfig
from patron.ledger.schemas import (
    AdjustOut,
    AdjustRequest,
    BasketIn,
    CouponApplied,
    PurchaseOut,
    PurchaseRequest,
    QuoteOut,
    QuoteRequest,
    RefundOut,
    RefundRequest,
)
from patron.members import service as members
from patron.members.models import Member
from patron.money import (
    from_minor,
    parse_amount,
    round_money,
    split_proportionally,
    to_minor,
)
from patron.programs.models import Program
from patron.programs.service import get_store
from patron.rewards import sale
from patron.rules import service as rules
from patron.rules.engine import Line, Order
from patron.rules.model import RuleSetDoc
from patron.tiers import service as tiers

FUTURE_TOLERANCE = timedelta(minutes=5)
EARLIEST_SALE = datetime(1970, 1, 1, tzinfo=UTC)


def share_half_up(points: int, part: int, whole: int) -> int:
    """round_half_up(points × part ÷ whole) in exact integer arithmetic."""
    return (2 * points * part + whole) // (2 * whole)


def _amount(value: Decimal, currency: str, field: str) -> Decimal:
    try:
        return parse_amount(value, currency)
    except ValueError as exc:
        raise Invalid(f"{field}: {exc}", code="invalid_amount") from None


def _order(
    program: Program | ProgramConfig,
    req: BasketIn,
    *,
    occurred_at: datetime,
    points_to_spend: int,
    store_id_of: Callable[[str], int | None],
) -> tuple[Order, int | None]:
    """The basket as the rules core sees it, and the store's id (`store_id_of(code)`, None for
    a store the program does not have)."""
    if req.currency is not None and req.currency != program.currency:
        raise Invalid(
            f"program {program.code} runs in {program.currency}, not {req.currency}; "
            "convert the amount before sending it",
            code="currency_mismatch",
        )
    total = _amount(req.amount, program.currency, "amount")
    lines: list[Line] = []
    for index, line in enumerate(req.lines, start=1):
        lines.append(
            Line(
                id=line.id or str(index),
                amount=_amount(line.amount, program.currency, f"lines[{index - 1}].amount"),
                quantity=line.quantity,
                sku=line.sku,
                category=line.category,
            )
        )
    if lines:
        if len({line.id for line in lines}) != len(lines):
            raise Invalid("line ids must be unique within a purchase", code="duplicate_line_id")
        line_sum = sum((line.amount for line in lines), Decimal(0))
        if line_sum != total:
            raise Invalid(
                f"lines add up to {line_sum} but amount is {total}", code="lines_total_mismatch"
            )
    store_id = None
    if req.store is not None:
        store_id = store_id_of(req.store)
        if store_id is None:
            raise Invalid(
                f"no store {req.store!r} in program {program.code}", code="store_not_found"
            )
    order = Order(
        currency=program.currency,
        total=total,
        occurred_at=occurred_at,
        timezone=program.timezone,
        lines=tuple(lines),
        store=req.store,
        channel=req.channel,
        payment_method=req.payment_method,
        paid_with_points=spend_value(program, points_to_spend),
        earn_on_redeemed=program.earn_on_redeemed,
    )
    return order, store_id


def _stores(session: Session, program: Program) -> Callable[[str], int | None]:
    def store_id_of(code: str) -> int | None:
        try:
            store = get_store(session, program, code)
        except NotFound:
            return None
        if not store.active:
            raise program_cache.store_closed(code)
        return store.id

    return store_id_of


def spend_value(program: Program | ProgramConfig, points: int) -> Decimal:
    return round_money(Decimal(points) * program.point_value, program.currency)


def max_spend(program: Program | ProgramConfig, amount: Decimal, balance: int) -> int:
    """The most points a bill with `amount` payable can take, by the policy and the balance."""
    cap = int(
        (amount * program.redeem_max_share / program.point_value).to_integral_value(ROUND_FLOOR)
    )
    cap = min(cap, max(balance, 0))
    cap -= cap % program.redeem_step
    return cap if cap >= max(program.redeem_min_points, 1) else 0


def check_spend(
    program: Program | ProgramConfig,
    amount: Decimal,
    points: int,
    balance: int,
    blocked: str | None = None,
) -> None:
    if points == 0:
        return
    if blocked is not None:
        raise Invalid(blocked, code="redemption_not_allowed")
    if points < program.redeem_min_points:
        raise Invalid(
            f"at least {program.redeem_min_points} points must be used at once",
            code="below_minimum_redemption",
        )
    if points % program.redeem_step:
        raise Invalid(
            f"points are used in steps of {program.redeem_step}", code="invalid_redemption_step"
        )
    value = spend_value(program, points)
    limit = amount * program.redeem_max_share
    if value > limit:
        raise Invalid(
            f"{points} points are worth {value} {program.currency}, more than the "
            f"{limit.normalize():f} {program.currency} of this bill payable with points",
            code="exceeds_max_share",
        )
    if points > balance:
        raise InsufficientPoints(f"{points} points requested but the balance is {balance}")


def _resolve(session: Session, program: Program, req_member: Any) -> Member:
    member = members.find_member(session, req_member, program=program)
    members.ensure_active(member)
    return member


def quote(session: Session, program: Program, req: QuoteRequest, *, now: datetime) -> QuoteOut:
    member = _resolve(session, program, req.member)
    coupons = sale.plan(session, program, req, member, now=now, sale=False)
    paying = sale.discounted(program, req, coupons, earning=False)
    order, _store_id = _order(
        program,
        paying,
        occurred_at=now,
        points_to_spend=req.points_to_spend,
        store_id_of=_stores(session, program),
    )
    earn_order = order
    if coupons.not_earning_minor != coupons.discount_minor:
        earn_order, _ = _order(
            program,
            sale.discounted(program, req, coupons, earning=True),
            occurred_at=now,
            points_to_spend=req.points_to_spend,
            store_id_of=_stores(session, program),
        )
    earn_order = replace(earn_order, coupons=coupons.reward_codes())
    account = session.scalars(
        select(Account).where(Account.program_id == program.id, Account.member_id == member.id)
    ).one_or_none()
    balance = views.totals(session, account, now).balance if account is not None else 0
    doc = rules.document(session, program)
    can_pay, blocked = rules.payable_amount(doc, order)
    check_spend(program, can_pay, req.points_to_spend, balance, blocked)
    result, version = rules.evaluate_purchase(
        session, program, earn_order, member=member, account=account, record=False, doc=doc
    )
    return QuoteOut(
        discount=from_minor(coupons.discount_minor, program.currency),
        coupons=_coupons_out(program, coupons),
        member_id=member.id,
        points_earned=result.points,
        breakdown=result.steps,
        rule_version=version,
        balance=balance,
        max_points_to_spend=max_spend(program, can_pay, balance),
        points_to_spend=req.points_to_spend,
        spend_value=order.paid_with_points,
        amount_due=order.total - order.paid_with_points,
    )


def points_expiry(
    session: Session, program: Program, account: Account, earned_at: datetime
) -> datetime | None:
    """When points credited at `earned_at` expire; a tier may lengthen their validity."""
    extra = tiers.extra_expiry_months(session, program.id, account.tier)
    return expires_at(
        earned_at,
        kind=program.expiry_kind,
        months=program.expiry_months + extra,
        timezone=program.timezone,
    )


def check_occurred_at(value: datetime | None, now: datetime) -> datetime:
    """When a sale or event happened: default now; never in the future or before 1970."""
    if value is None:
        return now
    if value > now + FUTURE_TOLERANCE:
        raise Invalid("occurred_at is in the future", code="occurred_at_in_future")
    if value < EARLIEST_SALE:
        # Year-1 instants with a positive offset cannot even be converted to UTC (was a 500).
        raise Invalid("occurred_at is before 1970", code="occurred_at_out_of_range")
    return value


def _existing_purchase(session: Session, program_id: int, external_id: str) -> Purchase | None:
    return session.scalars(
        select(Purchase).where(
            Purchase.program_id == program_id, Purchase.external_id == external_id
        )
    ).one_or_none()


def _replay_purchase(found: Purchase, digest: str) -> dict[str, Any]:
    if found.request_hash != digest or found.response is None:
        raise Conflict(
            f"order {found.external_id!r} was already recorded with different details",
            code="duplicate_order",
        )
    return found.response


def purchase(
    session: Session, program: Program, req: PurchaseRequest, *, actor: Actor, now: datetime
) -> dict[str, Any]:
    """Record a sale: spend points and earn points atomically. Replays return the first answer."""
    return record(session, program.id, req, actor=actor, now=now, program=program)[0]


def purchase_by_code(
    session: Session, code: str, req: PurchaseRequest, *, actor: Actor, now: datetime
) -> dict[str, Any]:
    """`purchase` for the program with `code` (its id is cached per worker: no query)."""
    program_id = program_cache.program_id(session, code)
    return record(session, program_id, req, actor=actor, now=now)[0]


# Tests set this to False to run every sale through the general path (the reference).
FAST_PATH = True


def sale_digest(req: PurchaseRequest) -> str:
    """The request's fingerprint for replays. A sale without coupons hashes as it did before
    coupons existed, so orders recorded then still replay."""
    data = req.model_dump(mode="json")
    if not data.get("coupons"):
        data.pop("coupons", None)
    return request_hash(data)


def record(
    session: Session,
    program_id: int,
    req: PurchaseRequest,
    *,
    actor: Actor,
    now: datetime,
    program: Program | None = None,
) -> tuple[dict[str, Any], bool]:
    """(answer, created): `purchase`, telling a recorded sale from a replay."""
    digest = sale_digest(req)
    if FAST_PATH:
        done = earn.try_purchase(session, program_id, req, digest, actor=actor, now=now)
        if done is not None:
            return done
    return general(session, program_id, req, digest, actor=actor, now=now, program=program)


def general(
    session: Session,
    program_id: int,
    req: PurchaseRequest,
    digest: str,
    *,
    actor: Actor,
    now: datetime,
    program: Program | None = None,
) -> tuple[dict[str, Any], bool]:
    """The general path for a sale, by program id."""
    if program is None:
        program = session.get(Program, program_id)
        if program is None:  # pragma: no cover - the id came from the program's code
            raise NotFound(f"no program with id {program_id}", code="program_not_found")
    return _purchase_orm(session, program, req, digest, actor=actor, now=now)


def _purchase_orm(
    session: Session,
    program: Program,
    req: PurchaseRequest,
    digest: str,
    *,
    actor: Actor,
    now: datetime,
) -> tuple[dict[str, Any], bool]:
    """The general path, for every sale (points spent, a first sale, ...); the hot path in
    `patron.ledger.earn` gives the same answer and rows for the common one in fewer statements."""
    if (found := _existing_purchase(session, program.id, req.external_id)) is not None:
        return _replay_purchase(found, digest), False

    member = _resolve(session, program, req.member)
    occurred_at = check_occurred_at(req.occurred_at, now)
    coupons = sale.plan(session, program, req, member, now=now, sale=True) if req.coupons else None
    paying = sale.discounted(program, req, coupons, earning=False) if coupons else req
    order, store_id = _order(
        program,
        paying,
        occurred_at=occurred_at,
        points_to_spend=req.points_to_spend,
        store_id_of=_stores(session, program),
    )
    earn_order = order
    if coupons is not None and coupons.not_earning_minor != coupons.discount_minor:
        earn_order, _ = _order(
            program,
            sale.discounted(program, req, coupons, earning=True),
            occurred_at=occurred_at,
            points_to_spend=req.points_to_spend,
            store_id_of=_stores(session, program),
        )
    if coupons is not None:
        earn_order = replace(earn_order, coupons=coupons.reward_codes())
    account = ledger.open_account(session, program_id=program.id, member_id=member.id, now=now)
    ledger.settle_due(session, account, now)
    doc = rules.document(session, program)
    can_pay, blocked = rules.payable_amount(doc, order)
    check_spend(program, can_pay, req.points_to_spend, account.available - account.debt, blocked)
    value = order.paid_with_points
    result, version = rules.evaluate_purchase(
        session, program, earn_order, member=member, account=account, record=True, doc=doc
    )
    spent_per_line = _spent_per_line(doc, order, req.points_to_spend)

    row = Purchase(
        program_id=program.id,
        account_id=account.id,
        external_id=req.external_id,
        store_id=store_id,
        channel=req.channel,
        payment_method=req.payment_method,
        occurred_at=occurred_at,
        created_at=now,
        amount_minor=to_minor(order.total, program.currency),
        lines=[
            {
                "id": line.id,
                "sku": line.sku,
                "category": line.category,
                "quantity": str(line.quantity),
                "amount_minor": to_minor(line.amount, program.currency),
                "points_earned": earned,
                "points_spent": spent,
                "refunded_quantity": "0",
            }
            for line, earned, spent in zip(
                order.lines, result.line_points, spent_per_line, strict=True
            )
        ],
        points_earned=result.points,
        points_spent=req.points_to_spend,
        refunded_minor=0,
        reversed_points=0,
        restored_points=0,
        request_hash=digest,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # Another request recorded this order id first (it held the unique key).
        found = _existing_purchase(session, program.id, req.external_id)
        if found is None:  # pragma: no cover - the conflicting row must be visible now
            raise
        return _replay_purchase(found, digest), False

    source = ledger.Source(
        actor=str(actor),
        store_id=store_id,
        channel=req.channel,
        external_ref=req.external_id,
        purchase_id=row.id,
    )
    entries: list[Entry] = []
    if req.points_to_spend:
        spent = ledger.debit(
            session,
            account,
            kind="redeem",
            points=req.points_to_spend,
            now=now,
            occurred_at=occurred_at,
            source=source,
            reason=f"paid {value} {program.currency} with points",
        )
        assert spent.entry is not None
        row.redeem_entry_id = spent.entry.id
        entries.append(spent.entry)
    if result.points:
        expiry = points_expiry(session, program, account, occurred_at)
        earned = ledger.credit(
            session,
            account,
            kind="earn",
            points=result.points,
            now=now,
            occurred_at=occurred_at,
            source=source,
            expires_at=expiry,
            pending_until=pending_until(occurred_at, days=program.pending_days),
            reason=f"purchase {req.external_id}",
            breakdown=result.steps,
            rule_version=version,
            qualifying=rules.qualifying_points(doc, result),
        )
        row.earn_entry_id = earned.id
        entries.append(earned)
        if expiry is not None and expiry <= now:
            ledger.settle_due(session, account, now, actor=str(actor))
    if coupons is not None:
        sale.apply(session, program, req, coupons, member, actor=actor, now=now)
    session.flush()
    tiers.upgrade_if_qualified(session, program, account, now=now, actor=actor)
    stores = views.store_codes(session, program.id) if store_id else {}
    out = PurchaseOut(
        external_id=row.external_id,
        member_id=member.id,
        amount=req.amount if coupons is not None else order.total,
        points_earned=result.points,
        points_spent=req.points_to_spend,
        spend_value=value,
        occurred_at=occurred_at,
        entries=[views.entry_out(e, stores) for e in entries],
        totals=views.totals(session, account, now, settled=True),
    )
    if coupons is not None:
        out.discount = from_minor(coupons.discount_minor, program.currency)
        out.coupons = _coupons_out(program, coupons)
    row.response = out.answer()
    return row.response, True


def _coupons_out(program: Program, coupons: sale.Plan) -> list[CouponApplied]:
    return [
        CouponApplied(
            code=sale.display(c.code),
            applied=c.applied,
            discount=from_minor(c.discount_minor, program.currency),
            reward=coupons.rewards[c.code].code if c.code in coupons.rewards else None,
            reason=c.reason,
            detail=c.detail,
        )
        for c in coupons.selection.choices
    ]


def _spent_per_line(doc: RuleSetDoc, order: Order, points: int) -> list[int]:
    """Points paid, spread over the lines points could pay for (so refunds give back exactly)."""
    excluded = doc.redemption.excluded
    weights = [
        Decimal(0) if excluded is not None and excluded.matches(ln.sku, ln.category) else ln.amount
        for ln in order.lines
    ]
    return split_proportionally(points, weights)


def _refund_targets(
    purchase_row: Purchase, req: RefundRequest, currency: str
) -> tuple[str, int, int, int, list[dict[str, Any]] | None]:
    """(mode, refunded_minor_now, reversed_target, restored_target, updated_lines).

    Targets are computed on the *cumulative* refunded share, so any sequence of
    partial refunds ends exactly where one full refund would.
    """
    total = purchase_row.amount_minor
    mode = purchase_row.refund_mode
    if req.full:
        wanted = mode or ("lines" if purchase_row.lines else "amount")
    else:
        wanted = "lines" if req.lines is not None else "amount"
    if mode is not None and mode != wanted:
        raise Conflict(
            f"this purchase was refunded by {mode} before; continue by {mode} or use full=true",
            code="refund_mode_conflict",
        )
    if wanted == "lines" and not purchase_row.lines:
        raise Invalid("this purchase has no lines; refund by amount", code="no_lines")

    if wanted == "amount":
        if req.full:
            now_minor = total - purchase_row.refunded_minor
        else:
            assert req.amount is not None
            now_minor = to_minor(_amount(req.amount, currency, "amount"), currency)
        cumulative = purchase_row.refunded_minor + now_minor
        if now_minor <= 0:
            raise Conflict("this purchase is already fully refunded", code="already_refunded")
        if cumulative > total:
            left = from_minor(total - purchase_row.refunded_minor, currency)
            raise Conflict(
                f"only {left} {currency} of this purchase is left to refund",
                code="refund_exceeds_purchase",
            )
        return (
            wanted,
            now_minor,
            share_half_up(purchase_row.points_earned, cumulative, total),
            share_half_up(purchase_row.points_spent, cumulative, total),
            None,
        )

    lines = [dict(line) for line in purchase_row.lines]
    by_id = {line["id"]: line for line in lines}
    if req.full:
        asked = {
            line["id"]: Decimal(line["quantity"]) - Decimal(line["refunded_quantity"])
            for line in lines
        }
    else:
        assert req.lines is not None
        asked = {}
        for item in req.lines:
            if item.id not in by_id:
                raise Invalid(f"purchase has no line {item.id!r}", code="unknown_line")
            asked[item.id] = asked.get(item.id, Decimal(0)) + item.quantity
    now_minor = reversed_target = restored_target = 0
    for line in lines:
        qty = Decimal(line["quantity"])
        old = Decimal(line["refunded_quantity"])
        new = old + asked.get(line["id"], Decimal(0))
        if new > qty:
            raise Conflict(
                f"line {line['id']} has only {qty - old} left to refund",
                code="refund_exceeds_purchase",
            )
        # Exact shares of the line by quantity, kept in integer arithmetic on scaled quantities.
        scale = 1000
        q, o, n = int(qty * scale), int(old * scale), int(new * scale)
        now_minor += share_half_up(line["amount_minor"], n, q) - share_half_up(
            line["amount_minor"], o, q
        )
        reversed_target += share_half_up(line["points_earned"], n, q)
        restored_target += share_half_up(line["points_spent"], n, q)
        line["refunded_quantity"] = str(new)
    if now_minor <= 0 and all(v == 0 for v in asked.values()):
        raise Conflict("this purchase is already fully refunded", code="already_refunded")
    return wanted, now_minor, reversed_target, restored_target, lines


def _expired_share(session: Session, row: Purchase, earn_entry: Entry, to_reverse: int) -> int:
    """How much of a clawback is covered by the purchase's own points having expired unspent.

    Points that expired are already gone from the balance; taking them back again would
    charge the member twice. What is still in the lot is taken first; the expired part of the
    lot (less what earlier refunds of this purchase already counted) covers the rest.
    """
    if earn_entry.lot_id is None:
        return 0
    lot = session.get(Lot, earn_entry.lot_id)
    assert lot is not None
    expired = -int(
        session.scalar(
            select(func.coalesce(func.sum(Entry.points), 0)).where(
                Entry.kind == "expire", Entry.lot_id == lot.id
            )
        )
        or 0
    )
    counted = int(
        session.scalar(
            select(func.coalesce(func.sum(Refund.points_already_expired), 0)).where(
                Refund.purchase_id == row.id
            )
        )
        or 0
    )
    return max(0, min(to_reverse - lot.remaining, expired - counted))


def refund(
    session: Session,
    program: Program,
    external_id: str,
    req: RefundRequest,
    *,
    actor: Actor,
    now: datetime,
) -> dict[str, Any]:
    row = _existing_purchase(session, program.id, external_id)
    if row is None:
        raise NotFound(
            f"no purchase {external_id!r} in program {program.code}", code="purchase_not_found"
        )
    digest = request_hash(req.model_dump(mode="json"))
    account = ledger.lock_account(session, row.account_id)
    session.refresh(row)
    done = session.scalars(
        select(Refund).where(Refund.purchase_id == row.id, Refund.external_id == req.refund_id)
    ).one_or_none()
    if done is not None:
        if done.request_hash != digest or done.response is None:
            raise Conflict(
                f"refund {req.refund_id!r} was already recorded with different details",
                code="duplicate_refund",
            )
        return done.response

    occurred_at = check_occurred_at(req.occurred_at, now)
    ledger.settle_due(session, account, now)
    mode, now_minor, reversed_target, restored_target, lines = _refund_targets(
        row, req, program.currency
    )
    to_reverse = reversed_target - row.reversed_points
    to_restore = restored_target - row.restored_points
    source = ledger.Source(
        actor=str(actor),
        store_id=row.store_id,
        channel=row.channel,
        external_ref=external_id,
        purchase_id=row.id,
    )
    entries: list[Entry] = []
    if to_restore > 0:
        redemption = session.get(Entry, row.redeem_entry_id)
        assert redemption is not None
        entries.append(
            ledger.restore(
                session,
                account,
                redemption=redemption,
                points=to_restore,
                now=now,
                occurred_at=occurred_at,
                source=source,
                reason=f"refund {req.refund_id}: points paid given back",
            )
        )
    debt_added = written_off = already_expired = 0
    if to_reverse > 0:
        earn_entry = session.get(Entry, row.earn_entry_id)
        assert earn_entry is not None
        # Qualifying points go back by the same cumulative share as the points, so partial
        # refunds add up to a full one exactly; they go back even when the points cannot.
        qualifying_back = share_half_up(
            earn_entry.qualifying, reversed_target, row.points_earned
        ) - share_half_up(earn_entry.qualifying, row.reversed_points, row.points_earned)
        already_expired = _expired_share(session, row, earn_entry, to_reverse)
        taken_entry = None
        if to_reverse > already_expired:
            taken = ledger.debit(
                session,
                account,
                kind="reverse",
                points=to_reverse - already_expired,
                now=now,
                occurred_at=occurred_at,
                source=source,
                reverses=earn_entry,
                clawback_lot_id=earn_entry.lot_id,
                shortfall=program.negative_balance,  # type: ignore[arg-type]
                reason=f"refund {req.refund_id}: points earned taken back",
                details={"already_expired": already_expired} if already_expired else None,
                qualifying=-qualifying_back,
            )
            taken_entry = taken.entry
            if taken.entry is not None:
                entries.append(taken.entry)
            debt_added, written_off = taken.debt_added, taken.written_off
        if taken_entry is None and qualifying_back:
            ledger.reverse_qualifying(
                session,
                account,
                earn=earn_entry,
                qualifying=-qualifying_back,
                now=now,
                occurred_at=occurred_at,
                source=source,
                reason=f"refund {req.refund_id}: qualifying points taken back",
            )
    ledger.settle_due(session, account, now, actor=str(actor))

    row.refund_mode = mode
    row.refunded_minor += now_minor
    row.reversed_points = reversed_target
    row.restored_points = restored_target
    if lines is not None:
        row.lines = lines
    if row.refunded_minor >= row.amount_minor:
        # Fully refunded: the coupons it used come back where their reward says so.
        sale.restore_on_refund(session, program, row.external_id, actor=actor, now=now)
    note = None
    if already_expired:
        note = (
            f"{already_expired} of the points to take back had expired unspent; "
            "nothing more is taken for them"
        )
    if debt_added:
        note = (
            f"{debt_added} of the points taken back had already been spent; "
            "the balance is negative until later earnings cover it (policy allow_debt)"
        )
    elif written_off:
        note = (
            f"{written_off} of the points to take back had already been spent and were "
            "written off (policy write_off)"
        )
    stores = views.store_codes(session, program.id) if row.store_id else {}
    refund_row = Refund(
        purchase_id=row.id,
        external_id=req.refund_id,
        amount_minor=now_minor,
        lines=[item.model_dump(mode="json") for item in req.lines] if req.lines else None,
        points_reversed=max(to_reverse, 0) - written_off - already_expired,
        points_restored=max(to_restore, 0),
        points_written_off=written_off,
        points_already_expired=already_expired,
        created_at=now,
        request_hash=digest,
    )
    out = RefundOut(
        external_id=external_id,
        refund_id=req.refund_id,
        amount=from_minor(now_minor, program.currency),
        refunded_total=from_minor(row.refunded_minor, program.currency),
        points_reversed=refund_row.points_reversed,
        points_restored=refund_row.points_restored,
        points_written_off=written_off,
        points_already_expired=already_expired,
        debt_added=debt_added,
        negative_balance_policy=program.negative_balance,
        note=note,
        entries=[views.entry_out(e, stores) for e in entries],
        totals=views.totals(session, account, now, settled=True),
    )
    refund_row.response = out.model_dump(mode="json")
    session.add(refund_row)
    session.flush()
    return refund_row.response


def adjust(
    session: Session, program: Program, req: AdjustRequest, *, actor: Actor, now: datetime
) -> AdjustOut:
    member = members.find_member(session, req.member, program=program)
    account_id = views.get_account(session, program, member.id).id
    account = ledger.lock_account(session, account_id)
    ledger.settle_due(session, account, now)
    before = views.totals(session, account, now)
    source = ledger.Source(actor=str(actor))
    if req.points > 0:
        entry = ledger.credit(
            session,
            account,
            kind="adjust",
            points=req.points,
            now=now,
            occurred_at=now,
            source=source,
            reason=req.reason,
            expires_at=points_expiry(session, program, account, now),
            qualifying=req.points if req.qualifying else 0,
        )
    else:
        result = ledger.debit(
            session,
            account,
            kind="adjust",
            points=-req.points,
            now=now,
            occurred_at=now,
            source=source,
            reason=req.reason,
            qualifying=req.points if req.qualifying else 0,
        )
        assert result.entry is not None
        entry = result.entry
    if req.qualifying and req.points > 0:
        tiers.upgrade_if_qualified(session, program, account, now=now, actor=actor)
    after = views.totals(session, account, now)
    audit.record(
        session,
        actor=actor,
        action="points.adjusted",
        subject_type="member",
        subject_id=member.id,
        program_id=program.id,
        at=now,
        before={"balance": before.balance},
        after={
            "balance": after.balance,
            "points": req.points,
            "reason": req.reason,
            "qualifying": req.qualifying,
            "entry": entry.id,
        },
    )
    return AdjustOut(member_id=member.id, entry=views.entry_out(entry, {}), totals=after)
