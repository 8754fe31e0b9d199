"""The member's profile: language, consents, signed-in devices."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from patron import clock
from patron.errors import NotFound
from patron.members import service as members
from patron.members.schemas import MemberUpdate
from patron.notify import consent
from patron.portal import i18n, service
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

router = APIRouter(prefix="/{program}")


@router.get("/profile", name="profile")
def profile(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        _program, member = member_of(session, viewer)
        consents = consent.current_all(session, member)
        sessions = [
            {"id": row.id, "created_at": row.created_at, "user_agent": row.user_agent}
            for row in service.member_sessions(session, viewer.member_id, now=clock.now())
        ]
        contacts = {"email": member.email, "sms": member.phone}
    return render(request, "profile.html", viewer=viewer, consents=consents, sessions=sessions,
                  contacts=contacts, page="profile")  # fmt: skip


@router.post("/profile/language", name="set_language")
async def set_language(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    lang = (await form_of(request)).get("language", "")
    if lang not in i18n.LANGUAGES:
        raise NotFound("no such language")

    def run() -> None:
        with get_db(request).unit_of_work() as session:
            the_program, member = member_of(session, viewer)
            members.update_member(
                session, member, MemberUpdate.model_validate({"language": lang}),
                program=the_program, actor=actor(viewer), now=clock.now(), source="portal",
            )  # fmt: skip

    await run_in_threadpool(run)
    return RedirectResponse(request.url_for("profile", program=program).path, status_code=303)


@router.post("/profile/consent", name="set_consent")
async def set_consent(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    form = await form_of(request)

    def run() -> None:
        now = clock.now()
        with get_db(request).unit_of_work() as session:
            _program, member = member_of(session, viewer)
            current = consent.current_all(session, member)
            for channel in consent.CHANNELS:
                wanted = form.get(channel) == "on"
                if wanted != current[channel]:
                    consent.change(session, member, [channel], granted=wanted, source="portal",
                                   actor=actor(viewer), now=now)  # fmt: skip

    await run_in_threadpool(run)
    return RedirectResponse(request.url_for("profile", program=program).path, status_code=303)


@router.post("/profile/sessions/{session_id}/revoke", name="revoke_session")
def revoke_session(
    request: Request,
    program: str = ProgramCode,
    session_id: int = Path(ge=1, le=2**53),
    viewer: Viewer = Depends(current_viewer),
) -> Response:
    with get_db(request).unit_of_work() as session:
        if not service.revoke(session, viewer.member_id, session_id, now=clock.now()):
            raise NotFound(f"no session {session_id}")
    target = "sign_in" if session_id == viewer.session_id else "profile"
    return RedirectResponse(request.url_for(target, program=program).path, status_code=303)
