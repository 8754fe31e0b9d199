"""The audit log (owners): every change, who made it and when, filtered by actor and action."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from patron.admin import audit_log, context, forms
from patron.admin.deps import Staff, get_db, require
from patron.admin.service import actor_labels
from patron.admin.templating import render

router = APIRouter()


@router.get("/audit", name="audit_log")
def audit_page(
    request: Request,
    actor: str = Query("", max_length=254),
    action: str = Query("", max_length=60),
    member: str = Query("", max_length=30),
    before: str = Query("", max_length=30),
    staff: Staff = Depends(require("audit.view")),
) -> Response:
    # A GET filter form sends empty fields as "", so numbers are read leniently.
    flt = audit_log.AuditFilter(actor=actor, action=action, member_id=forms.optional_int(member))
    with get_db(request).unit_of_work(readonly=True) as session:
        rows, more = audit_log.entries(
            session,
            flt,
            before_id=forms.optional_int(before),
            program_ids=None
            if staff.programs is None
            else [p.id for p in context.programs(session) if staff.reaches(p.code)],
        )
        return render(
            request,
            "audit/list.html",
            tz=context.default_timezone(session),
            section="audit",
            rows=rows,
            labels=actor_labels(
                session,
                {r.actor for r in rows}
                | {f"user:{r.subject_id}" for r in rows if r.subject_type == "staff_user"},
            ),
            more=more,
            flt=flt,
            chain=audit_log.chain_status(session),
        )
