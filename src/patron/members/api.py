from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import RedirectResponse

from patron import http
from patron.audit import service as audit
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.members import service
from patron.members.schemas import (
    BlockRequest,
    CardIn,
    CardOut,
    CardStatusUpdate,
    ChangeOut,
    Enrollment,
    MemberCreate,
    MemberOut,
    MemberPage,
    MemberRef,
    MemberUpdate,
)
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program

router = APIRouter(
    prefix="/api/v1", tags=["members"], responses=responses(Unauthorized, Forbidden, Invalid)
)
MemberId = Path(ge=1, le=2**53, description="The member's id")
ProgramQuery = Query(
    None, pattern=CODE_PATTERN, description="Program whose country reads local phone numbers"
)


@router.post(
    "/members", status_code=201, response_model=MemberOut, responses=responses(Conflict, NotFound)
)
def create_member(
    body: MemberCreate,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("pos")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    if actor.programs is not None and body.program is None:
        raise Invalid(
            "this key is limited to programs: name the program to enroll the member in",
            code="program_required",
        )
    if body.program is not None and not actor.reaches(body.program):
        raise Forbidden(f"this key is not for program {body.program}", code="program_not_allowed")

    def run(s):
        program = get_program(s, body.program) if body.program else None
        member = service.create_member(s, body, program=program, actor=actor, now=http.now())
        return service.to_out(s, member)

    return http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload=body.model_dump(mode="json"),
        status_code=201,
    )


@router.get("/members", response_model=MemberPage, responses=responses(NotFound))
def list_members(
    program: str | None = Query(
        None, pattern=CODE_PATTERN, description="Only members of this program"
    ),
    q: str | None = Query(None, max_length=100, description="Part of the name"),
    phone: str | None = Query(None, max_length=30),
    email: str | None = Query(None, max_length=254),
    card: str | None = Query(None, max_length=40),
    status: Literal["active", "blocked"] | None = None,
    cursor: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=500),
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("read", "pos")),
) -> MemberPage:
    if actor.programs is not None:
        if program is None and len(actor.programs) == 1:
            program = next(iter(actor.programs))
        elif program is None:
            raise Invalid(
                "this key is limited to programs: list one of them with ?program=",
                code="program_required",
            )
        elif not actor.reaches(program):
            raise Forbidden(f"this key is not for program {program}", code="program_not_allowed")

    def run(s):
        prog = get_program(s, program) if program else None
        rows, nxt = service.list_members(
            s,
            program=prog,
            q=q,
            phone=phone,
            email=email,
            card=card,
            status=status,
            cursor=cursor,
            limit=limit,
        )
        return MemberPage(items=[service.to_out(s, m) for m in rows], next_cursor=nxt)

    return http.read(db, run)


@router.get("/members/lookup", response_model=MemberOut, responses=responses(NotFound, Conflict))
def lookup_member(
    card: str | None = Query(None, min_length=1, max_length=40),
    phone: str | None = Query(None, min_length=3, max_length=30),
    email: str | None = Query(None, min_length=3, max_length=254),
    id: int | None = Query(None, ge=1, le=2**53),
    program: str | None = ProgramQuery,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("read", "pos")),
) -> MemberOut:
    try:
        ref = MemberRef(id=id, card=card, phone=phone, email=email)
    except ValueError:
        raise Invalid(
            "give exactly one of card, phone, email or id", code="invalid_lookup"
        ) from None

    def run(s):
        prog = get_program(s, program) if program else None
        member = service.find_member(s, ref, program=prog)
        return service.to_out(s, service.get_member(s, member.id, actor=actor))

    return http.read(db, run)


@router.get(
    "/members/{member_id}",
    response_model=MemberOut,
    responses={
        **responses(NotFound),
        308: {"description": "The member was merged: Location names the surviving member"},
    },
)
def get_member(
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("read", "pos")),
) -> Any:
    def run(s):
        member = service.get_member(s, member_id, actor=actor)
        if member.status == "merged" and member.merged_into is not None:
            # docs/moves.md: a merged member's id answers with the survivor's address.
            return RedirectResponse(f"/api/v1/members/{member.merged_into}", status_code=308)
        return service.to_out(s, member)

    return http.read(db, run)


