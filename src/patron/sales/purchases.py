"""Sales at the till or the web shop: quote, purchase, refund, and manual adjustments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.audit.idempotency import request_hash
from patron.audit.service import Actor
from patron.coupons import sale
from patron.errors import Conflict, Invalid, NotFound
from patron.ledger import service as ledger
from patron.ledger import views
from patron.ledger.models import Account, Entry, Lot, Movement, Purchase, Refund
from patron.ledger.schemas import EntryOut
from patron.members import service as members
from patron.members.models import Member
from patron.money import from_minor, to_minor
from patron.programs.models import Program
from patron.programs.service import get_store
from patron.rules import service as rules
from patron.sales import pipeline, program_cache, snapshot
from patron.sales.basket import (
    amount,
    check_occurred_at,
    check_spend,
    max_spend,
    order_of,
    share_half_up,
)
from patron.sales.pipeline import coupons_out
from patron.sales.plan import AccountState, Planner, Source, Taken
from patron.sales.points import operate
from patron.sales.schemas import (
    AdjustOut,
    AdjustRequest,
    PurchaseRequest,
    QuoteOut,
    QuoteRequest,
    RefundOut,
    RefundRequest,
)

__all__ = ["check_occurred_at", "max_spend"]  # used where sales are shown


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


def _resolve(session: Session, program: Program, req_member: Any) -> Member:
    member = members.find_member(session, req_member, program=program)
    members.ensure_active(member)
    return member


def quote(session: Session, program: Program, req: QuoteRequest, *, now: datetime) -> QuoteOut:
    member = _resolve(session, program, req.member)
    coupons = sale.plan(session, program, req, member, now=now, sale=False)
    paying = sale.discounted(program, req, coupons, earning=False)
    order, _store_id = order_of(
        program,
        paying,
        occurred_at=now,
        points_to_spend=req.points_to_spend,
        store_id_of=_stores(session, program),
    )
    earn_order = order
    if coupons.not_earning_minor != coupons.discount_minor:
        earn_order, _ = order_of(
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
        coupons=coupons_out(program, coupons),
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


def _existing_purchase(session: Session, program_id: int, external_id: str) -> Purchase | None:
    return session.scalars(
        select(Purchase).where(
            Purchase.program_id == program_id, Purchase.external_id == external_id
        )
    ).one_or_none()


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
    """(answer, created): `purchase`, telling a recorded sale from a replay. The sale is a
    batch of one through the sale pipeline (`patron.sales.pipeline`)."""
    sold = pipeline.record(session, program_id, [(req, sale_digest(req))], actor=actor, now=now)[0]
    if sold.error is not None:
        raise sold.error
    assert sold.answer is not None
    return sold.answer, sold.created


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
            now_minor = to_minor(amount(req.amount, currency, "amount"), currency)
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
    # An expire entry covers an account's lots of one instant; its movements say how much
    # each lot lost.
    expired = -int(
        session.scalar(
            select(func.coalesce(func.sum(Movement.points), 0))
            .join(Entry, Entry.id == Movement.entry_id)
            .where(Entry.kind == "expire", Movement.lot_id == lot.id)
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
    source = Source(
        store_id=row.store_id,
        channel=row.channel,
        external_ref=external_id,
        purchase_id=row.id,
    )
    earn_entry = session.get(Entry, row.earn_entry_id) if to_reverse > 0 else None
    qualifying_back = already_expired = 0
    if earn_entry is not None:
        # Qualifying points go back by the same cumulative share as the points, so partial
        # refunds add up to a full one exactly; they go back even when the points cannot.
        qualifying_back = share_half_up(
            earn_entry.qualifying, reversed_target, row.points_earned
        ) - share_half_up(earn_entry.qualifying, row.reversed_points, row.points_earned)
        already_expired = _expired_share(session, row, earn_entry, to_reverse)
    redemption = row.redeem_entry_id
    opened = snapshot.opened(session, redemption) if to_restore > 0 and redemption else []
    shortfall = program.negative_balance

    def plan(planner: Planner, state: AccountState) -> tuple[list[EntryOut], Taken | None]:
        entries: list[EntryOut] = []
        if to_restore > 0:
            assert redemption is not None
            entries.append(
                planner.give_back(
                    state.member_id,
                    redemption,
                    to_restore,
                    opened,
                    reason=f"refund {req.refund_id}: points paid given back",
                    occurred_at=occurred_at,
                    source=source,
                )
            )
        if earn_entry is None:
            return entries, None
        taken = None
        if to_reverse > already_expired:
            taken = planner.claw_back(
                state.member_id,
                to_reverse - already_expired,
                reverses=earn_entry.id,
                first_lot=earn_entry.lot_id,
                shortfall=shortfall,
                reason=f"refund {req.refund_id}: points earned taken back",
                occurred_at=occurred_at,
                source=source,
                details={"already_expired": already_expired} if already_expired else None,
                qualifying=-qualifying_back,
            )
            if taken.entry is not None:
                entries.append(taken.entry)
        if (taken is None or taken.entry is None) and qualifying_back:
            planner.qualifying_back(
                state.member_id,
                reverses=earn_entry.id,
                qualifying=-qualifying_back,
                reason=f"refund {req.refund_id}: qualifying points taken back",
                occurred_at=occurred_at,
                source=source,
            )
        return entries, taken

    entries, taken = operate(
        session,
        program.id,
        account.member_id,
        plan,
        actor=actor,
        now=now,
        new_rows=(0, 4 + len(opened)),
    )
    debt_added = taken.debt_added if taken is not None else 0
    written_off = taken.written_off if taken is not None else 0

    row.refund_mode = mode
    row.refunded_minor += now_minor
    # A review's reversal (patron.review.queue) may have taken the points back already.
    row.reversed_points = max(row.reversed_points, reversed_target)
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
        entries=entries,
        totals=views.totals(session, account, now, settled=True),
    )
    refund_row.response = out.model_dump(mode="json")
    session.add(refund_row)
    session.flush()
    return refund_row.response


def adjust(
    session: Session, program: Program, req: AdjustRequest, *, actor: Actor, now: datetime
) -> AdjustOut:
    """Staff give or take points (`patron.sales.pipeline.adjust`)."""
    return pipeline.adjust(session, program, req, actor=actor, now=now)
