from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from patron import http
from patron.audit.service import Actor
from patron.config import get_settings
from patron.db.engine import Database
from patron.errors import (
    Forbidden,
    Invalid,
    NotFound,
    Unauthorized,
    responses,
)
from patron.ledger import jobs, views
from patron.ledger.schemas import AccountOut, EntryKind, EntryPage, ExpireOut, ExpireRequest, LotOut
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program

router = APIRouter(
    prefix="/api/v1", tags=["points"], responses=responses(Unauthorized, Forbidden, Invalid)
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
MemberId = Path(ge=1, le=2**53)
ExternalId = Path(min_length=1, max_length=120, description="The order id the till sent")


@router.get(
    "/programs/{code}/members/{member_id}/account",
    response_model=AccountOut,
    responses=responses(NotFound),
)
def account(
    code: str = ProgramCode,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> AccountOut:
    def run(s):
        program = get_program(s, code)
        acc = views.get_account(s, program, member_id)
        at = http.now()
        return AccountOut(
            program=code, member_id=member_id, totals=views.totals(s, acc, at), as_of=at
        )

    return http.read(db, run)


DateFrom = Query(None, alias="from", description="First local date (YYYY-MM-DD), inclusive")
DateTo = Query(None, alias="to", description="Last local date (YYYY-MM-DD), inclusive")
Kinds = Query(None, description="Only these kinds")


@router.get(
    "/programs/{code}/members/{member_id}/entries",
    response_model=EntryPage,
    responses=responses(NotFound),
)
def entries(
    code: str = ProgramCode,
    member_id: int = MemberId,
    date_from: date | None = DateFrom,
    date_to: date | None = DateTo,
    kind: list[EntryKind] | None = Kinds,
    cursor: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=500),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> EntryPage:
    def run(s):
        program = get_program(s, code)
        acc = views.get_account(s, program, member_id)
        lo, hi = views.local_day_bounds(program, date_from, date_to)
        rows, nxt = views.history(
            s, acc, lo=lo, hi=hi, kinds=list(kind) if kind else None, cursor=cursor, limit=limit
        )
        stores = views.store_codes(s, program.id)
        return EntryPage(items=[views.entry_out(e, stores) for e in rows], next_cursor=nxt)

    return http.read(db, run)


@router.get(
    "/programs/{code}/members/{member_id}/entries/export",
    responses={
        **responses(NotFound),
        200: {
            "content": {
                "text/csv": {},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
            },
            "description": "The history as a file",
        },
    },
    response_class=Response,
)
def export_entries(
    code: str = ProgramCode,
    member_id: int = MemberId,
    format: Literal["csv", "xlsx"] = Query("csv"),
    date_from: date | None = DateFrom,
    date_to: date | None = DateTo,
    kind: list[EntryKind] | None = Kinds,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> Response:
    def run(s):
        program = get_program(s, code)
        acc = views.get_account(s, program, member_id)
        lo, hi = views.local_day_bounds(program, date_from, date_to)
        return views.export_rows(s, program, acc, lo=lo, hi=hi, kinds=list(kind) if kind else None)

    rows = http.read(db, run)
    name = f"{code}-member-{member_id}-history"
    if format == "xlsx":
        return Response(
            views.to_xlsx(rows, title=f"member {member_id}"),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    return Response(
        views.to_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get(
    "/programs/{code}/members/{member_id}/lots",
    response_model=list[LotOut],
    responses=responses(NotFound),
)
def member_lots(
    code: str = ProgramCode,
    member_id: int = MemberId,
    expiring_within_days: int | None = Query(None, ge=1, le=3660),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> list[LotOut]:
    def run(s):
        acc = views.get_account(s, get_program(s, code), member_id)
        return views.lots(s, acc, now=http.now(), expiring_within_days=expiring_within_days)

    return http.read(db, run)


@router.post(
    "/expire",
    response_model=ExpireOut,
    tags=["operations"],
    summary="Expire every lot past its date and release matured pending points",
)
def expire(
    body: ExpireRequest,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> ExpireOut:
    report = jobs.run_expiry(
        db,
        http.now(),
        dry_run=body.dry_run,
        actor=str(actor),
        batch_size=get_settings().job_batch_size,
        idempotency_ttl=timedelta(hours=get_settings().idempotency_ttl_hours),
    )
    return ExpireOut(**report.__dict__)