@router.patch(
    "/members/{member_id}", response_model=MemberOut, responses=responses(NotFound, Conflict)
)
def update_member(
    body: MemberUpdate,
    member_id: int = MemberId,
    program: str | None = ProgramQuery,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    def run(s):
        prog = get_program(s, program) if program else None
        member = service.update_member(
            s,
            service.get_member(s, member_id, actor=actor),
            body,
            program=prog,
            actor=actor,
            now=http.now(),
        )
        return service.to_out(s, member)

    return http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"member": member_id, **body.model_dump(mode="json", exclude_unset=True)},
    )


def _status_route(status: str):
    def change(
        body: BlockRequest,
        member_id: int = MemberId,
        db: Database = Depends(http.get_db),
        actor: Actor = Depends(http.require("admin")),
        idempotency_key: str | None = http.IdempotencyKey,
    ):
        def run(s):
            member = service.set_status(
                s,
                service.get_member(s, member_id, actor=actor),
                status,
                reason=body.reason,
                actor=actor,
                now=http.now(),
            )
            return service.to_out(s, member)

        return http.write(
            db,
            run,
            actor=actor,
            idempotency_key=idempotency_key,
            payload={"member": member_id, "status": status, **body.model_dump()},
        )

    return change


router.add_api_route(
    "/members/{member_id}/block",
    _status_route("blocked"),
    methods=["POST"],
    response_model=MemberOut,
    responses=responses(NotFound),
    summary="Block a member: no earning or redeeming until unblocked",
)
router.add_api_route(
    "/members/{member_id}/unblock",
    _status_route("active"),
    methods=["POST"],
    response_model=MemberOut,
    responses=responses(NotFound),
    summary="Unblock a member",
)


@router.post(
    "/members/{member_id}/cards",
    status_code=201,
    response_model=CardOut,
    responses=responses(NotFound, Conflict),
)
def add_card(
    body: CardIn,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("pos")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    def run(s):
        card = service.add_card(
            s, service.get_member(s, member_id, actor=actor), body, actor=actor, now=http.now()
        )
        return CardOut(
            number=card.number, kind=card.kind, status=card.status, created_at=card.created_at
        )

    return http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"member": member_id, **body.model_dump()},
        status_code=201,
    )


@router.patch("/cards/{number}", response_model=CardOut, responses=responses(NotFound))
def update_card(
    body: CardStatusUpdate,
    number: str = Path(min_length=4, max_length=40, pattern=r"^[A-Za-z0-9-]+$"),
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    def run(s):
        card = service.set_card_status(s, number, body.status, actor=actor, now=http.now())
        return CardOut(
            number=card.number, kind=card.kind, status=card.status, created_at=card.created_at
        )

    return http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"card": number, **body.model_dump()},
    )


@router.post(
    "/members/{member_id}/programs",
    status_code=201,
    response_model=MemberOut,
    responses=responses(NotFound, Conflict),
)
def enroll(
    body: Enrollment,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("pos")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    if not actor.reaches(body.program):
        raise Forbidden(f"this key is not for program {body.program}", code="program_not_allowed")

    def run(s):
        member = service.get_member(s, member_id, actor=actor)
        service.enroll(s, member, get_program(s, body.program), actor=actor, now=http.now())
        return service.to_out(s, member)

    return http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"member": member_id, **body.model_dump()},
        status_code=201,
    )


@router.get(
    "/members/{member_id}/changes", response_model=list[ChangeOut], responses=responses(NotFound)
)
def member_changes(
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("read")),
) -> list[ChangeOut]:
    def run(s):
        service.get_member(s, member_id, actor=actor)
        return [
            ChangeOut(at=r.at, actor=r.actor, action=r.action, before=r.before, after=r.after)
            for r in audit.history(s, subject_type="member", subject_id=member_id)
        ]

    return http.read(db, run)
