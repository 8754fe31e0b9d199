"""Program setup over the API: programs (created, read, changed) and their stores. Creating a
program and changing its earning write its rule set too (`setup.service`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.programs import service as programs
from patron.programs.schemas import (
    CODE_PATTERN,
    ProgramCreate,
    ProgramOut,
    ProgramUpdate,
    StoreCreate,
    StoreOut,
)
from patron.setup import service as setup

router = APIRouter(
    prefix="/api/v1", tags=["programs"], responses=responses(Unauthorized, Forbidden, Invalid)
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")


@router.post("/programs", status_code=201, response_model=ProgramOut, responses=responses(Conflict))
def create_program(
    body: ProgramCreate,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    return http.write(
        db,
        lambda s: programs.to_out(setup.create_program(s, body, actor=actor, now=http.now())),
        actor=actor,
        idempotency_key=idempotency_key,
        payload=body.model_dump(mode="json"),
        status_code=201,
    )


@router.get("/programs", response_model=list[ProgramOut])
def list_programs(
    db: Database = Depends(http.get_db), actor: Actor = Depends(http.require("read", "pos"))
) -> list[ProgramOut]:
    """Every program; for a key limited to programs, those."""
    return http.read(
        db,
        lambda s: [programs.to_out(p) for p in programs.list_programs(s) if actor.reaches(p.code)],
    )


@router.get("/programs/{code}", response_model=ProgramOut, responses=responses(NotFound))
def get_program(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> ProgramOut:
    return http.read(db, lambda s: programs.to_out(programs.get_program(s, code)))


@router.patch("/programs/{code}", response_model=ProgramOut, responses=responses(NotFound))
def update_program(
    body: ProgramUpdate,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    return http.write(
        db,
        lambda s: programs.to_out(
            setup.update_program(
                s, programs.get_program(s, code), body, actor=actor, now=http.now()
            )
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, **body.model_dump(mode="json", exclude_unset=True)},
    )


@router.post(
    "/programs/{code}/stores",
    status_code=201,
    response_model=StoreOut,
    responses=responses(NotFound, Conflict),
)
def create_store(
    body: StoreCreate,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    def run(s):
        store = programs.create_store(
            s, programs.get_program(s, code), body, actor=actor, now=http.now()
        )
        return StoreOut(code=store.code, name=store.name, active=store.active)

    return http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"program": code, **body.model_dump(mode="json")},
        status_code=201,
    )


@router.get("/programs/{code}/stores", response_model=list[StoreOut], responses=responses(NotFound))
def list_stores(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> list[StoreOut]:
    return http.read(
        db,
        lambda s: [
            StoreOut(code=x.code, name=x.name, active=x.active)
            for x in programs.list_stores(s, programs.get_program(s, code))
        ],
    )
