"""Message templates over HTTP: list, read, replace, reset to the default, preview.

A template is addressed by /programs/{code}/templates/{kind}/{channel}/{language}. An event kind,
channel or language that does not exist in the path is a 404 (unknown_event_type,
unknown_channel, unknown_language): there is no such template. In the preview's body the same
codes come with 422 (a malformed request). A template that would not render is a 422
invalid_template whose detail names the part, the line and the problem.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.notify import templates
from patron.notify.templates import PreviewIn, PreviewOut, TemplateIn, TemplateOut
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program

router = APIRouter(
    prefix="/api/v1",
    tags=["notifications"],
    responses=responses(Unauthorized, Forbidden, Invalid),
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
Kind = Path(max_length=60, description="An event type, e.g. points.expiring")
Channel = Path(max_length=10, description="email or sms")
Language = Path(max_length=10, description="ko, zh or en")


# Declared for OpenAPI (the service raises NotFound/Invalid with these codes).
class UnknownEventType(NotFound):
    code = "unknown_event_type"


class UnknownChannel(NotFound):
    code = "unknown_channel"


class UnknownLanguage(NotFound):
    code = "unknown_language"


class ProgramNotFound(NotFound):
    code = "program_not_found"


class InvalidTemplate(Invalid):
    code = "invalid_template"


class MemberNotFound(NotFound):
    code = "member_not_found"


# In the preview's body an unknown kind, channel or language is a malformed request: 422.
class InvalidEventType(Invalid):
    code = "unknown_event_type"


class InvalidChannel(Invalid):
    code = "unknown_channel"


class InvalidLanguage(Invalid):
    code = "unknown_language"


PATH_ERRORS = (ProgramNotFound, UnknownEventType, UnknownChannel, UnknownLanguage)


@router.get(
    "/programs/{code}/templates",
    response_model=list[TemplateOut],
    responses=responses(ProgramNotFound),
    summary="Every message template of the program: each event × channel × language",
)
def list_templates(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> list[TemplateOut]:
    return http.read(db, lambda s: templates.list_templates(s, get_program(s, code)))


@router.get(
    "/programs/{code}/templates/{kind}/{channel}/{language}",
    response_model=TemplateOut,
    responses=responses(*PATH_ERRORS),
    summary="One template: the program's own wording, or the default (custom: false)",
)
def get_template(
    code: str = ProgramCode,
    kind: str = Kind,
    channel: str = Channel,
    language: str = Language,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> TemplateOut:
    return http.read(
        db, lambda s: templates.get_template(s, get_program(s, code), kind, channel, language)
    )


@router.put(
    "/programs/{code}/templates/{kind}/{channel}/{language}",
    response_model=TemplateOut,
    responses=responses(*PATH_ERRORS, InvalidTemplate, Conflict),
    summary="Replace a template with the program's own wording (checked before it is saved)",
)
def put_template(
    body: TemplateIn,
    code: str = ProgramCode,
    kind: str = Kind,
    channel: str = Channel,
    language: str = Language,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    return http.write(
        db,
        lambda s: templates.put_template(
            s,
            get_program(s, code),
            kind,
            channel,
            language,
            body.subject,
            body.body,
            actor=actor,
            now=http.now(),
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload=lambda: {
            "program": code,
            "template": f"{kind}/{channel}/{language}",
            **body.model_dump(mode="json"),
        },
    )


@router.delete(
    "/programs/{code}/templates/{kind}/{channel}/{language}",
    response_model=TemplateOut,
    responses=responses(*PATH_ERRORS, Conflict),
    summary="Go back to the default wording; answers the default",
)
def reset_template(
    code: str = ProgramCode,
    kind: str = Kind,
    channel: str = Channel,
    language: str = Language,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    return http.write(
        db,
        lambda s: templates.reset_template(
            s, get_program(s, code), kind, channel, language, actor=actor, now=http.now()
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload=lambda: {"program": code, "reset": f"{kind}/{channel}/{language}"},
    )


@router.post(
    "/programs/{code}/templates/preview",
    response_model=PreviewOut,
    responses=responses(
        ProgramNotFound,
        MemberNotFound,
        InvalidTemplate,
        InvalidEventType,
        InvalidChannel,
        InvalidLanguage,
    ),
    summary="Render a template (as typed, or the current one) for a member or a sample member",
)
def preview_template(
    body: PreviewIn,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> PreviewOut:
    # Renders without saving anything: a read, so the read scope (which can already see the
    # templates and the member) is enough, and no Idempotency-Key is needed.
    return http.read(
        db,
        lambda s: templates.preview(
            s,
            get_program(s, code),
            body.kind,
            body.channel,
            body.language,
            body.subject,
            body.body,
            body.member_id,
            now=http.now(),
        ),
    )
