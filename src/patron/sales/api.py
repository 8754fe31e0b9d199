"""The sale calls: quote, purchase (and the batch), refund, adjust, read a purchase."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import (
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InsufficientPoints,
    Invalid,
    MemberBlocked,
    NotFound,
    StoreNotAllowed,
    Unauthorized,
    responses,
)
from patron.fraud.errors import ContactNotVerified, VelocityExceeded
from patron.programs.models import Store
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program
from patron.sales import batch, purchases, wire
from patron.sales.schemas import (
    AdjustOut,
    AdjustRequest,
    BatchPurchaseRequest,
    BatchReport,
    PurchaseOut,
    QuoteOut,
    QuoteRequest,
    RefundOut,
    RefundRequest,
)

router = APIRouter(
    prefix="/api/v1", tags=["points"], responses=responses(Unauthorized, Forbidden, Invalid)
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
MemberId = Path(ge=1, le=2**53)
ExternalId = Path(min_length=1, max_length=120, description="The order id the till sent")


@router.post(
    "/programs/{code}/quote",
    response_model=QuoteOut,
    responses=responses(NotFound, MemberBlocked, InsufficientPoints),
    summary="What a basket would earn, and the most points it can take; changes nothing",
)
def quote(
    body: QuoteRequest,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("pos")),
) -> QuoteOut:
    return http.read(db, lambda s: purchases.quote(s, get_program(s, code), body, now=http.now()))


# The body is read by `wire` (msgspec, then pydantic for what it does not take), so FastAPI
# does not parse it: the request body is declared here for /openapi.json as FastAPI would.
_PURCHASE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PurchaseRequest"}}
        },
    }
}


async def purchase(
    body: wire.Decoded = Depends(wire.read_purchase),
    code: str = ProgramCode,
    db: Database = Depends(http.database),
    actor: Actor = Depends(http.require("pos")),
    idempotency_key: str | None = http.IdempotencyKey,
) -> Response:
    # The same function as the till's direct route (patron.sales.till_route).
    return await wire.purchase(
        body, code, actor=actor, idempotency_key=idempotency_key, run=wire.in_transaction(db)
    )


router.add_api_route(
    "/programs/{code}/purchases",
    purchase,
    methods=["POST"],
    status_code=201,
    response_model=PurchaseOut,
    responses=responses(
        NotFound,
        MemberBlocked,
        InsufficientPoints,
        IdempotencyConflict,
        Conflict,
        StoreNotAllowed,
        ContactNotVerified,
        VelocityExceeded,
    ),
    summary="Record a sale: spend and earn points atomically (idempotent per external_id)",
    openapi_extra=_PURCHASE_BODY,
    # Reports a bad body together with a bad path or header, as FastAPI does.
    route_class_override=wire.PurchaseRoute,
)


@router.post(
    "/programs/{code}/purchases/batch",
    response_model=BatchReport,
    responses=responses(NotFound, StoreNotAllowed),
    summary="Record many sales at once (offline tills, migrations); idempotent per external_id",
    description="Purchases run in the given order, a few hundred per transaction: a purchase "
    "that fails (unknown member, insufficient points, …) writes nothing and is reported in "
    "`items` with its error code, and the others are recorded. A purchase sent before with the "
    "same body is reported as `replayed`.",
)
def purchase_batch(
    body: BatchPurchaseRequest,
    code: str = ProgramCode,
    db: Database = Depends(http.database),
    actor: Actor = Depends(http.require("pos")),
) -> Response:
    if actor.stores is not None:
        for item in body.purchases:
            http.check_store(actor, item.store)
    report = batch.ingest(db, code, body.purchases, actor=actor, now=http.now())
    # Serialised once by pydantic, not validated again against response_model: for 5,000
    # items that second pass cost as much as recording them.
    return Response(report.model_dump_json(), media_type="application/json")


@router.get(
    "/programs/{code}/purchases/{external_id}",
    response_model=PurchaseOut,
    responses=responses(NotFound),
)
def get_purchase(
    code: str = ProgramCode,
    external_id: str = ExternalId,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
):
    def run(s):
        row = purchases._existing_purchase(s, get_program(s, code).id, external_id)
        if row is None or row.response is None:
            raise NotFound(f"no purchase {external_id!r}", code="purchase_not_found")
        return row.response

    # The answer as the sale gave it (validated when it was made), not re-shaped: a sale
    # without coupons has no coupon fields.
    return JSONResponse(http.read(db, run))


@router.post(
    "/programs/{code}/purchases/{external_id}/refunds",
    status_code=201,
    response_model=RefundOut,
    responses=responses(NotFound, Conflict, IdempotencyConflict, StoreNotAllowed),
    summary="Refund all or part of a purchase (by amount or by lines)",
)
def refund(
    body: RefundRequest,
    code: str = ProgramCode,
    external_id: str = ExternalId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("pos")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    def run(s):
        program = get_program(s, code)
        if actor.stores is not None:
            _check_sale_store(s, actor, program.id, external_id)
        return purchases.refund(s, program, external_id, body, actor=actor, now=http.now())

    return http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"program": code, "purchase": external_id, **body.model_dump(mode="json")},
        status_code=201,
    )


@router.post(
    "/programs/{code}/adjustments",
    status_code=201,
    response_model=AdjustOut,
    responses=responses(NotFound, InsufficientPoints, IdempotencyConflict),
    summary="Add or remove points by hand, with a reason",
)
def adjust(
    body: AdjustRequest,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    return http.write(
        db,
        lambda s: purchases.adjust(s, get_program(s, code), body, actor=actor, now=http.now()),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"program": code, **body.model_dump(mode="json")},
        status_code=201,
    )


def _check_sale_store(s: Session, actor: Actor, program_id: int, external_id: str) -> None:
    """A key limited to stores refunds only the sales made at them."""
    sale = purchases._existing_purchase(s, program_id, external_id)
    if sale is None:
        return  # the refund answers 404 itself
    store = s.get(Store, sale.store_id) if sale.store_id is not None else None
    http.check_store(actor, store.code if store is not None else None)
