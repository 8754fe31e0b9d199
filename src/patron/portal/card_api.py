"""Tills: check a member card's signed token (the card page's QR code) online (read or pos).

Offline, a till checks the same token with the program's public keys alone
(GET …/coupons/keys); see patron.portal.cardtoken.verify and docs/portal.md.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.portal import cardtoken
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program

router = APIRouter(
    prefix="/api/v1", tags=["cards"], responses=responses(Unauthorized, Forbidden, Invalid)
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(
        min_length=1,
        max_length=cardtoken.TOKEN_MAX,
        description="What the card page's QR code says: PM1.<payload>.<signature>",
    )


class CardHolderOut(BaseModel):
    member_id: int
    card: str = Field(description="The card number")
    name: str
    tier: str | None = Field(description="The tier's code; none without a tier")
    tier_names: dict[str, str] = Field(description="The tier's name by language (ko, zh, en)")
    balance: int = Field(description="Spendable points now: available minus any debt")
    token_expires_at: datetime


@router.post(
    "/programs/{code}/cards/verify",
    response_model=CardHolderOut,
    responses=responses(NotFound, *cardtoken.REFUSALS),
    summary="Check a member card token (the card page's QR code) and say whose card it is",
)
def verify_card(
    body: VerifyRequest,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> CardHolderOut:
    def run(s):
        held = cardtoken.check(s, get_program(s, code), body.token, now=http.now())
        return CardHolderOut(
            member_id=held.member_id,
            card=held.number,
            name=held.name,
            tier=held.tier,
            tier_names=held.tier_names,
            balance=held.balance,
            token_expires_at=held.expires_at,
        )

    return http.read(db, run)
