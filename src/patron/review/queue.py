"""The suspicious-activity queue: sales held for review, confirmed or reversed by staff.

Deciding takes the item with a guarded UPDATE (`… WHERE status = 'open'`): of two staff
deciding at once one wins, the other gets 409 review_decided, and nothing of hers is written.
Confirm releases the held points: the hold ends now and the ledger's own pending release
(`ledger.service.settle_due`, as the nightly job) makes them spendable, under the account's
lock. Reverse takes the sale's earned points back with the planner's clawback (the refund's
operation): a `reverse` entry naming the earn, from the held lot, with its qualifying points;
the purchase counts them as reversed, so a later refund does not take them again. Both are
audited (`fraud.review_confirmed`, `fraud.review_reversed`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.errors import Conflict, NotFound
from patron.fraud import guard
from patron.fraud.models import FraudReview
from patron.ledger import service as ledger
from patron.ledger.models import Entry, Lot, Purchase
from patron.programs.models import Program
from patron.sales.basket import share_half_up
from patron.sales.plan import AccountState, Planner, Source
from patron.sales.points import operate

Status = Literal["open", "confirmed", "reversed"]
STATUSES = ("open", "confirmed", "reversed")


class ReviewOut(BaseModel):
    id: int
    program: str
    member_id: int
    order: str = Field(description="The sale's order id (external_id)")
    code: str
    reasons: list[dict[str, Any]]
    points: int = Field(description="Points held when the item was opened")
    status: Status
    opened_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None
    released_points: int
    reversed_points: int


class DecisionIn(BaseModel):
    reason: str = Field(min_length=3, max_length=500)


class ReviewPage(BaseModel):
    items: list[ReviewOut]
    next_cursor: int | None = None


def out(program: Program, row: FraudReview) -> ReviewOut:
    return ReviewOut(
        id=row.id,
        program=program.code,
        member_id=row.member_id,
        order=row.external_id,
        code=row.code,
        reasons=row.reasons,
        points=row.points,
        status=row.status,
        opened_at=row.opened_at,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        reason=row.reason,
        released_points=row.released_points,
        reversed_points=row.reversed_points,
    )


def list_reviews(
    session: Session,
    program: Program,
    *,
    status: str | None = "open",
    member_id: int | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> tuple[list[FraudReview], int | None]:
    """Newest first; `cursor`: the id to continue below."""
    stmt = select(FraudReview).where(FraudReview.program_id == program.id)
    if status is not None:
        stmt = stmt.where(FraudReview.status == status)
    if member_id is not None:
        stmt = stmt.where(FraudReview.member_id == member_id)
    if cursor is not None:
        stmt = stmt.where(FraudReview.id < cursor)
    rows = list(session.scalars(stmt.order_by(FraudReview.id.desc()).limit(limit + 1)))
    more = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], more


def get_review(session: Session, program: Program, review_id: int) -> FraudReview:
    row = session.get(FraudReview, review_id)
    if row is None or row.program_id != program.id:
        raise NotFound(
            f"no review item {review_id} in program {program.code}", code="review_not_found"
        )
    return row


def _claim(
    session: Session,
    program: Program,
    review_id: int,
    status: str,
    *,
    actor: Actor,
    now: datetime,
    reason: str,
) -> FraudReview:
    row = get_review(session, program, review_id)
    won = session.execute(
        update(FraudReview)
        .where(FraudReview.id == row.id, FraudReview.status == "open")
        .values(status=status, decided_at=now, decided_by=str(actor), reason=reason)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.refresh(row)
    if not won:
        raise Conflict(
            f"review item {review_id} was already {row.status} by {row.decided_by}",
            code="review_decided",
        )
    return row


def confirm(
    session: Session, program: Program, review_id: int, *, reason: str, actor: Actor, now: datetime
) -> FraudReview:
    """The sale is genuine: its held points become spendable now."""
    row = _claim(session, program, review_id, "confirmed", actor=actor, now=now, reason=reason)
    account = ledger.lock_account(session, row.account_id)
    released = 0
    if row.lot_id is not None:
        lot = session.get(Lot, row.lot_id, populate_existing=True)
        assert lot is not None
        if lot.pending and lot.pending_until is None and lot.remaining > 0:
            released = lot.remaining
            lot.pending_until = now  # the hold ends now: the ledger's release takes it
            session.flush()
    ledger.settle_due(session, account, now, actor=str(actor))
    row.released_points = released
    session.flush()
    guard.emit(session, program.code, row, at=now)
    audit.record(
        session,
        actor=actor,
        action="fraud.review_confirmed",
        subject_type="member",
        subject_id=row.member_id,
        program_id=program.id,
        at=now,
        before={"review": row.id, "status": "open"},
        after={"review": row.id, "status": "confirmed", "released": released, "reason": reason},
    )
    return row


def reverse(
    session: Session, program: Program, review_id: int, *, reason: str, actor: Actor, now: datetime
) -> FraudReview:
    """The sale is not genuine: the points it earned are taken back (as a refund takes them),
    from its held lot; the sale record stays."""
    row = _claim(session, program, review_id, "reversed", actor=actor, now=now, reason=reason)
    purchase = session.get(Purchase, row.purchase_id)
    assert purchase is not None
    ledger.lock_account(session, row.account_id)
    session.refresh(purchase)
    earn = session.get(Entry, purchase.earn_entry_id) if purchase.earn_entry_id else None
    lot = session.get(Lot, row.lot_id, populate_existing=True) if row.lot_id else None
    left = purchase.points_earned - purchase.reversed_points
    take = min(left, lot.remaining) if lot is not None else 0
    qualifying = 0
    if earn is not None and left > 0:
        qualifying = earn.qualifying - share_half_up(
            earn.qualifying, purchase.reversed_points, purchase.points_earned
        )
    source = Source(
        store_id=purchase.store_id,
        channel=purchase.channel,
        external_ref=purchase.external_id,
        purchase_id=purchase.id,
    )
    why = f"review {row.id} reversed: {reason}"

    def plan(planner: Planner, state: AccountState) -> int:
        assert earn is not None
        if take > 0:
            taken = planner.claw_back(
                state.member_id,
                take,
                reverses=earn.id,
                first_lot=earn.lot_id,
                shortfall="reject",
                reason=why,
                occurred_at=now,
                source=source,
                qualifying=-qualifying,
                details={"review": row.id},
            )
            return taken.taken
        if qualifying:
            planner.qualifying_back(
                state.member_id,
                reverses=earn.id,
                qualifying=-qualifying,
                reason=why,
                occurred_at=now,
                source=source,
            )
        return 0

    taken = 0
    if earn is not None and (take > 0 or qualifying):
        taken = operate(session, program.id, row.member_id, plan, actor=actor, now=now)
    if left > 0:
        purchase.reversed_points = purchase.points_earned
    row.reversed_points = taken
    session.flush()
    guard.emit(session, program.code, row, at=now)
    audit.record(
        session,
        actor=actor,
        action="fraud.review_reversed",
        subject_type="member",
        subject_id=row.member_id,
        program_id=program.id,
        at=now,
        before={"review": row.id, "status": "open"},
        after={"review": row.id, "status": "reversed", "reversed": taken, "reason": reason},
    )
    return row


def decide(
    session: Session,
    program: Program,
    review_id: int,
    decision: str,
    *,
    reason: str,
    actor: Actor,
    now: datetime,
) -> FraudReview:
    action = confirm if decision == "confirm" else reverse
    return action(session, program, review_id, reason=reason, actor=actor, now=now)
