"""Joining the program on the member page: the form, the code, the new member signed in.

Each handler parses the request and calls portal/signup.py. Like signing in, the form answers
the same whether or not the contact belongs to a member, sends its message after answering, and
counts requests per IP address and per contact (the sign-in throttle).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from patron import clock
from patron.errors import NotFound
from patron.portal import service, signup
from patron.portal.templating import browser_language, render
from patron.portal.web import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    ProgramCode,
    Viewer,
    code_fields,
    cookie_args,
    form_of,
    get_db,
    limited,
    load_program,
    new_signin_token,
    optional_viewer,
    send_code,
)
from patron.programs.models import Program

router = APIRouter(prefix="/{program}")
FORM_FIELDS = ("name", "email", "phone", "birthday")


def _page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """A page before sign-in, with the double-submitted CSRF cookie the POST checks."""
    token = request.cookies.get(SIGNIN_COOKIE) or new_signin_token()
    response = render(request, template, viewer=None, status=status, csrf_token=token, **context)
    response.set_cookie(
        SIGNIN_COOKIE, token, max_age=3600, **cookie_args(request, request.path_params["program"])
    )
    return response


def _settings(request: Request, program_id: int) -> signup.SignupSettings:
    with get_db(request).unit_of_work(readonly=True) as session:
        found = session.get(Program, program_id)
        assert found is not None
        settings = signup.get(session, found)
    if not settings.enabled:
        raise NotFound("sign-up is not open in this program")
    return settings


def _form_page(
    request: Request,
    settings: signup.SignupSettings,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    v = values or {**dict.fromkeys(FORM_FIELDS, ""), "consents": ()}
    return _page(request, "signup.html", status, settings=settings, v=v, errors=errors or {})


@router.get("/join", name="join")
def join(
    request: Request,
    program: str = ProgramCode,
    viewer: Viewer | None = Depends(optional_viewer),
) -> Response:
    info = load_program(request, program)
    settings = _settings(request, info.id)
    if viewer is not None:  # a member already: her page, not the form
        return RedirectResponse(request.url_for("home", program=program).path, status_code=303)
    return _form_page(request, settings)


@router.post("/join", name="join_request")
async def join_request(request: Request, program: str = ProgramCode) -> Response:
    info = load_program(request, program)
    form = await form_of(request)
    throttle = limited(request)
    lang = browser_language(request)
    settings = await run_in_threadpool(_settings, request, info.id)

    def run() -> tuple[signup.SignupForm | None, dict[str, str], service.CodeMessage | None]:
        now = clock.now()
        with get_db(request).unit_of_work() as session:
            found = session.get(Program, info.id)
            assert found is not None
            today = now.astimezone(info.tz).date()
            parsed, errors = signup.parse_form(settings, found, form, today=today)
            # A contact asking too often gets the same page, just no new code.
            if parsed is None or not throttle.contact_allows(info.id, parsed.contact):
                return parsed, errors, None
            return parsed, {}, signup.begin(session, found, parsed, lang=lang, now=now)

    parsed, errors, message = await run_in_threadpool(run)
    if parsed is None:
        values = {
            **{name: form.get(name, "").strip()[:254] for name in FORM_FIELDS},
            "consents": tuple(c for c in ("email", "sms") if form.get(f"consent_{c}") == "on"),
        }
        return _form_page(request, settings, values=values, errors=errors, status=422)
    response = _page(request, "signup_code.html", contact=parsed.contact, error=None)
    if message is not None:
        # Sent after the answer, so a member's contact is not told apart by a slower reply.
        response.background = BackgroundTask(send_code, message)
    return response


@router.post("/join/code", name="join_code")
async def join_code(request: Request, program: str = ProgramCode) -> Response:
    info = load_program(request, program)
    form = await form_of(request)
    contact, code = code_fields(form)
    limited(request)
    await run_in_threadpool(_settings, request, info.id)

    def run() -> signup.Finished | None:
        with get_db(request).unit_of_work() as session:
            found = session.get(Program, info.id)
            assert found is not None
            return signup.finish(
                session, found, contact, code, now=clock.now(),
                user_agent=request.headers.get("user-agent"),
            )  # fmt: skip

    finished = await run_in_threadpool(run)
    if finished is None:
        return _page(request, "signup_code.html", 422, contact=contact, error="code.wrong")
    if finished.signed is None:
        return _page(request, "signup_code.html", contact=contact, error=None, already=True)
    response = RedirectResponse(request.url_for("home", program=program).path, status_code=303)
    args = cookie_args(request, program)
    response.set_cookie(
        SESSION_COOKIE,
        finished.signed.token,
        max_age=int(service.SESSION_TTL.total_seconds()),
        **args,
    )
    response.delete_cookie(SIGNIN_COOKIE, path=args["path"])
    return response
