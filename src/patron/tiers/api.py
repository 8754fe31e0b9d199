"""Tier writes: setup, manual changes, history and the period evaluation."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Response
from sqlalchemy.orm import Session

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    StaleVersion,
    Unauthorized,
    responses,
)
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program
from patron.tiers import jobs, service
from patron.tiers.schemas import (
    EvaluateRequest,
    EvaluationSummary,
    ManualTierRequest,
    MemberTierOut,
    TierChangeOut,
    TierSetup,
    TierSetupOut,
)

router = APIRouter(
    prefix="/api/v1", tags=["tiers"], responses=responses(Unauthorized, Forbidden, Invalid)
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
MemberId = Path(ge=1, le=2**53)


@router.put(
    "/programs/{code}/tiers",
    response_model=TierSetupOut,
    responses=responses(NotFound, StaleVersion),
    summary="Replace the program's tiers and tier policy",
)
def put_tiers(
    body: TierSetup,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
    if_match: str | None = http.IfMatch,
):
    base = http.if_match(if_match)
    return http.write(
        db,
        lambda s: service.set_tiers(
            s, get_program(s, code), body, actor=actor, now=http.now(), expected_version=base
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"program": code, "if_match": base, **body.model_dump(mode="json")},
    )


@router.get("/programs/{code}/tiers", response_model=TierSetupOut, responses=responses(NotFound))
def get_tiers(
    response: Response,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> TierSetupOut:
    """The ETag header fingerprints this setup: send it back as If-Match with a PUT made from
    it, and a change by someone else in between is refused (409 stale_version)."""

    def run(s: Session) -> tuple[TierSetupOut, str]:
        program = get_program(s, code)
        return service.tier_setup(s, program), service.setup_version(s, program)

    out, version = http.read(db, run)
    response.headers["ETag"] = http.etag(version)
    return out


@router.post(
    "/programs/{code}/members/{member_id}/tier",
    response_model=MemberTierOut,
    responses=responses(NotFound),
    summary="Set a member's tier by hand (an appeal), with a reason",
)
def set_member_tier(
    body: ManualTierRequest,
    code: str = ProgramCode,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    return http.write(
        db,
        lambda s: service.set_manual(
            s, get_program(s, code), member_id, body, actor=actor, now=http.now()
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"program": code, "member_id": member_id, **body.model_dump(mode="json")},
    )


@router.get(
    "/programs/{code}/members/{member_id}/tier-history",
    response_model=list[TierChangeOut],
    responses=responses(NotFound),
)
def tier_history(
    code: str = ProgramCode,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> list[TierChangeOut]:
    return http.read(db, lambda s: service.history(s, get_program(s, code), member_id))


@router.post(
    "/programs/{code}/tiers/evaluate",
    response_model=EvaluationSummary,
    responses=responses(NotFound, Conflict),
    tags=["operations"],
    summary="Evaluate the last ended window for every member (idempotent, resumable)",
)
def evaluate(
    body: EvaluateRequest,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> EvaluationSummary:
    now = http.now()

    def timezone(s):
        return get_program(s, code).timezone

    as_of = jobs.as_of_instant(body.as_of, http.read(db, timezone), now)
    if as_of > now:
        raise Invalid("as_of is in the future", code="as_of_in_future")
    # The job commits batch by batch (it is the unit of work), so it gets the database.
    return jobs.evaluate(db, code, as_of, dry_run=body.dry_run, actor=actor, now=now)
