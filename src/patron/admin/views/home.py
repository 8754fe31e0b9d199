"""The page after sign-in: find a member, and the sections this user can open."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from patron.admin import context
from patron.admin.deps import Staff, current_staff, get_db
from patron.admin.templating import render

router = APIRouter()


@router.get("/", name="home")
def home(request: Request, staff: Staff = Depends(current_staff)) -> Response:
    # Rendered inside the unit of work: its rollback at the end expires the ORM rows.
    with get_db(request).unit_of_work(readonly=True) as session:
        return render(
            request,
            "home.html",
            tz=context.default_timezone(session),
            section="home",
            programs=[p for p in context.programs(session) if staff.reaches(p.code)],
        )
