"""Offline tills: the program's public keys and a coupon's token (to verify coupons without a
network), and the batch through which uses accepted offline are synced (pos)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from fastapi import APIRouter, Depends, Path
from pydantic import AwareDatetime, BaseModel, Field

from patron import http
from patron.audit.service import Actor
from patron.coupons import codes, lookup
from patron.coupons.schemas import UseRequest
from patron.db.engine import Database
from patron.errors import CouponRefused, Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.money import from_minor
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program
from patron.rewards import offline
from patron.rewards.schemas import Strict

router = APIRouter(
    prefix="/api/v1", tags=["rewards"], responses=responses(Unauthorized, Forbidden, Invalid)
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
CouponCode = Path(
    min_length=4, max_length=offline.TOKEN_MAX, description="As printed, or its offline token"
)


class PublicKeyOut(BaseModel):
    kid: str = Field(description="The key's id; a token names the key that signed it")
    algorithm: Literal["Ed25519"] = "Ed25519"
    public_key: str = Field(description="The raw 32-byte public key, base64url without padding")
    created_at: datetime


class TokenOut(BaseModel):
    code: str = Field(description="As printed: 7KQM-3X9P-DV2T-H8WC-R")
    token: str = Field(description="PC1.<payload>.<signature>; what the coupon's QR code says")
    expires_at: datetime | None


class OfflineUse(UseRequest):
    """A use a till accepted while offline."""

    code: str = Field(
        min_length=4, max_length=offline.TOKEN_MAX, description="The coupon's code, or its token"
    )
    used_at: AwareDatetime = Field(description="When the till accepted it")


class SyncRequest(Strict):
    uses: list[OfflineUse] = Field(
        min_length=1, max_length=500, description="In the order the till accepted them"
    )


class FirstUseOut(BaseModel):
    order: str | None
    used_at: datetime | None
    store: str | None


class SyncedOut(BaseModel):
    index: int = Field(description="The use's position in the request, from 0")
    order: str
    coupon: str | None = Field(description="As printed, when the code could be read")
    status: Literal["used", "replayed", "refused"]
    error: str | None = Field(
        None, description="Why refused, as an error code: double_use, coupon_expired, …"
    )
    detail: str | None = None
    discount: Decimal | None = Field(None, description="Money off the order (used, replayed)")
    sku: str | None = None
    first_use: FirstUseOut | None = Field(
        None, description="double_use: the use that counts (the coupon stays used once)"
    )


class SyncOut(BaseModel):
    used: int
    replayed: int
    refused: int
    double_uses: int
    uses: list[SyncedOut]


@router.get(
    "/programs/{code}/coupons/keys",
    response_model=list[PublicKeyOut],
    responses=responses(NotFound),
    summary="The program's public keys, to verify coupon tokens offline (oldest first)",
)
def coupon_keys(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> list[PublicKeyOut]:
    def run(s):
        program = get_program(s, code)
        return [
            PublicKeyOut(kid=k.kid, public_key=k.public_key, created_at=k.created_at)
            for k in offline.public_keys(s, program, now=http.now())
        ]

    return http.read(db, run)


@router.get(
    "/programs/{code}/coupons/{coupon}/token",
    response_model=TokenOut,
    responses=responses(NotFound, CouponRefused),
    summary="The coupon's signed offline token (while it can be used)",
)
def coupon_token(
    code: str = ProgramCode,
    coupon: str = CouponCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> TokenOut:
    def run(s):
        program = get_program(s, code)
        row = lookup.find_coupon(s, program, coupon)
        token = offline.usable_token(s, program, row, now=http.now())
        return TokenOut(code=codes.display(row.code), token=token, expires_at=row.expires_at)

    return http.read(db, run)


@router.post(
    "/programs/{code}/coupons/uses/batch",
    response_model=SyncOut,
    responses=responses(NotFound),
    summary="Sync coupon uses accepted offline: each used, replayed or refused (a double use "
    "is reported as double_use, never accepted)",
)
def sync_uses(
    body: SyncRequest,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("pos")),
) -> SyncOut:
    with db.unit_of_work() as s:
        program = get_program(s, code)
        results = offline.sync_uses(
            s, program, [(u.code, u) for u in body.uses], actor=actor, now=http.now()
        )
        out = [
            SyncedOut(
                index=i,
                order=r.order,
                coupon=r.coupon,
                status=r.status,
                error=r.error,
                detail=r.detail,
                discount=(
                    from_minor(r.discount_minor, program.currency)
                    if r.status != "refused"
                    else None
                ),
                sku=r.sku,
                first_use=(
                    FirstUseOut(
                        order=r.first_use.order,
                        used_at=r.first_use.used_at,
                        store=r.first_use.store,
                    )
                    if r.first_use is not None
                    else None
                ),
            )
            for i, r in enumerate(results)
        ]
        return SyncOut(
            used=sum(r.status == "used" for r in results),
            replayed=sum(r.status == "replayed" for r in results),
            refused=sum(r.status == "refused" for r in results),
            double_uses=sum(r.error == "double_use" for r in results),
            uses=out,
        )
