"""The rewards API: the catalog (admin to change, read to look), redeeming (pos), coupons at
the till (validate and use, pos), and staff actions on coupons (admin)."""

from __future__ import annotations

from typing import Literal

import segno
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select

from patron import http
from patron.audit.service import Actor
from patron.coupons import codes, lookup
from patron.coupons import use as coupon_use
from patron.coupons.models import Coupon
from patron.coupons.schemas import UseRequest
from patron.db.engine import Database
from patron.errors import (
    Conflict,
    CouponRefused,
    Forbidden,
    IdempotencyConflict,
    InsufficientPoints,
    Invalid,
    MemberBlocked,
    NotEligible,
    NotFound,
    OutOfStock,
    Unauthorized,
    responses,
)
from patron.fraud.errors import ContactNotVerified, VelocityExceeded
from patron.ledger.models import Account
from patron.members import service as members
from patron.money import from_minor
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program
from patron.rewards import catalog, offline, redeem, views
from patron.rewards.schemas import (
    BulkIssueRequest,
    CancelOut,
    CancelRequest,
    CatalogItem,
    CouponDetail,
    CouponOut,
    CouponStatus,
    ImportRequest,
    IssueOut,
    RedeemRequest,
    RedemptionOut,
    RewardCreate,
    RewardOut,
    RewardStatus,
    RewardUpdate,
    RewardVersionOut,
    StockChange,
    UseOut,
    ValidateOut,
    ValidateRequest,
)
from patron.segments.compiler import UnknownSegment

