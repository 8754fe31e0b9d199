"""Notification settings, members' consent, and SMS replies (STOP keywords) over HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.members import consent
from patron.members import service as members
from patron.members.models import Member
from patron.members.phone import normalise_phone
from patron.notify import settings as notify_settings
from patron.notify.settings import NotifySettings
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program

router = APIRouter(
    prefix="/api/v1", tags=["notifications"], responses=responses(Unauthorized, Forbidden, Invalid)
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
MemberId = Path(ge=1, le=2**53)


@router.get(
    "/programs/{code}/notifications/settings",
    response_model=NotifySettings,
    responses=responses(NotFound),
    summary="Which events send a message, on which channels; quiet hours, cap, job schedule",
)
def get_settings_(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> NotifySettings:
    return http.read(db, lambda s: notify_settings.load(s, get_program(s, code).id))


@router.put(
    "/programs/{code}/notifications/settings",
    response_model=NotifySettings,
    responses=responses(NotFound),
)
def put_settings(
    body: NotifySettings,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    return http.write(
        db,
        lambda s: notify_settings.save(s, get_program(s, code), body, actor=actor, now=http.now()),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"program": code, **body.model_dump(mode="json")},
    )


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    granted: bool = Field(description="true: the member agrees to marketing messages")
    channels: list[Literal["email", "sms"]] = Field(
        default_factory=lambda: ["email", "sms"],  # type: ignore[arg-type]
        min_length=1,
        max_length=2,
    )
    source: Literal["api", "portal", "import", "enrollment"] = Field(
        "api", description="How the member gave or withdrew it"
    )
    note: str | None = Field(None, max_length=500, description="e.g. 'paper form at the till'")


class ConsentRecordOut(BaseModel):
    channel: str
    granted: bool
    source: str
    actor: str
    at: datetime
    note: str | None


class ConsentOut(BaseModel):
    member_id: int
    consent: dict[str, bool] = Field(description="Marketing consent in force, per channel")
    history: list[ConsentRecordOut] = Field(description="Newest first")


def _consent_out(session, member: Member) -> ConsentOut:
    return ConsentOut(
        member_id=member.id,
        consent=consent.current_all(session, member),
        history=[
            ConsentRecordOut(
                channel=r.channel,
                granted=r.granted,
                source=r.source,
                actor=r.actor,
                at=r.at,
                note=r.note,
            )
            for r in consent.history(session, member.id)
        ],
    )


@router.get(
    "/members/{member_id}/consents",
    response_model=ConsentOut,
    responses=responses(NotFound),
    summary="A member's marketing consent per channel, and every change (who, when, how)",
)
def get_consents(
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("read", "pos")),
) -> ConsentOut:
    return http.read(db, lambda s: _consent_out(s, members.get_member(s, member_id, actor=actor)))


@router.post(
    "/members/{member_id}/consents",
    response_model=ConsentOut,
    responses=responses(NotFound),
    summary="Record a member giving or withdrawing marketing consent",
)
def post_consent(
    body: ConsentIn,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("pos")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    if len(set(body.channels)) != len(body.channels):
        raise Invalid("channels: a channel is listed twice")

    def run(s):
        member = members.get_member(s, member_id, actor=actor)
        consent.change(
            s,
            member,
            body.channels,
            granted=body.granted,
            source=body.source,
            actor=actor,
            now=http.now(),
            note=body.note,
        )
        return _consent_out(s, member)

    return http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"member_id": member_id, **body.model_dump(mode="json")},
    )


class SmsReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_: str = Field(alias="from", min_length=3, max_length=40, description="The sender's phone")
    body: str = Field(max_length=2000)


class SmsReplyOut(BaseModel):
    action: Literal["unsubscribed", "ignored"]
    member_id: int | None


@router.post(
    "/programs/{code}/sms/replies",
    response_model=SmsReplyOut,
    responses=responses(NotFound),
    summary="A member's SMS reply, forwarded by the SMS provider: STOP withdraws SMS consent",
)
def sms_reply(
    body: SmsReply,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("pos")),
) -> SmsReplyOut:
    """Stop words: STOP, UNSUBSCRIBE, CANCEL, END, QUIT, 수신거부, 거부, 退订, TD, 取消. Anything
    else is ignored, and so is a number no member has."""

    def run(s):
        program = get_program(s, code)
        if not consent.is_stop_word(body.body):
            return SmsReplyOut(action="ignored", member_id=None)
        try:
            phone = normalise_phone(body.from_, program.country)
        except Invalid:
            return SmsReplyOut(action="ignored", member_id=None)
        member = s.query(Member).filter(Member.phone == phone).one_or_none()
        if member is None:
            return SmsReplyOut(action="ignored", member_id=None)
        consent.change(
            s,
            member,
            ["sms"],
            granted=False,
            source="sms_keyword",
            actor=actor,
            now=http.now(),
            note=f"replied {body.body.strip()[:40]!r}",
        )
        return SmsReplyOut(action="unsubscribed", member_id=member.id)

    with db.unit_of_work() as session:
        return run(session)
