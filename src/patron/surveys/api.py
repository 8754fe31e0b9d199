"""Surveys over HTTP: definitions (admin scope), invitations, results, free-text search and
export (read scope). The member-facing page is patron.surveys.page (/s/{token})."""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from patron import http
from patron.audit.service import Actor
from patron.config import get_settings
from patron.db.engine import Database
from patron.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.programs import service as programs
from patron.programs.schemas import CODE_PATTERN
from patron.surveys import export, service
from patron.surveys.schemas import (
    CODE,
    InvitationIn,
    InvitationOut,
    InvitationPage,
    ResultsOut,
    SurveyIn,
    SurveyOut,
    TextPage,
)

router = APIRouter(
    prefix="/api/v1",
    tags=["surveys"],
    responses=responses(Unauthorized, Forbidden, Invalid, NotFound, service.SurveyNotFound),
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
SurveyCode = Path(pattern=CODE, description="The survey's code, e.g. after-visit")
StoreQ = Query(None, max_length=40, description="Only answers from this store")
FromQ = Query(None, alias="from", description="First day (program timezone)")
ToQ = Query(None, alias="to", description="Last day (program timezone)")


@router.get("/programs/{code}/surveys", response_model=list[SurveyOut])
def list_surveys(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> list[SurveyOut]:
    return http.read(
        db,
        lambda s: [service.out(r) for r in service.list_surveys(s, programs.get_program(s, code))],
    )


@router.post(
    "/programs/{code}/surveys",
    response_model=SurveyOut,
    status_code=201,
    responses=responses(Conflict),
)
def create_survey(
    body: SurveyIn,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """A new survey. 409 survey_exists when the code is taken."""
    return http.write(
        db,
        lambda s: service.out(
            service.create(s, programs.get_program(s, code), body, actor=actor, now=http.now())
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, **body.model_dump(mode="json")},
        status_code=201,
    )


@router.get("/programs/{code}/surveys/{survey}", response_model=SurveyOut)
def get_survey(
    code: str = ProgramCode,
    survey: str = SurveyCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> SurveyOut:
    return http.read(
        db, lambda s: service.out(service.get_survey(s, programs.get_program(s, code), survey))
    )


@router.put(
    "/programs/{code}/surveys/{survey}", response_model=SurveyOut, responses=responses(Conflict)
)
def put_survey(
    body: SurveyIn,
    code: str = ProgramCode,
    survey: str = SurveyCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """Replace a survey. Once answered, questions may be reworded or added, not removed or
    changed in kind (409 survey_answered)."""
    return http.write(
        db,
        lambda s: service.out(
            service.replace(
                s, programs.get_program(s, code), survey, body, actor=actor, now=http.now()
            )
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, "survey": survey, **body.model_dump(mode="json")},
    )


@router.delete("/programs/{code}/surveys/{survey}", response_model=SurveyOut)
def archive_survey(
    code: str = ProgramCode,
    survey: str = SurveyCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
):
    """Archive the survey: no new invitations, open links stop taking answers; results stay."""
    return http.write(
        db,
        lambda s: service.out(
            service.archive(s, programs.get_program(s, code), survey, actor=actor, now=http.now())
        ),
        actor=actor,
        idempotency_key=None,
        payload=None,
    )


@router.post(
    "/programs/{code}/surveys/{survey}/invitations",
    response_model=InvitationOut,
    status_code=201,
    responses=responses(service.SurveyRefused),
)
def create_invitation(
    body: InvitationIn,
    code: str = ProgramCode,
    survey: str = SurveyCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """Invite one member now (e.g. to send the link yourself). The answer holds the link's
    token, the only time it is shown. 409 survey_closed, recently_invited (cooldown)."""

    def run(s) -> InvitationOut:
        row, token = service.invite_manually(
            s, programs.get_program(s, code), survey, body.member, store=body.store,
            channel=body.channel, now=http.now(),
        )  # fmt: skip
        return service.invitation_out(row, token, get_settings().public_url)

    return http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, "survey": survey, **body.model_dump(mode="json")},
        status_code=201,
    )


@router.get("/programs/{code}/surveys/{survey}/invitations", response_model=InvitationPage)
def list_invitations(
    code: str = ProgramCode,
    survey: str = SurveyCode,
    cursor: int | None = Query(None, ge=1, le=2**53),
    limit: int = Query(50, ge=1, le=200),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> InvitationPage:
    def run(s) -> InvitationPage:
        row = service.get_survey(s, programs.get_program(s, code), survey)
        rows, more = service.list_invitations(s, row, cursor=cursor, limit=limit)
        return InvitationPage(items=[service.invitation_out(r) for r in rows], next_cursor=more)

    return http.read(db, run)


@router.get("/programs/{code}/surveys/{survey}/results", response_model=ResultsOut)
def get_results(
    code: str = ProgramCode,
    survey: str = SurveyCode,
    store: str | None = StoreQ,
    date_from: date | None = FromQ,
    date_to: date | None = ToQ,
    lang: Literal["ko", "zh", "en"] = Query("en", description="Language of the labels"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> ResultsOut:
    """Invitations, responses, average rating and every question's distribution, for the
    period (days in the program's timezone) and store."""

    def run(s) -> ResultsOut:
        program = programs.get_program(s, code)
        row = service.get_survey(s, program, survey)
        return service.results(
            s, program, row, store=store, date_from=date_from, date_to=date_to, language=lang
        )

    return http.read(db, run)


@router.get("/programs/{code}/surveys/{survey}/texts", response_model=TextPage)
def search_texts(
    code: str = ProgramCode,
    survey: str = SurveyCode,
    q: str | None = Query(None, max_length=200, description="Case-insensitive substring"),
    store: str | None = StoreQ,
    date_from: date | None = FromQ,
    date_to: date | None = ToQ,
    limit: int = Query(100, ge=1, le=500),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> TextPage:
    """Free-text answers, newest first, optionally containing `q`."""

    def run(s) -> TextPage:
        program = programs.get_program(s, code)
        row = service.get_survey(s, program, survey)
        return TextPage(
            items=service.search_texts(
                s, program, row, query=q, store=store, date_from=date_from, date_to=date_to,
                limit=limit,
            )
        )  # fmt: skip

    return http.read(db, run)


def export_file(
    db: Database,
    code: str,
    survey: str,
    *,
    fmt: str,
    lang: str,
    store: str | None,
    date_from: date | None,
    date_to: date | None,
) -> tuple[bytes, str, str]:
    """(content, media type, file name) of a survey's results."""
    from patron.reports.export import to_csv, to_xlsx

    with db.unit_of_work(readonly=True) as s:
        program = programs.get_program(s, code)
        row = service.get_survey(s, program, survey)
        report = service.results(
            s, program, row, store=store, date_from=date_from, date_to=date_to, language=lang
        )
        texts = service.search_texts(
            s, program, row, store=store, date_from=date_from, date_to=date_to, limit=100_000
        )
        name, currency = program.name, program.currency
    if fmt == "csv":
        data = to_csv(export.tables(name, currency, report, texts))
        return data, "text/csv; charset=utf-8", f"survey-{survey}.csv"
    data = to_xlsx(export.tables(name, currency, report, texts, language=lang), language=lang)
    media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return data, media, f"survey-{survey}.xlsx"


@router.get(
    "/programs/{code}/surveys/{survey}/export",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/vnd.openxmlformats-"
                                 "officedocument.spreadsheetml.sheet": {}}}},
)  # fmt: skip
def export_results(
    code: str = ProgramCode,
    survey: str = SurveyCode,
    format: Literal["csv", "xlsx"] = Query("csv"),
    lang: Literal["ko", "zh", "en"] = Query("en"),
    store: str | None = StoreQ,
    date_from: date | None = FromQ,
    date_to: date | None = ToQ,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> Response:
    """The results as CSV (code headers) or XLSX (headers in `lang`): summary, by store and the
    free-text answers."""
    data, media, name = export_file(
        db, code, survey, fmt=format, lang=lang, store=store, date_from=date_from, date_to=date_to
    )
    return Response(
        data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
