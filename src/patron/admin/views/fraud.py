"""Fraud controls in the admin UI: the review queue (confirm or reverse a held sale, with a
reason) and the program's controls. The same services as the API (patron.fraud, patron.review)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from patron import clock
from patron.admin import context, program_context
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.templating import path_for, render
from patron.errors import Conflict, Invalid
from patron.fraud import rules as fraud_rules
from patron.fraud import settings
from patron.review import queue

router = APIRouter()
ReviewId = Path(ge=1, le=2**53)
STATUSES = ("open", "confirmed", "reversed", "all")


def _page(
    request: Request,
    staff: Staff,
    program: str | None,
    status: str,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    code: int = 200,
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        # Only the programs the user may act in (a user limited to some programs).
        programs = program_context.visible(context.programs(session))
        prog = next((p for p in programs if p.code == program), programs[0] if programs else None)
        rows: list[Any] = []
        doc: dict[str, Any] = {}
        if prog is not None:
            rows, _more = queue.list_reviews(
                session, prog, status=None if status == "all" else status, limit=200
            )
            doc = values or settings.get(session, prog).model_dump(mode="json")
        return render(
            request,
            "fraud/queue.html",
            status=code,
            tz=context.default_timezone(session),
            section="fraud",
            programs=programs,
            prog=prog,
            rows=rows,
            current=status,
            statuses=STATUSES,
            doc=doc,
            dimensions=fraud_rules.DIMENSIONS,
            limits=fraud_rules.LIMITS,
            errors=errors or {},
        )


@router.get("/fraud", name="fraud_queue")
def fraud_queue(
    request: Request,
    program: str | None = Query(None, max_length=40),
    status: str = Query("open", max_length=10),
    staff: Staff = Depends(require("members.view")),
) -> Response:
    return _page(request, staff, program, status if status in STATUSES else "open")


def _decide(request: Request, staff: Staff, review_id: int, form: dict[str, str], what: str):
    code = form.get("program", "")
    reason = form.get("reason", "").strip()
    done = "confirmed" if what == "confirm" else "reversed"
    if len(reason) < 3 or len(reason) > 500:
        done = "reason"
    else:
        try:
            with get_db(request).unit_of_work() as session:
                prog = program_context.visible_program(session, code)
                queue.decide(
                    session, prog, review_id, what, reason=reason, actor=staff.actor,
                    now=clock.now(),
                )  # fmt: skip
        except Conflict as exc:
            if exc.code != "review_decided":
                raise
            done = "decided"
    return _back(request, code, done, "queue")


@router.post("/fraud/reviews/{review_id}/confirm", name="fraud_confirm")
def fraud_confirm(
    request: Request,
    review_id: int = ReviewId,
    staff: Staff = Depends(require("points.adjust")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    return _decide(request, staff, review_id, form, "confirm")


@router.post("/fraud/reviews/{review_id}/reverse", name="fraud_reverse")
def fraud_reverse(
    request: Request,
    review_id: int = ReviewId,
    staff: Staff = Depends(require("points.adjust")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    return _decide(request, staff, review_id, form, "reverse")


def _settings_of(form: dict[str, str]) -> dict[str, Any]:
    """The form's fields as the settings document (empty: off)."""

    def value(name: str) -> str | None:
        text = form.get(name, "").strip()
        return text or None

    doc: dict[str, Any] = {
        d: {x: value(f"{d}.{x}") for x in fraud_rules.LIMITS} for d in fraud_rules.DIMENSIONS
    }
    doc["duplicate_window_minutes"] = value("duplicate_window_minutes")
    doc["hold_points_above"] = value("hold_points_above")
    doc["verified_contact_for_redemption"] = form.get("verified_contact_for_redemption") == "1"
    return doc


@router.post("/fraud/settings", name="fraud_settings")
def fraud_settings(
    request: Request,
    staff: Staff = Depends(require("program.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    code = form.get("program", "")
    values = _settings_of(form)
    try:
        with get_db(request).unit_of_work() as session:
            prog = program_context.visible_program(session, code)
            settings.save(session, prog, settings.parse(values), actor=staff.actor, now=clock.now())
    except Invalid as exc:
        field = exc.detail.split(":", 1)[0]
        shown = {**values, "program": code}
        return _page(
            request, staff, code, "open", errors={field: exc.detail}, values=shown, code=422
        )
    return _back(request, code, "saved", "settings")


def _back(request: Request, program: str, done: str, anchor: str) -> Response:
    target = path_for(request, "fraud_queue", {"program": program, "done": done})
    return RedirectResponse(f"{target}#{anchor}", status_code=303)
