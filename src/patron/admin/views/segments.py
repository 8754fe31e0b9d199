"""Segments in the admin UI: the list (with snapshots), the builder with a live count and
sample (htmx), saving and taking a snapshot. The same services as the API
(patron.segments.service)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from patron import clock
from patron.admin import context, program_context
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.templating import path_for, render
from patron.errors import Invalid
from patron.segments import builder, service
from patron.segments.definition import CODE_PATTERN, Definition
from patron.segments.schemas import SegmentIn, SegmentUpdate

router = APIRouter()
SegmentCode = Path(pattern=CODE_PATTERN)


def _programs(session, program: str | None):
    programs = program_context.visible(context.programs(session))
    prog = next((p for p in programs if p.code == program), programs[0] if programs else None)
    return programs, prog


@router.get("/segments", name="segments_list")
def segments_list(
    request: Request,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("rules.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        programs, prog = _programs(session, program)
        rows = service.list_segments(session, prog) if prog else []
        snapshots = {r.code: service.list_snapshots(session, prog, r.code, limit=3) for r in rows}
        return render(
            request,
            "segments/list.html",
            tz=context.default_timezone(session),
            section="engagement",
            programs=programs,
            prog=prog,
            rows=rows,
            snapshots=snapshots,
        )


def _editor(
    request: Request,
    prog_code: str | None,
    *,
    segment: str | None,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        programs, prog = _programs(session, prog_code)
        if prog is None:
            return RedirectResponse(path_for(request, "segments_list"), status_code=303)
        if values is None:
            values = {"code": "", "name": "", "description": "", "json": ""}
            combinator, rows = "all", list[dict[str, str]]()
            if segment is not None:
                row = service.get_segment(session, prog, segment)
                values.update(code=row.code, name=row.name, description=row.description)
                shown = builder.form_of(row.definition)
                if shown is None:
                    values["json"] = json.dumps(row.definition, indent=2, ensure_ascii=False)
                else:
                    combinator, rows = shown
            values["combinator"] = combinator
            values["rows"] = rows
        rows = list(values["rows"])
        rows += [{}] * min(builder.BLANK_ROWS, builder.MAX_ROWS - len(rows))
        return render(
            request,
            "segments/edit.html",
            status=status,
            section="engagement",
            programs=programs,
            prog=prog,
            segment=segment,
            v=values,
            rows=rows,
            types=builder.TYPES,
            fields=builder.FIELDS,
            errors=errors or {},
        )


@router.get("/segments/new", name="segments_new")
def segments_new(
    request: Request,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("rules.manage")),
) -> Response:
    return _editor(request, program, segment=None)


@router.get("/segments/{code}/edit", name="segments_edit")
def segments_edit(
    request: Request,
    code: str = SegmentCode,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("rules.view")),
) -> Response:
    return _editor(request, program, segment=code)


def _parse(form: dict[str, str]) -> Definition:
    doc = builder.definition_of(form)
    if "__json_error__" in doc:
        raise Invalid(f"json: {doc['__json_error__']}", code="invalid_json")
    try:
        return Definition.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Invalid(f"{where}: {first['msg']}", code="invalid_definition") from None


def _values(form: dict[str, str]) -> dict[str, Any]:
    rows = []
    for i in range(builder.MAX_ROWS):
        row = {k: form.get(f"r{i}_{k}", "") for k in ("type", "not", "list", "name", "days",
                                                        "min", "max", "flag")}  # fmt: skip
        if row["type"]:
            rows.append(row)
    return {
        "code": form.get("code", ""),
        "name": form.get("name", ""),
        "description": form.get("description", ""),
        "json": form.get("json", ""),
        "combinator": form.get("combinator", "all"),
        "rows": rows,
    }


@router.post("/segments/preview", name="segments_preview")
def segments_preview(
    request: Request,
    staff: Staff = Depends(require("rules.view")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    """The live count and a sample of the definition being edited (an htmx fragment)."""
    error = None
    total = 0
    sample: list[Any] = []
    with get_db(request).unit_of_work(readonly=True) as session:
        prog = program_context.visible_program(session, form.get("program", ""))
        try:
            definition = _parse(form)
            own = form.get("segment") or None
            now = clock.now()
            service.check_references(session, prog, definition, own_code=own, now=now)
            total = service.count(session, prog, definition, as_of=None, now=now, own_code=own)
            sample = service.sample(
                session, prog, definition, as_of=None, now=now, limit=10, own_code=own
            )
        except Invalid as exc:
            error = exc.detail
        return render(request, "segments/_preview.html", total=total, sample=sample, error=error)


@router.post("/segments/save", name="segments_save")
def segments_save(
    request: Request,
    staff: Staff = Depends(require("rules.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    prog_code = form.get("program", "")
    existing = form.get("segment") or None
    values = _values(form)
    try:
        definition = _parse(form)
        with get_db(request).unit_of_work() as session:
            prog = program_context.visible_program(session, prog_code)
            now = clock.now()
            if existing is None:
                body = SegmentIn(
                    code=values["code"].strip(), name=values["name"],
                    description=values["description"], definition=definition,
                )  # fmt: skip
                service.create(session, prog, body, actor=staff.actor, now=now)
                code = body.code
            else:
                update = SegmentUpdate(
                    name=values["name"], description=values["description"], definition=definition
                )
                service.update(session, prog, existing, update, actor=staff.actor, now=now)
                code = existing
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "__form__"
        return _editor(request, prog_code, segment=existing, values=values,
                       errors={field: first["msg"]}, status=422)  # fmt: skip
    except Invalid as exc:
        return _editor(request, prog_code, segment=existing, values=values,
                       errors={"__form__": exc.detail}, status=422)  # fmt: skip
    except service.SegmentExists as exc:
        return _editor(request, prog_code, segment=existing, values=values,
                       errors={"code": exc.detail}, status=409)  # fmt: skip
    target = path_for(request, "segments_list", {"program": prog_code, "done": "saved"})
    return RedirectResponse(f"{target}#segment-{code}", status_code=303)


@router.post("/segments/{code}/snapshot", name="segments_snapshot")
def segments_snapshot(
    request: Request,
    code: str = SegmentCode,
    staff: Staff = Depends(require("rules.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    prog_code = form.get("program", "")
    with get_db(request).unit_of_work() as session:
        prog = program_context.visible_program(session, prog_code)
        service.take_snapshot(session, prog, code, as_of=None, actor=staff.actor, now=clock.now())
    target = path_for(request, "segments_list", {"program": prog_code, "done": "snapshot"})
    return RedirectResponse(f"{target}#segment-{code}", status_code=303)
