"""Milestones over HTTP: goals (admin scope to change), a member's progress (read or pos), and
running the evaluation now (admin)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.milestones import jobs, service
from patron.milestones.schemas import CODE, MilestoneIn, MilestoneOut, ProgressOut, RunOut
from patron.programs import service as programs
from patron.programs.schemas import CODE_PATTERN

router = APIRouter(
    prefix="/api/v1",
    tags=["milestones"],
    responses=responses(Unauthorized, Forbidden, Invalid, NotFound, service.MilestoneNotFound),
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
MilestoneCode = Path(pattern=CODE, description="The milestone's code, e.g. ten-visits")
MemberId = Path(ge=1, le=2**53)


@router.get("/programs/{code}/milestones", response_model=list[MilestoneOut])
def list_milestones(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> list[MilestoneOut]:
    """The program's goals, each with how many members achieved it."""

    def run(s) -> list[MilestoneOut]:
        program = programs.get_program(s, code)
        counts = service.achievers(s, program)
        return [service.out(r, counts.get(r.id, 0)) for r in service.list_milestones(s, program)]

    return http.read(db, run)


@router.post(
    "/programs/{code}/milestones",
    response_model=MilestoneOut,
    status_code=201,
    responses=responses(Conflict),
)
def create_milestone(
    body: MilestoneIn,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """A new goal. 409 milestone_exists; 422 unknown_store, unknown_reward."""
    return http.write(
        db,
        lambda s: service.out(
            service.create(s, programs.get_program(s, code), body, actor=actor, now=http.now()), 0
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, **body.model_dump(mode="json")},
        status_code=201,
    )


@router.get("/programs/{code}/milestones/{milestone}", response_model=MilestoneOut)
def get_milestone(
    code: str = ProgramCode,
    milestone: str = MilestoneCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> MilestoneOut:
    def run(s) -> MilestoneOut:
        program = programs.get_program(s, code)
        row = service.get_milestone(s, program, milestone)
        return service.out(row, service.achievers(s, program).get(row.id, 0))

    return http.read(db, run)


@router.put(
    "/programs/{code}/milestones/{milestone}",
    response_model=MilestoneOut,
    responses=responses(Conflict),
)
def put_milestone(
    body: MilestoneIn,
    code: str = ProgramCode,
    milestone: str = MilestoneCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """Replace a goal. Once achieved, its kind, target, stores and window are fixed (409
    milestone_achieved); names, descriptions, reward and status may change."""
    return http.write(
        db,
        lambda s: service.out(
            service.replace(
                s, programs.get_program(s, code), milestone, body, actor=actor, now=http.now()
            )
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, "milestone": milestone, **body.model_dump(mode="json")},
    )


@router.delete("/programs/{code}/milestones/{milestone}", response_model=MilestoneOut)
def archive_milestone(
    code: str = ProgramCode,
    milestone: str = MilestoneCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
):
    """Archive the goal: no longer evaluated; achieved badges stay."""
    return http.write(
        db,
        lambda s: service.out(
            service.archive(
                s, programs.get_program(s, code), milestone, actor=actor, now=http.now()
            )
        ),
        actor=actor,
        idempotency_key=None,
        payload=None,
    )


@router.post("/programs/{code}/milestones/run", response_model=RunOut)
def run_milestones(
    code: str = ProgramCode,
    milestone: str | None = Query(None, pattern=CODE, description="Only this goal"),
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> RunOut:
    """Evaluate the goals now (the worker does it hourly): awards what is new, once."""
    with db.unit_of_work(readonly=True) as s:
        program = programs.get_program(s, code)
        if milestone is not None:
            service.get_milestone(s, program, milestone)
    return jobs.run_program(db, code, now=http.now(), actor=actor, only=milestone)


@router.get(
    "/programs/{code}/members/{member_id}/milestones",
    response_model=ProgressOut,
    summary="A member's goals: progress in the current period and the badges achieved",
)
def member_milestones(
    code: str = ProgramCode,
    member_id: int = MemberId,
    lang: Literal["ko", "zh", "en"] = Query("en", description="Language of name/description"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> ProgressOut:
    return http.read(
        db,
        lambda s: service.progress(
            s, programs.get_program(s, code), member_id, now=http.now(), language=lang
        ),
    )
