"""Tier read endpoints: a member's progress, the near-miss report and the threshold what-if."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.ledger.views import get_account
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program
from patron.tiers import progress as tier_progress
from patron.tiers import reports
from patron.tiers.progress import ProgressOut, TiersNotConfigured
from patron.tiers.reports import NearMissOut, WhatIfOut, WhatIfRequest

router = APIRouter(
    prefix="/api/v1", tags=["tiers"], responses=responses(Unauthorized, Forbidden, Invalid)
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
MemberId = Path(ge=1, le=2**53)
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/json": {}, "text/csv": {}},
        "description": "The report as JSON, or as CSV with format=csv",
    }
}


@router.get(
    "/programs/{code}/members/{member_id}/tier",
    response_model=ProgressOut,
    responses=responses(NotFound, TiersNotConfigured),
    summary="A member's tier, the metric so far in this window, and what it takes to "
    "reach the next tier or keep the current one",
)
def member_tier(
    code: str = ProgramCode,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> ProgressOut:
    def run(s):
        program = get_program(s, code)
        return tier_progress.progress(s, program, get_account(s, program, member_id), http.now())

    return http.read(db, run)


@router.get(
    "/programs/{code}/tiers/near-miss",
    response_model=NearMissOut,
    responses={**responses(NotFound, TiersNotConfigured), **CSV_RESPONSE},
    summary="Members just below the next tier in the current or the last window",
)
def near_miss(
    code: str = ProgramCode,
    window: Literal["current", "last"] = Query("current", description="current or last window"),
    within: int | None = Query(
        None,
        ge=0,
        le=10**15,
        description="At most this much below, in the metric's unit "
        "(points, minor currency units or purchases)",
    ),
    within_percent: Decimal | None = Query(
        None,
        ge=0,
        le=100,
        max_digits=7,
        decimal_places=4,
        description="At most this % of the threshold below",
    ),
    format: Literal["json", "csv"] = Query("json"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
):
    report = http.read(
        db,
        lambda s: reports.near_miss(
            s,
            get_program(s, code),
            window=window,
            now=http.now(),
            within=within,
            within_percent=within_percent,
        ),
    )
    if format == "csv":
        name = f"{code}-near-miss-{report.window.key}"
        return Response(
            reports.near_miss_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return report


@router.post(
    "/programs/{code}/tiers/what-if",
    response_model=WhatIfOut,
    responses=responses(NotFound, TiersNotConfigured),
    summary="Members per tier under proposed thresholds (last complete window) vs today; "
    "changes nothing",
)
def what_if(
    body: WhatIfRequest,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> WhatIfOut:
    return http.read(db, lambda s: reports.what_if(s, get_program(s, code), body, now=http.now()))