router = APIRouter(
    prefix="/api/v1", tags=["rewards"], responses=responses(Unauthorized, Forbidden, Invalid)
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
RewardCode = Path(pattern=CODE_PATTERN, description="The reward's code, e.g. americano")
# A code as printed, or the offline token its QR code carries (patron.rewards.offline).
CouponCode = Path(min_length=4, max_length=1000, description="As printed or scanned")


@router.get(
    "/programs/{code}/rewards", response_model=list[RewardOut], responses=responses(NotFound)
)
def list_rewards(
    code: str = ProgramCode,
    status: RewardStatus | None = Query(None),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> list[RewardOut]:
    def run(s):
        program = get_program(s, code)
        return [
            catalog.out(r, program.currency)
            for r in catalog.list_rewards(s, program, status=status)
        ]

    return http.read(db, run)


@router.post(
    "/programs/{code}/rewards",
    status_code=201,
    response_model=RewardOut,
    responses=responses(NotFound, Conflict, Invalid, UnknownSegment),
    summary="Add a reward to the catalog",
)
def create_reward(
    body: RewardCreate,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> RewardOut:
    with db.unit_of_work() as s:
        program = get_program(s, code)
        reward = catalog.create_reward(s, program, body, actor=actor, now=http.now())
        return catalog.out(reward, program.currency)


@router.get(
    "/programs/{code}/rewards/{reward}", response_model=RewardOut, responses=responses(NotFound)
)
def get_reward(
    code: str = ProgramCode,
    reward: str = RewardCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> RewardOut:
    def run(s):
        program = get_program(s, code)
        return catalog.out(catalog.get_reward(s, program, reward), program.currency)

    return http.read(db, run)


@router.patch(
    "/programs/{code}/rewards/{reward}",
    response_model=RewardOut,
    responses=responses(NotFound, Invalid, UnknownSegment),
    summary="Change a reward: a new version, audited (redeemed coupons keep their terms)",
)
def update_reward(
    body: RewardUpdate,
    code: str = ProgramCode,
    reward: str = RewardCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> RewardOut:
    with db.unit_of_work() as s:
        program = get_program(s, code)
        row = catalog.get_reward(s, program, reward)
        catalog.update_reward(s, program, row, body, actor=actor, now=http.now())
        return catalog.out(row, program.currency)


@router.get(
    "/programs/{code}/rewards/{reward}/versions",
    response_model=list[RewardVersionOut],
    responses=responses(NotFound),
)
def reward_versions(
    code: str = ProgramCode,
    reward: str = RewardCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> list[RewardVersionOut]:
    def run(s):
        row = catalog.get_reward(s, get_program(s, code), reward)
        return [
            RewardVersionOut(
                version=v.version, actor=v.actor, created_at=v.created_at, document=v.document
            )
            for v in catalog.versions(s, row)
        ]

    return http.read(db, run)


@router.post(
    "/programs/{code}/rewards/{reward}/stock",
    response_model=RewardOut,
    responses=responses(NotFound, OutOfStock),
    summary="Restock (+) or correct (−) a reward's stock",
)
def change_stock(
    body: StockChange,
    code: str = ProgramCode,
    reward: str = RewardCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> RewardOut:
    with db.unit_of_work() as s:
        program = get_program(s, code)
        row = catalog.get_reward(s, program, reward)
        catalog.adjust_stock(
            s, program, row, body.delta, actor=actor, now=http.now(), note=body.note
        )
        return catalog.out(row, program.currency)


@router.get(
    "/programs/{code}/members/{member_id}/rewards",
    response_model=list[CatalogItem],
    responses=responses(NotFound),
    summary="The catalog as one member sees it: their price, and whether they can redeem now",
)
def member_catalog(
    code: str = ProgramCode,
    member_id: int = Path(ge=1, le=2**53),
    channel: Literal["pos", "online", "app", "portal", "admin"] = Query("pos"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> list[CatalogItem]:
    def run(s):
        program = get_program(s, code)
        member = members.get_member(s, member_id)
        account = s.scalars(
            select(Account).where(Account.program_id == program.id, Account.member_id == member.id)
        ).one_or_none()
        return views.catalog_for(s, program, account, now=http.now(), channel=channel)

    return http.read(db, run)


@router.post(
    "/programs/{code}/rewards/{reward}/redeem",
    status_code=201,
    response_model=RedemptionOut,
    responses=responses(
        NotFound,
        MemberBlocked,
        InsufficientPoints,
        OutOfStock,
        NotEligible,
        IdempotencyConflict,
        ContactNotVerified,
        VelocityExceeded,
    ),
    summary="Spend a member's points on a reward: one redeem entry, stock, coupons (idempotent "
    "with Idempotency-Key)",
)
def redeem_reward(
    body: RedeemRequest,
    code: str = ProgramCode,
    reward: str = RewardCode,
    db: Database = Depends(http.database),
    actor: Actor = Depends(http.require("pos")),
    idempotency_key: str | None = http.IdempotencyKey,
) -> JSONResponse:
    def run(s):
        program = get_program(s, code)
        member = members.find_member(s, body.member, program=program)
        now = http.now()
        redemption, issued, account = redeem.redeem(
            s, program, reward, member=member, quantity=body.quantity, store=body.store,
            channel=body.channel, actor=actor, now=now,
        )  # fmt: skip
        return RedemptionOut(
            id=redemption.id,
            reward=reward,
            member_id=member.id,
            quantity=redemption.quantity,
            points=redemption.points,
            entry_id=redemption.entry_id,
            balance=redeem.balance_after(s, account, now),
            coupons=views.coupons_out(s, program, issued),
            created_at=redemption.created_at,
        )

    return http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload=lambda: {"program": code, "reward": reward, **body.model_dump(mode="json")},
        status_code=201,
    )


@router.post(
    "/programs/{code}/rewards/{reward}/issue",
    status_code=201,
    response_model=IssueOut,
    responses=responses(NotFound, OutOfStock),
    summary="Give coupons to a list of members at no points cost (a campaign)",
)
def bulk_issue(
    body: BulkIssueRequest,
    code: str = ProgramCode,
    reward: str = RewardCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> IssueOut:
    with db.unit_of_work() as s:
        program = get_program(s, code)
        row = catalog.get_reward(s, program, reward)
        issued = redeem.bulk_issue(
            s, program, row, body.members, campaign=body.campaign, actor=actor, now=http.now()
        )
        return IssueOut(issued=len(issued), coupons=views.coupons_out(s, program, issued))


@router.post(
    "/programs/{code}/rewards/{reward}/coupons/import",
    status_code=201,
    response_model=IssueOut,
    responses=responses(NotFound),
    summary="Load partner codes as coupons of this reward",
)
def import_coupons(
    body: ImportRequest,
    code: str = ProgramCode,
    reward: str = RewardCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> IssueOut:
    with db.unit_of_work() as s:
        program = get_program(s, code)
        row = catalog.get_reward(s, program, reward)
        issued = redeem.import_codes(
            s, program, row, body.codes, body.members, campaign=body.campaign, actor=actor,
            now=http.now(),
        )  # fmt: skip
        return IssueOut(issued=len(issued), coupons=views.coupons_out(s, program, issued))


@router.get(
    "/programs/{code}/coupons", response_model=list[CouponOut], responses=responses(NotFound)
)
def list_coupons(
    code: str = ProgramCode,
    member: int | None = Query(None, ge=1, le=2**53),
    reward: str | None = Query(None, pattern=CODE_PATTERN),
    status: CouponStatus | None = Query(None),
    limit: int = Query(100, ge=1, le=1000),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> list[CouponOut]:
    def run(s):
        program = get_program(s, code)
        stmt = select(Coupon).where(Coupon.program_id == program.id)
        if member is not None:
            stmt = stmt.where(Coupon.member_id == member)
        if reward is not None:
            stmt = stmt.where(Coupon.reward_id == catalog.get_reward(s, program, reward).id)
        if status is not None:
            stmt = stmt.where(Coupon.status == status)
        rows = list(s.scalars(stmt.order_by(Coupon.id.desc()).limit(limit)))
        return views.coupons_out(s, program, rows)

    return http.read(db, run)


@router.get(
    "/programs/{code}/coupons/{coupon}",
    response_model=CouponDetail,
    responses=responses(NotFound, CouponRefused),
)
def get_coupon(
    code: str = ProgramCode,
    coupon: str = CouponCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> CouponDetail:
    def run(s):
        program = get_program(s, code)
        return views.coupon_detail(s, program, lookup.find_coupon(s, program, coupon))

    return http.read(db, run)


def _qr(db: Database, code: str, coupon: str) -> str:
    def run(s):
        program = get_program(s, code)
        row = lookup.find_coupon(s, program, coupon)
        return offline.qr_text(s, program, row, now=http.now())

    return http.read(db, run)


@router.get(
    "/programs/{code}/coupons/{coupon}/qr.svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}, **responses(NotFound, CouponRefused)},
    summary="The coupon's QR code (SVG) for the till's scanner",
)
def coupon_qr_svg(
    code: str = ProgramCode,
    coupon: str = CouponCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> Response:
    stored = _qr(db, code, coupon)
    svg = segno.make(stored, error="m").svg_inline(scale=4)
    return Response(svg, media_type="image/svg+xml")


@router.get(
    "/programs/{code}/coupons/{coupon}/qr.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **responses(NotFound, CouponRefused)},
    summary="The coupon's QR code (PNG)",
)
def coupon_qr_png(
    code: str = ProgramCode,
    coupon: str = CouponCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> Response:
    import io

    stored = _qr(db, code, coupon)
    buffer = io.BytesIO()
    segno.make(stored, error="m").save(buffer, kind="png", scale=6)
    return Response(buffer.getvalue(), media_type="image/png")


@router.post(
    "/programs/{code}/coupons/validate",
    response_model=ValidateOut,
    responses=responses(NotFound, CouponRefused),
    summary="What a coupon gives on this basket, or why not; changes nothing",
)
def validate_coupon(
    body: ValidateRequest,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("pos")),
) -> ValidateOut:
    def run(s):
        program = get_program(s, code)
        row = lookup.find_coupon(s, program, body.code)
        reward, outcome = coupon_use.check(s, program, row, body, now=http.now())
        shown = codes.display(row.code)
        balance = (
            from_minor(row.balance_minor, program.currency)
            if row.balance_minor is not None
            else None
        )
        if isinstance(outcome, lookup.Refusal):
            return ValidateOut(
                code=shown, usable=False, reason=outcome.code, detail=outcome.detail,
                reward=reward.code, kind=reward.kind, balance=balance,
            )  # fmt: skip
        return ValidateOut(
            code=shown, usable=True, reward=reward.code, kind=reward.kind,
            discount=from_minor(outcome.discount_minor, program.currency), sku=outcome.sku,
            balance=balance,
        )  # fmt: skip

    return http.read(db, run)


@router.post(
    "/programs/{code}/coupons/{coupon}/use",
    response_model=UseOut,
    responses=responses(NotFound, CouponRefused, ContactNotVerified),
    summary="Use a coupon on an order (idempotent per coupon and order)",
)
def use_coupon(
    body: UseRequest,
    code: str = ProgramCode,
    coupon: str = CouponCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("pos")),
) -> UseOut:
    with db.unit_of_work() as s:
        program = get_program(s, code)
        used = coupon_use.use(s, program, coupon, body, actor=actor, now=http.now())
        [shown] = views.coupons_out(s, program, [used.coupon])
        return UseOut(
            coupon=shown,
            order=body.order,
            discount=from_minor(used.discount_minor, program.currency),
            sku=used.sku,
            replayed=used.replayed,
        )


@router.post(
    "/programs/{code}/coupons/{coupon}/cancel",
    response_model=CancelOut,
    responses=responses(NotFound, CouponRefused),
    summary="Cancel an unused coupon: its points back to the member, its unit back to stock",
)
def cancel_coupon(
    body: CancelRequest,
    code: str = ProgramCode,
    coupon: str = CouponCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> CancelOut:
    with db.unit_of_work() as s:
        program = get_program(s, code)
        row = lookup.find_coupon(s, program, coupon)
        now = http.now()
        back = redeem.cancel(s, program, row, reason=body.reason, actor=actor, now=now)
        [shown] = views.coupons_out(s, program, [row])
        return CancelOut(
            coupon=shown,
            points_returned=back.points_returned,
            points_expired_again=back.points_expired_again,
            balance=redeem.balance_after(s, back.account, now) if back.account else None,
        )


@router.post(
    "/programs/{code}/coupons/{coupon}/reissue",
    status_code=201,
    response_model=CouponOut,
    responses=responses(NotFound, CouponRefused),
    summary="Replace an unused coupon with a new code on the same terms (lost or leaked code)",
)
def reissue_coupon(
    body: CancelRequest,
    code: str = ProgramCode,
    coupon: str = CouponCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> CouponOut:
    with db.unit_of_work() as s:
        program = get_program(s, code)
        row = lookup.find_coupon(s, program, coupon)
        fresh = redeem.reissue(s, program, row, reason=body.reason, actor=actor, now=http.now())
        [shown] = views.coupons_out(s, program, [fresh])
        return shown
