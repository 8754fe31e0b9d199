"""The outbox and the delivery log over HTTP: list events, list deliveries, replay, cancel."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Path, Query

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.events import service
from patron.events.schemas import DeliveryOut, DeliveryPage, EventPage
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program

router = APIRouter(
    prefix="/api/v1", tags=["events"], responses=responses(Unauthorized, Forbidden, Invalid)
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
Id = Path(ge=1, le=2**53)


@router.get(
    "/programs/{code}/events",
    response_model=EventPage,
    responses=responses(NotFound),
    summary="The program's events, oldest first (the outbox as a feed)",
)
def list_events(
    code: str = ProgramCode,
    member_id: int | None = Query(None, ge=1, le=2**53),
    type: str | None = Query(None, max_length=60, description="e.g. points.earned"),
    since: datetime | None = Query(None, description="Events at or after this instant"),
    until: datetime | None = Query(None, description="Events before this instant"),
    cursor: str | None = Query(None, max_length=40),
    limit: int = Query(100, ge=1, le=500),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> EventPage:
    for value, name in ((since, "since"), (until, "until")):
        if value is not None and value.tzinfo is None:
            raise Invalid(f"{name} needs a timezone, e.g. 2026-12-01T00:00:00+09:00")

    def run(s):
        items, nxt = service.list_events(
            s,
            get_program(s, code),
            member_id=member_id,
            kind=type,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        )
        return EventPage(items=items, next_cursor=nxt)

    return http.read(db, run)


@router.get(
    "/programs/{code}/deliveries",
    response_model=DeliveryPage,
    responses=responses(NotFound),
    summary="Messages and webhook calls, newest first, each with its tries (admin: they hold "
    "members' addresses and webhook URLs)",
)
def list_deliveries(
    code: str = ProgramCode,
    member_id: int | None = Query(None, ge=1, le=2**53),
    status: str | None = Query(None, max_length=20),
    channel: str | None = Query(None, pattern="^(webhook|email|sms|log)$"),
    endpoint_id: int | None = Query(None, ge=1, le=2**53),
    type: str | None = Query(None, max_length=60),
    cursor: str | None = Query(None, max_length=40),
    limit: int = Query(50, ge=1, le=200),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("admin")),
) -> DeliveryPage:
    def run(s):
        rows, nxt = service.list_deliveries(
            s,
            get_program(s, code),
            member_id=member_id,
            status=status,
            channel=channel,
            endpoint_id=endpoint_id,
            kind=type,
            cursor=cursor,
            limit=limit,
        )
        log = service.attempts_of(s, [r.id for r in rows])
        return DeliveryPage(
            items=[service.delivery_out(r, log[r.id]) for r in rows], next_cursor=nxt
        )

    return http.read(db, run)


@router.get(
    "/programs/{code}/deliveries/{delivery_id}",
    response_model=DeliveryOut,
    responses=responses(NotFound),
)
def get_delivery(
    code: str = ProgramCode,
    delivery_id: int = Id,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("admin")),
) -> DeliveryOut:
    def run(s):
        row = service.get_delivery(s, get_program(s, code), delivery_id)
        return service.delivery_out(row, service.attempts_of(s, [row.id])[row.id])

    return http.read(db, run)


@router.post(
    "/programs/{code}/deliveries/{delivery_id}/replay",
    response_model=DeliveryOut,
    responses=responses(NotFound, Conflict),
    summary="Send a dead, skipped, cancelled or delivered message again",
)
def replay(
    code: str = ProgramCode,
    delivery_id: int = Id,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    return http.write(
        db,
        lambda s: service.delivery_out(
            service.replay(s, get_program(s, code), delivery_id, actor=actor, now=http.now())
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"program": code, "replay": delivery_id},
    )


@router.post(
    "/programs/{code}/deliveries/{delivery_id}/cancel",
    response_model=DeliveryOut,
    responses=responses(NotFound, Conflict),
    summary="Stop a message that has not gone out yet",
)
def cancel(
    code: str = ProgramCode,
    delivery_id: int = Id,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    return http.write(
        db,
        lambda s: service.delivery_out(
            service.cancel(s, get_program(s, code), delivery_id, actor=actor, now=http.now())
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"program": code, "cancel": delivery_id},
    )
