"""Self sign-up over HTTP: a program's sign-up settings, and inviting a member to her page."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import (
    Conflict,
    Forbidden,
    Invalid,
    MemberBlocked,
    NotFound,
    Unauthorized,
    responses,
)
from patron.portal import signup
from patron.portal.web import send_code
from patron.programs import service
from patron.programs.schemas import CODE_PATTERN

router = APIRouter(
    prefix="/api/v1",
    tags=["programs"],
    responses=responses(Unauthorized, Forbidden, Invalid, NotFound),
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
MemberId = Path(ge=1, le=2**53, description="The member's id")


class InvitationOut(BaseModel):
    member_id: int
    channel: str = Field(description="email if she has an e-mail address, else sms")
    url: str = Field(description="The member page the invitation links to")


@router.get("/programs/{code}/enrollment", response_model=signup.SignupSettings)
def get_enrollment(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> signup.SignupSettings:
    return http.read(db, lambda s: signup.get(s, service.get_program(s, code)))


@router.put("/programs/{code}/enrollment", response_model=signup.SignupSettings)
def put_enrollment(
    body: signup.SignupSettings,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    return http.write(
        db,
        lambda s: signup.save(s, service.get_program(s, code), body, actor=actor, now=http.now()),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, **body.model_dump(mode="json")},
    )


@router.post(
    "/programs/{code}/members/{member_id}/invitation",
    status_code=202,
    response_model=InvitationOut,
    responses=responses(Conflict, MemberBlocked, signup.RateLimited),
)
def invite_member(
    code: str = ProgramCode,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("pos")),
    idempotency_key: str | None = http.IdempotencyKey,
) -> JSONResponse:
    """Send the member a message (e-mail, else SMS, in her language) with the link to her
    member page. At most one per member an hour: more answer 429 `rate_limited`."""
    url = signup.portal_url(code)
    sent: list[signup.Invitation] = []

    def run(s) -> InvitationOut:
        invitation = signup.invite(
            s, service.get_program(s, code), member_id, url=url, actor=actor, now=http.now()
        )
        sent.append(invitation)
        return InvitationOut(member_id=member_id, channel=invitation.channel, url=url)

    response = http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, "member": member_id, "invitation": True},
        status_code=202,
    )
    if sent:  # not on a replay: the first answer's message went already
        response.background = BackgroundTask(send_code, sent[0].message)
    return response
