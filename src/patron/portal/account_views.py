"""The member's profile: name and contacts (changed by code), birthday (set once),
preferences, language, consents with their history, signed-in devices."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.exc import IntegrityError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from patron import clock
from patron.errors import NotFound
from patron.members import consent
from patron.members import service as members
from patron.members.phone import national_format
from patron.members.schemas import MemberUpdate
from patron.portal import account, i18n, service
from patron.portal.templating import render
from patron.portal.web import (
    ProgramCode,
    Viewer,
    actor,
    code_fields,
    current_viewer,
    form_of,
    get_db,
    limited,
    member_of,
    send_code,
)
from patron.programs.models import Program

router = APIRouter(prefix="/{program}")


def _profile_context(request: Request, viewer: Viewer) -> dict[str, Any]:
    now = clock.now()
    with get_db(request).unit_of_work(readonly=True) as session:
        the_program, member = member_of(session, viewer)
        consents = consent.current_all(session, member)
        sessions = [
            {"id": row.id, "created_at": row.created_at, "user_agent": row.user_agent}
            for row in service.member_sessions(session, viewer.member_id, now=now)
        ]
        prefs = member.preferences or {}
        return {
            "member": {
                "name": member.name,
                "email": member.email,
                "phone": national_format(member.phone),
                "birthday": member.birthday,
            },
            "contacts": {"email": member.email, "sms": member.phone},
            "consents": consents,
            "history": account.consent_history(session, member),
            "sessions": sessions,
            "stores": [(s.code, s.name) for s in account.active_stores(session, the_program)],
            "channels": account.reachable_channels(member),
            "preferred_channel": prefs.get(account.PREFERRED_CHANNEL, ""),
            "favourite_store": prefs.get(account.FAVOURITE_STORE, ""),
            "today": now.astimezone(viewer.program.tz).date(),
            "source_keys": account.SOURCE_KEYS,
            "channel_keys": account.CHANNEL_KEYS,
        }


def _profile_page(
    request: Request, viewer: Viewer, *, status: int = 200, **errors: str | None
) -> Response:
    context = _profile_context(request, viewer)
    return render(request, "profile.html", viewer=viewer, status=status, page="profile",
                  birthday_error=errors.get("birthday_error"),
                  preferences_error=errors.get("preferences_error"), **context)  # fmt: skip


def _shown(channel: str, contact: str) -> str:
    """A phone number as she writes it (010-1234-5678), an e-mail as it is."""
    return (national_format(contact) or contact) if channel == "sms" else contact


def _to_profile(request: Request, program: str) -> Response:
    return RedirectResponse(request.url_for("profile", program=program).path, status_code=303)


@router.get("/profile", name="profile")
def profile(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    return _profile_page(request, viewer)


# --- contact change -----------------------------------------------------------------------


@router.get("/profile/contact", name="contact_form")
def contact_form(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    return render(request, "contact.html", viewer=viewer, contact="", error=None, page="profile")


@router.post("/profile/contact", name="contact_start")
async def contact_start(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    raw = (await form_of(request)).get("contact", "").strip()[:254]
    throttle = limited(request)

    def run() -> tuple[tuple[str, str] | None, service.CodeMessage | None]:
        with get_db(request).unit_of_work() as session:
            the_program, member = member_of(session, viewer)
            parsed = account.parse_contact(the_program, raw)
            # Asking too often for one contact: the same page, just no new code.
            if parsed is None or not throttle.contact_allows(the_program.id, parsed[1]):
                return parsed, None
            return parsed, account.start_contact_change(
                session, the_program, member, *parsed, lang=viewer.language, now=clock.now()
            )

    parsed, message = await run_in_threadpool(run)
    if parsed is None:
        return render(request, "contact.html", viewer=viewer, status=422, contact=raw,
                      error="account.contact.invalid", page="profile")  # fmt: skip
    channel, contact = parsed
    response = render(request, "contact_code.html", viewer=viewer, contact=contact,
                      shown=_shown(channel, contact), error=None, page="profile")  # fmt: skip
    if message is not None:
        # After the answer: whether another member has the contact must not show in the timing.
        response.background = BackgroundTask(send_code, message)
    return response


@router.post("/profile/contact/code", name="contact_confirm")
async def contact_confirm(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    form = await form_of(request)
    contact, code = code_fields(form)
    limited(request)

    def run() -> account.ConfirmResult:
        try:
            with get_db(request).unit_of_work() as session:
                the_program, member = member_of(session, viewer)
                return account.confirm_contact_change(
                    session, the_program, member, contact, code, actor=actor(viewer),
                    now=clock.now(),
                )  # fmt: skip
        except IntegrityError:
            # Another member took the contact between the check and the write.
            return "taken"

    result = await run_in_threadpool(run)
    if result == "changed":
        return _to_profile(request, program)
    error = "account.contact.taken" if result == "taken" else "code.wrong"
    return render(request, "contact_code.html", viewer=viewer,
                  status=409 if result == "taken" else 422, contact=contact,
                  shown=_shown("sms" if contact.startswith("+") else "email", contact),
                  error=error, page="profile")  # fmt: skip


# --- birthday and preferences -------------------------------------------------------------


@router.post("/profile/birthday", name="set_birthday")
async def set_birthday(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    value = (await form_of(request)).get("birthday", "")[:20]
    today = clock.now().astimezone(viewer.program.tz).date()
    day, error = account.birthday_error(value, today=today)

    def run() -> bool:
        assert day is not None
        with get_db(request).unit_of_work() as session:
            the_program = session.get(Program, viewer.program.id)
            assert the_program is not None
            member = account.lock_member(session, viewer.member_id)
            return account.set_birthday(
                session, the_program, member, day, actor=actor(viewer), now=clock.now()
            )

    if error is None and not await run_in_threadpool(run):
        error = "account.birthday.already_set"
    if error is not None:
        return _profile_page(request, viewer, status=422, birthday_error=error)
    return _to_profile(request, program)


@router.post("/profile/preferences", name="set_preferences")
async def set_preferences(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    form = await form_of(request)
    channel, store = form.get("channel", "")[:10], form.get("store", "")[:40]

    def run() -> str | None:
        with get_db(request).unit_of_work() as session:
            the_program = session.get(Program, viewer.program.id)
            assert the_program is not None
            member = account.lock_member(session, viewer.member_id)
            error = account.preferences_error(session, the_program, member, channel, store)
            if error is None:
                account.set_preferences(
                    session, the_program, member, channel=channel, store=store,
                    actor=actor(viewer), now=clock.now(),
                )  # fmt: skip
            return error

    error = await run_in_threadpool(run)
    if error is not None:
        return _profile_page(request, viewer, status=422, preferences_error=error)
    return _to_profile(request, program)


# --- language, consents, sessions ---------------------------------------------------------


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
    return _to_profile(request, program)


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
    return _to_profile(request, program)


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
