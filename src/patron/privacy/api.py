"""Consent per purpose, the data-subject export, erasure and legal holds over HTTP.

Reading consents needs `read`; recording one `pos` (a till asks at the counter). Setting a
program's consent text version needs `admin`. Exports, erasures and holds need the `privacy`
scope (admin holds it too). Every route is under a program, so a key limited to programs acts
only there; an erasure by such a key is refused when the member is also in another program.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.members import service as members
from patron.privacy import consents, erasure
from patron.privacy import export as dsr
from patron.programs.models import Program
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program

router = APIRouter(
    prefix="/api/v1", tags=["privacy"], responses=responses(Unauthorized, Forbidden, Invalid)
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
MemberId = Path(ge=1, le=2**53)
Purpose = Literal["marketing_email", "marketing_sms", "profiling"]


class ConsentState(BaseModel):
    granted: bool
    at: datetime | None = Field(description="When the record in force was made (None: default)")
    source: str | None
    version: str | None = Field(description="The consent text version agreed to or withdrawn")


class ConsentRecordOut(BaseModel):
    purpose: str
    granted: bool
    at: datetime
    source: str
    version: str | None
    actor: str
    note: str | None


class ConsentsOut(BaseModel):
    member_id: int
    current: dict[str, ConsentState]
    history: list[ConsentRecordOut] = Field(description="Newest first")


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purposes: list[Purpose] = Field(min_length=1, max_length=3)
    granted: bool = Field(description="true: a grant; false: a withdrawal")
    source: Literal["till", "api", "portal", "admin", "import"] = "api"
    version: str | None = Field(
        None, max_length=40, description="The text version she saw; default: the program's current"
    )
    note: str | None = Field(None, max_length=500)


class ConsentTextOut(BaseModel):
    purpose: str
    version: str | None
    summary: str | None
    set_at: datetime | None
    set_by: str | None


class ConsentTextIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, max_length=40)
    summary: str | None = Field(None, max_length=500)


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=500)
    request_id: int | None = Field(
        None, ge=1, le=2**53, description="The member's own erasure request this carries out"
    )


class ErasureOut(BaseModel):
    erasure_id: int
    member_id: int
    cards: int
    messages: int
    audit_redacted: int
    requests_closed: int


class HoldOut(BaseModel):
    id: int
    reason: str
    placed_by: str
    placed_at: datetime
    released_at: datetime | None
    released_by: str | None
    release_reason: str | None
    open: bool


class RequestOut(BaseModel):
    id: int
    member_id: int
    kind: str
    status: str
    source: str
    reason: str | None
    requested_at: datetime


def _member_in(session: Any, code: str, member_id: int, actor: Actor) -> tuple[Program, Any]:
    program = get_program(session, code)
    member = members.get_member(session, member_id, actor=actor)
    if code not in [p.code for p in members.member_programs(session, member_id)]:
        raise NotFound(f"member {member_id} is not in program {code}", code="member_not_found")
    return program, member


def _consents_out(session: Any, member: Any) -> ConsentsOut:
    return ConsentsOut(
        member_id=member.id,
        current={k: ConsentState(**v) for k, v in consents.current(session, member).items()},
        history=[ConsentRecordOut(**consents.record_out(r)) for r in
                 consents.history(session, member.id)],
    )  # fmt: skip


@router.get(
    "/programs/{code}/members/{member_id}/privacy/consents",
    response_model=ConsentsOut,
    responses=responses(NotFound),
    summary="A member's consent per purpose (with text version) and every change",
)
def get_consents(
    code: str = ProgramCode,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("read", "pos")),
) -> ConsentsOut:
    return http.read(db, lambda s: _consents_out(s, _member_in(s, code, member_id, actor)[1]))


@router.post(
    "/programs/{code}/members/{member_id}/privacy/consents",
    response_model=ConsentsOut,
    responses=responses(NotFound, erasure.AlreadyErased),
    summary="Record a member granting or withdrawing consent to one or more purposes",
)
def post_consents(
    body: ConsentIn,
    code: str = ProgramCode,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("pos")),
) -> ConsentsOut:
    with db.unit_of_work() as session:
        program, member = _member_in(session, code, member_id, actor)
        consents.record(
            session, program, member, list(body.purposes), granted=body.granted,
            source=body.source, version=body.version, note=body.note, actor=actor,
            now=http.now(),
        )  # fmt: skip
        return _consents_out(session, member)


def _texts(session: Any, program: Program) -> list[ConsentTextOut]:
    return [
        ConsentTextOut(
            purpose=purpose,
            version=t.version if t else None,
            summary=t.summary if t else None,
            set_at=t.set_at if t else None,
            set_by=t.set_by if t else None,
        )
        for purpose, t in consents.current_versions(session, program.id).items()
    ]


@router.get(
    "/programs/{code}/consent-texts",
    response_model=list[ConsentTextOut],
    responses=responses(NotFound),
    summary="The program's current consent text version per purpose",
)
def get_texts(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> list[ConsentTextOut]:
    return http.read(db, lambda s: _texts(s, get_program(s, code)))


@router.put(
    "/programs/{code}/consent-texts/{purpose}",
    response_model=list[ConsentTextOut],
    responses=responses(NotFound),
    summary="Set the program's current consent text version for a purpose",
)
def put_text(
    body: ConsentTextIn,
    purpose: Purpose,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> list[ConsentTextOut]:
    with db.unit_of_work() as session:
        program = get_program(session, code)
        consents.set_version(
            session, program, purpose, body.version, summary=body.summary, actor=actor,
            now=http.now(),
        )  # fmt: skip
        return _texts(session, program)


@router.get(
    "/programs/{code}/members/{member_id}/privacy/export",
    response_class=Response,
    responses={
        200: {"content": {"application/zip": {}}, "description": "JSON files in a ZIP"},
        **responses(NotFound),
    },
    summary="Everything Patron holds on a member, as JSON files in a ZIP (audited)",
)
def get_export(
    code: str = ProgramCode,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("privacy")),
) -> Response:
    now = http.now()
    with db.unit_of_work() as session:
        program, member = _member_in(session, code, member_id, actor)
        data = dsr.build_zip(session, member, program=program, source="api", actor=actor, now=now)
        name = dsr.filename(member, now)
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _check_reach(session: Any, actor: Actor, member_id: int) -> None:
    if actor.programs is None:
        return
    outside = [
        p.code for p in members.member_programs(session, member_id) if not actor.reaches(p.code)
    ]
    if outside:
        raise Forbidden(
            f"member {member_id} is also in programs this key does not reach; erasing her "
            "needs a key without a program limit",
            code="program_not_allowed",
        )


@router.post(
    "/programs/{code}/members/{member_id}/privacy/erasure",
    response_model=ErasureOut,
    responses=responses(NotFound, erasure.LegalHoldOpen, erasure.AlreadyErased),
    summary="Erase a member's personal data; the ledger keeps every amount (audited)",
)
def post_erasure(
    body: ErasureIn,
    code: str = ProgramCode,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("privacy")),
) -> ErasureOut:
    with db.unit_of_work() as session:
        program, _member = _member_in(session, code, member_id, actor)
        _check_reach(session, actor, member_id)
        report = erasure.erase(
            session, member_id, program=program, reason=body.reason, source="api", actor=actor,
            now=http.now(), request_id=body.request_id,
        )  # fmt: skip
        return ErasureOut(**report.as_dict())


@router.get(
    "/programs/{code}/privacy/requests",
    response_model=list[RequestOut],
    responses=responses(NotFound),
    summary="Open erasure requests members filed on their member page, oldest first",
)
def get_requests(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("privacy")),
) -> list[RequestOut]:
    def run(s: Any) -> list[RequestOut]:
        program = get_program(s, code)
        return [
            RequestOut(id=r.id, member_id=r.member_id, kind=r.kind, status=r.status,
                       source=r.source, reason=r.reason, requested_at=r.requested_at)
            for r in erasure.open_requests(s, program.id)
        ]  # fmt: skip

    return http.read(db, run)


@router.get(
    "/programs/{code}/members/{member_id}/privacy/holds",
    response_model=list[HoldOut],
    responses=responses(NotFound),
    summary="Legal holds on a member's data, open and released",
)
def get_holds(
    code: str = ProgramCode,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("privacy")),
) -> list[HoldOut]:
    def run(s: Any) -> list[HoldOut]:
        _member_in(s, code, member_id, actor)
        return [HoldOut(**erasure.hold_out(h)) for h in erasure.holds(s, member_id)]

    return http.read(db, run)


@router.post(
    "/programs/{code}/members/{member_id}/privacy/holds",
    response_model=HoldOut,
    status_code=201,
    responses=responses(NotFound, erasure.AlreadyErased),
    summary="Place a legal hold on a member's data, with a reason: erasure is refused meanwhile",
)
def post_hold(
    body: ReasonIn,
    code: str = ProgramCode,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("privacy")),
) -> HoldOut:
    with db.unit_of_work() as session:
        program, _member = _member_in(session, code, member_id, actor)
        hold = erasure.place_hold(
            session, member_id, reason=body.reason, program_id=program.id, actor=actor,
            now=http.now(),
        )  # fmt: skip
        return HoldOut(**erasure.hold_out(hold))


@router.post(
    "/programs/{code}/members/{member_id}/privacy/holds/{hold_id}/release",
    response_model=HoldOut,
    responses=responses(NotFound, Conflict),
    summary="Release a legal hold, with a reason",
)
def release_hold(
    body: ReasonIn,
    code: str = ProgramCode,
    member_id: int = MemberId,
    hold_id: int = Path(ge=1, le=2**53),
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("privacy")),
) -> HoldOut:
    with db.unit_of_work() as session:
        _member_in(session, code, member_id, actor)
        hold = erasure.release_hold(
            session, member_id, hold_id, reason=body.reason, actor=actor, now=http.now()
        )
        return HoldOut(**erasure.hold_out(hold))
