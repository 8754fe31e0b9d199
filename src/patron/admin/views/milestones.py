"""Milestones in the admin UI: the list (with achievers per goal), the editor (the goal as a
JSON document, checked by the API's schema) and "evaluate now". The same services as the API
(patron.milestones)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from patron import clock
from patron.admin import context, forms, program_context
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.templating import path_for, render
from patron.milestones import jobs, service
from patron.milestones.schemas import CODE, MilestoneIn

router = APIRouter()
MilestoneCode = Path(pattern=CODE)
ProgramQ = Query(None, max_length=40)

EXAMPLE: dict[str, Any] = {
    "code": "ten-visits",
    "status": "active",
    "kind": "visits",
    "target": 10,
    "window": "month",
    "repeat": True,
    "names": {"ko": "단골손님", "zh": "常客", "en": "Regular"},
    "descriptions": {"ko": "한 달에 10번 방문", "zh": "一个月内光临 10 次", "en": "10 visits in a month"},
    "points": 500,
    "reward": None,
}  # fmt: skip


def _program(session: Any, code: str | None) -> tuple[list[Any], Any]:
    programs = program_context.visible(context.programs(session))
    prog = next((p for p in programs if p.code == code), programs[0] if programs else None)
    return programs, prog


@router.get("/milestones", name="milestones_list")
def milestones_list(
    request: Request,
    program: str | None = ProgramQ,
    staff: Staff = Depends(require("rules.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        programs, prog = _program(session, program)
        rows = service.list_milestones(session, prog) if prog is not None else []
        counts = service.achievers(session, prog) if prog is not None else {}
        return render(
            request, "milestones/list.html", tz=context.default_timezone(session),
            section="milestones", programs=programs, prog=prog, rows=rows, counts=counts,
            text_in=service.text_in,
        )  # fmt: skip


def _editor(request: Request, prog: Any, document: str, code: str | None,
            error: str | None = None, status: int = 200) -> Response:  # fmt: skip
    return render(
        request, "milestones/edit.html", status=status, section="milestones", prog=prog,
        document=document, code=code, error=error,
    )  # fmt: skip


@router.get("/milestones/new", name="milestones_new")
def milestones_new(
    request: Request,
    program: str | None = ProgramQ,
    staff: Staff = Depends(require("rules.manage")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        _programs, prog = _program(session, program)
        return _editor(request, prog, json.dumps(EXAMPLE, ensure_ascii=False, indent=2), None)


@router.get("/milestones/{code}/edit", name="milestones_edit")
def milestones_edit(
    request: Request,
    code: str = MilestoneCode,
    program: str | None = ProgramQ,
    staff: Staff = Depends(require("rules.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        _programs, prog = _program(session, program)
        if prog is None:
            raise service.MilestoneNotFound("no program")
        doc = service.out(service.get_milestone(session, prog, code)).model_dump(
            mode="json", exclude={"version", "updated_at", "updated_by", "achievers"}
        )
        return _editor(request, prog, json.dumps(doc, ensure_ascii=False, indent=2), code)


@router.post("/milestones/save", name="milestones_save")
def milestones_save(
    request: Request,
    staff: Staff = Depends(require("rules.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    original = form.get("original") or None
    document = form.get("document", "")
    with get_db(request).unit_of_work() as session:
        prog = program_context.visible_program(session, form.get("program", ""))

        def save(body: MilestoneIn) -> None:
            if original is None:
                service.create(session, prog, body, actor=staff.actor, now=clock.now())
            else:
                service.replace(session, prog, original, body, actor=staff.actor, now=clock.now())

        error = forms.save_document(
            document, MilestoneIn, save, language=staff.language, json_key="milestones.error.json"
        )
        if error is None:
            target = path_for(request, "milestones_list") + f"?program={prog.code}&done=saved"
            return RedirectResponse(target, status_code=303)
        session.rollback()
        return _editor(request, prog, document, original, error=error, status=422)


@router.post("/milestones/run", name="milestones_run")
def milestones_run(
    request: Request,
    staff: Staff = Depends(require("rules.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    db = get_db(request)
    with db.unit_of_work(readonly=True) as session:
        prog = program_context.visible_program(session, form.get("program", ""))
        code = prog.code
    report = jobs.run_program(db, code, now=clock.now(), actor=staff.actor)
    achieved = sum(i.achieved for i in report.items)
    target = path_for(request, "milestones_list") + f"?program={code}&done=run&n={achieved}"
    return RedirectResponse(target, status_code=303)
