"""Surveys in the admin UI: the list, the editor (the survey as a JSON document, checked by the
same schema as the API) and the results page (charts, per store, free-text search, CSV/XLSX).
The same services as the API (patron.surveys)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from patron import clock
from patron.admin import charts, context, forms, i18n, program_context
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.templating import path_for, render
from patron.surveys import service
from patron.surveys.api import export_file
from patron.surveys.schemas import CODE, SurveyIn

router = APIRouter()
SurveyCode = Path(pattern=CODE)
ProgramQ = Query(None, max_length=40)

EXAMPLE: dict[str, Any] = {
    "code": "after-visit",
    "status": "draft",
    "title": {"ko": "오늘 방문은 어떠셨나요?", "zh": "今天的体验如何？", "en": "How was your visit?"},
    "fallback_language": "ko",
    "questions": [
        {"key": "overall", "kind": "rating", "label": {"ko": "전체 만족도", "zh": "总体满意度", "en": "Overall"}},
        {"key": "comment", "kind": "text", "required": False,
         "label": {"ko": "한마디 남겨 주세요", "zh": "还有什么想说的？", "en": "Anything else?"}},
    ],
    "stores": [],
    "channels": [],
    "points": 100,
    "cooldown_days": 30,
    "answer_days": 14,
}  # fmt: skip


def _program(session: Any, code: str | None) -> tuple[list[Any], Any]:
    programs = program_context.visible(context.programs(session))
    prog = next((p for p in programs if p.code == code), programs[0] if programs else None)
    return programs, prog


@router.get("/surveys", name="surveys_list")
def surveys_list(
    request: Request,
    program: str | None = ProgramQ,
    staff: Staff = Depends(require("program.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        programs, prog = _program(session, program)
        rows = service.list_surveys(session, prog) if prog is not None else []
        return render(
            request, "surveys/list.html", tz=context.default_timezone(session), section="surveys",
            programs=programs, prog=prog, rows=rows, text_in=service.text_in,
        )  # fmt: skip


def _editor(request: Request, staff: Staff, prog: Any, document: str, code: str | None,
            error: str | None = None, status: int = 200) -> Response:  # fmt: skip
    return render(
        request, "surveys/edit.html", status=status, section="surveys", prog=prog,
        document=document, code=code, error=error,
    )  # fmt: skip


@router.get("/surveys/new", name="surveys_new")
def surveys_new(
    request: Request,
    program: str | None = ProgramQ,
    staff: Staff = Depends(require("program.manage")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        _programs, prog = _program(session, program)
        return _editor(
            request, staff, prog, json.dumps(EXAMPLE, ensure_ascii=False, indent=2), None
        )


@router.get("/surveys/{code}/edit", name="surveys_edit")
def surveys_edit(
    request: Request,
    code: str = SurveyCode,
    program: str | None = ProgramQ,
    staff: Staff = Depends(require("program.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        _programs, prog = _program(session, program)
        if prog is None:
            raise service.SurveyNotFound("no program")
        doc = service.out(service.get_survey(session, prog, code)).model_dump(
            mode="json", exclude={"version", "updated_at", "updated_by"}
        )
        return _editor(request, staff, prog, json.dumps(doc, ensure_ascii=False, indent=2), code)


@router.post("/surveys/save", name="surveys_save")
def surveys_save(
    request: Request,
    staff: Staff = Depends(require("program.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    original = form.get("original") or None
    document = form.get("document", "")
    with get_db(request).unit_of_work() as session:
        prog = program_context.visible_program(session, form.get("program", ""))

        def save(body: SurveyIn) -> None:
            if original is None:
                service.create(session, prog, body, actor=staff.actor, now=clock.now())
            else:
                service.replace(session, prog, original, body, actor=staff.actor, now=clock.now())

        error = forms.save_document(
            document, SurveyIn, save, language=staff.language, json_key="surveys.error.json"
        )
        if error is None:
            target = path_for(request, "surveys_list") + f"?program={prog.code}&done=saved"
            return RedirectResponse(target, status_code=303)
        session.rollback()  # nothing of a refused document is kept
        return _editor(request, staff, prog, document, original, error=error, status=422)


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("/surveys/{code}/results", name="surveys_results")
def surveys_results(
    request: Request,
    code: str = SurveyCode,
    program: str | None = ProgramQ,
    store: str | None = Query(None, max_length=40),
    date_from: str | None = Query(None, alias="from", max_length=10),
    date_to: str | None = Query(None, alias="to", max_length=10),
    q: str | None = Query(None, max_length=200),
    staff: Staff = Depends(require("reports.view")),
) -> Response:
    lang = staff.language
    first, last = _day(date_from), _day(date_to)
    store = store or None
    with get_db(request).unit_of_work(readonly=True) as session:
        _programs, prog = _program(session, program)
        if prog is None:
            raise service.SurveyNotFound("no program")
        survey = service.get_survey(session, prog, code)
        report = service.results(
            session, prog, survey, store=store, date_from=first, date_to=last, language=lang
        )
        texts = service.search_texts(
            session, prog, survey, query=q or None, store=store, date_from=first, date_to=last
        )
        title = service.text_in(survey.title, lang, survey.fallback_language)
        tz = context.default_timezone(session)
        empty = i18n.translate("surveys.chart.empty", lang)
        figures = [
            charts.hbar_chart(
                [
                    (d.label if question.kind != "rating" else f"★ {d.label}", d.count)
                    for d in question.distribution
                ],
                title=question.label,
                name=i18n.translate("surveys.col.count", lang),
                key="issued",
                empty_message=empty,
            )
            for question in report.questions
            if question.kind != "text"
        ]
        query = {"program": prog.code, "store": store or "", "from": date_from or "",
                 "to": date_to or ""}  # fmt: skip
        downloads = {
            fmt: path_for(request, "surveys_export", {**query, "format": fmt}, code=code)
            for fmt in ("csv", "xlsx")
        }
        return render(
            request, "surveys/results.html", tz=tz, section="surveys", prog=prog, code=code,
            title=title, report=report, figures=figures, texts=texts, downloads=downloads,
            values={"store": store or "", "from": date_from or "", "to": date_to or "", "q": q or ""},
        )  # fmt: skip


@router.get("/surveys/{code}/export", name="surveys_export")
def surveys_export(
    request: Request,
    code: str = SurveyCode,
    program: str | None = ProgramQ,
    format: str = Query("csv", pattern="^(csv|xlsx)$"),
    store: str | None = Query(None, max_length=40),
    date_from: str | None = Query(None, alias="from", max_length=10),
    date_to: str | None = Query(None, alias="to", max_length=10),
    staff: Staff = Depends(require("reports.view")),
) -> Response:
    db = get_db(request)
    with db.unit_of_work(readonly=True) as session:
        _programs, prog = _program(session, program)
        if prog is None:
            raise service.SurveyNotFound("no program")
        program_code = prog.code
    data, media, name = export_file(
        db, program_code, code, fmt=format, lang=staff.language, store=store or None,
        date_from=_day(date_from), date_to=_day(date_to),
    )  # fmt: skip
    return Response(
        data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
