"""The member's privacy page: download her data, ask to close her account and erase her data
(or withdraw that request). See patron.portal.privacy."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from patron import clock
from patron.errors import NotFound
from patron.portal import privacy
from patron.portal.account import lock_member
from patron.portal.templating import render
from patron.portal.web import (
    ProgramCode,
    Viewer,
    actor,
    current_viewer,
    form_of,
    get_db,
    member_of,
)
from patron.programs.models import Program

log = logging.getLogger("patron.portal")
router = APIRouter(prefix="/{program}")


def _page(request: Request, viewer: Viewer, *, status: int = 200, error: str | None = None):
    with get_db(request).unit_of_work(readonly=True) as session:
        found = privacy.open_erasure(session, viewer.program.id, viewer.member_id)
        pending = (
            {"id": found.id, "requested_at": found.requested_at} if found is not None else None
        )
    return render(request, "privacy.html", viewer=viewer, status=status, pending=pending,
                  error=error, days=privacy.ERASURE_DAYS, page="profile")  # fmt: skip


def _to_privacy(request: Request, program: str) -> Response:
    return RedirectResponse(request.url_for("privacy", program=program).path, status_code=303)


@router.get("/privacy", name="privacy")
def privacy_page(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    return _page(request, viewer)


@router.get("/privacy/export.json", name="privacy_export")
def privacy_export(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    now = clock.now()
    with get_db(request).unit_of_work() as session:
        the_program, member = member_of(session, viewer)
        document = privacy.export(session, the_program, member, actor=actor(viewer), now=now)
        filename = privacy.export_filename(the_program, member, now)
    return Response(
        privacy.to_json(document),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post("/privacy/erasure", name="privacy_erasure")
async def privacy_erasure(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    form = await form_of(request)
    if form.get("understand") != "on":
        return _page(request, viewer, status=422, error="privacy.erasure.must_confirm")
    reason = form.get("reason", "")[: privacy.REASON_MAX]

    def run() -> None:
        now = clock.now()
        with get_db(request).unit_of_work() as session:
            the_program = session.get(Program, viewer.program.id)
            assert the_program is not None
            member = lock_member(session, viewer.member_id)
            privacy.request_erasure(
                session, the_program, member, reason=reason, actor=actor(viewer), now=now
            )

    await run_in_threadpool(run)
    return _to_privacy(request, program)


@router.post("/privacy/erasure/{request_id}/withdraw", name="privacy_withdraw")
def privacy_withdraw(
    request: Request,
    program: str = ProgramCode,
    request_id: int = Path(ge=1, le=2**53),
    viewer: Viewer = Depends(current_viewer),
) -> Response:
    with get_db(request).unit_of_work() as session:
        the_program = session.get(Program, viewer.program.id)
        assert the_program is not None
        if not privacy.withdraw_erasure(
            session, the_program, viewer.member_id, request_id, actor=actor(viewer),
            now=clock.now(),
        ):  # fmt: skip
            raise NotFound(f"no open request {request_id}")
    return _to_privacy(request, program)
