"""GET …/wallet.pkpass: the member's card as an Apple Wallet pass."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from patron import http
from patron.audit.service import Actor
from patron.config import get_settings
from patron.db.engine import Database
from patron.errors import Forbidden, NotFound, Unauthorized, responses
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program
from patron.wallet import pkpass, service

router = APIRouter(prefix="/api/v1", tags=["wallet"], responses=responses(Unauthorized, Forbidden))
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
MemberId = Path(ge=1, le=2**53)


@router.get(
    "/programs/{code}/members/{member_id}/wallet.pkpass",
    responses={
        **responses(NotFound, pkpass.WalletNotConfigured, service.NoActiveCard),
        200: {"content": {pkpass.MEDIA_TYPE: {}}, "description": "The signed .pkpass file"},
    },
    response_class=Response,
    summary="The member's card as an Apple Wallet pass (balance, tier, QR of the card number)",
    description="Signed with the certificate in the `PATRON_WALLET_*` settings; answers 409 "
    "`wallet_not_configured` until they are set (docs/wallet.md). The pass is a snapshot: "
    "download it again for a fresh balance.",
)
def wallet_pass(
    code: str = ProgramCode,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> Response:
    signer = pkpass.load_signer(get_settings())
    card = http.read(
        db, lambda s: service.pass_card(s, get_program(s, code), member_id, now=http.now())
    )
    return Response(
        pkpass.build_pass(card, signer),
        media_type=pkpass.MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{code}-member-{member_id}.pkpass"'},
    )
