"""The member card: its QR codes to show at the till (a signed token that lives a few minutes,
or the plain card number), and the Apple Wallet pass."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from patron import clock
from patron.config import get_settings
from patron.errors import NotFound
from patron.members.models import Card
from patron.portal import cardtoken
from patron.portal.templating import render
from patron.portal.web import (
    ProgramCode,
    Viewer,
    current_viewer,
    get_db,
    qr_svg,
)
from patron.programs.models import Program
from patron.wallet import pkpass
from patron.wallet import service as wallet_service

router = APIRouter(prefix="/{program}")


@router.get("/card", name="card")
def card(
    request: Request,
    program: str = ProgramCode,
    viewer: Viewer = Depends(current_viewer),
    plain: bool = Query(False, description="Only the card number's QR code, for older tills"),
) -> Response:
    """By default the signed token's QR code (made afresh on every visit), with the card
    number's under it (folded away; portal.js unfolds it offline and on the service worker's kept copy)."""
    now = clock.now()
    token = None
    with get_db(request).unit_of_work(readonly=True) as session:
        number = session.scalar(
            select(Card.number)
            .where(Card.member_id == viewer.member_id, Card.status == "active")
            .order_by(Card.id)
            .limit(1)
        )
        if number is not None and not plain:
            the_program = session.get(Program, viewer.program.id)
            assert the_program is not None
            token = cardtoken.make(session, the_program, number, now=now)
    lifetime = int(cardtoken.LIFETIME.total_seconds())
    return render(request, "card.html", viewer=viewer, number=number,
                  qr=qr_svg(number, scale=8) if number else None, page="card",
                  token_qr=qr_svg(token, scale=4) if token else None,
                  token_seconds=lifetime,
                  token_minutes=lifetime // 60,
                  wallet=get_settings().wallet_enabled)  # fmt: skip


@router.get("/card/wallet.pkpass", name="wallet_pass")
def wallet_pass(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    """Her card as an Apple Wallet pass (404 until the instance has a pass certificate)."""
    if not get_settings().wallet_enabled:
        raise NotFound("Apple Wallet passes are not set up", code="wallet_not_configured")
    signer = pkpass.load_signer(get_settings())
    with get_db(request).unit_of_work(readonly=True) as session:
        the_program = session.get(Program, viewer.program.id)
        assert the_program is not None
        card = wallet_service.pass_card(session, the_program, viewer.member_id, now=clock.now())
    return Response(
        pkpass.build_pass(card, signer),
        media_type=pkpass.MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{viewer.program.code}.pkpass"'},
    )
