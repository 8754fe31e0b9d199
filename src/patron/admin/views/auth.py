"""Sign-in, sign-out, and the user's own account: password and language."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from patron import clock
from patron.admin import forms, i18n, service
from patron.admin.deps import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    Staff,
    current_staff,
    form_data,
    get_db,
    optional_staff,
)
from patron.admin.settings import get_admin_settings
from patron.admin.templating import browser_language, path_for, render
from patron.errors import PatronError

router = APIRouter()


def secure_cookies(request: Request) -> bool:
    mode = get_admin_settings().cookie_secure
    return mode == "always" or (mode == "auto" and request.url.scheme == "https")


def _cookie_path(request: Request) -> str:
    return request.scope.get("root_path", "") or "/"


def safe_next(request: Request, target: str | None) -> str:
    """Only a path inside the admin UI: never another site (no open redirect)."""
    root = request.scope.get("root_path", "")
    if (
        target
        and target.startswith(root + "/")
        and not target.startswith("//")
        and "\\" not in target
        and "\n" not in target
        and "\r" not in target
    ):
        return target
    return path_for(request, "home")


def _sign_in_page(
    request: Request,
    *,
    token: str,
    email: str = "",
    next_url: str = "",
    errors: forms.Errors | None = None,
    status: int = 200,
    notice: str | None = None,
) -> Response:
    response = render(
        request,
        "sign_in.html",
        status=status,
        csrf_token=token,
        email=email,
        next_url=next_url,
        errors=errors or {},
        notice=notice,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
        path=_cookie_path(request),
    )
    return response


@router.get("/sign-in", name="sign_in")
def sign_in_form(request: Request, staff: Staff | None = Depends(optional_staff)) -> Response:
    if staff is not None:
        return RedirectResponse(safe_next(request, request.query_params.get("next")), 303)
    token = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(32)
    notice = "auth.signed_out" if request.query_params.get("signed_out") else None
    return _sign_in_page(
        request, token=token, next_url=request.query_params.get("next", "")[:500], notice=notice
    )


@router.post("/sign-in", name="sign_in_submit")
def sign_in(request: Request, form: dict[str, str] = Depends(form_data)) -> Response:
    lang = browser_language(request)
    email = form.get("email", "").strip()[:254]
    password = form.get("password", "")
    next_url = form.get("next", "")[:500]
    token = request.cookies.get(SIGNIN_COOKIE, "")
    errors = forms.required({"email": email, "password": password}, ("email", "password"), lang)
    if errors:
        return _sign_in_page(
            request, token=token, email=email, next_url=next_url, errors=errors, status=422
        )
    db = get_db(request)
    now = clock.now()
    with db.unit_of_work() as session:
        result = service.authenticate(session, email=email, password=password, now=now)
        if result.ok:
            assert result.user is not None
            _row, session_token = service.start_session(
                session, result.user, now=now, user_agent=request.headers.get("user-agent")
            )
    if not result.ok:
        if result.failure == "locked":
            message = i18n.translate(
                "auth.locked", lang, minutes=get_admin_settings().lockout_minutes
            )
        elif result.failure == "inactive":
            message = i18n.translate("auth.inactive", lang)
        else:
            message = i18n.translate("auth.invalid", lang)
        return _sign_in_page(
            request,
            token=token,
            email=email,
            next_url=next_url,
            errors={forms.FORM: message},
            status=401,
        )
    response = RedirectResponse(safe_next(request, next_url), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_token,
        max_age=get_admin_settings().session_hours * 3600,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
        path=_cookie_path(request),
    )
    response.delete_cookie(
        SIGNIN_COOKIE,
        path=_cookie_path(request),
        secure=secure_cookies(request),
        httponly=True,
        samesite="lax",
    )
    return response


@router.post("/sign-out", name="sign_out")
def sign_out(request: Request, staff: Staff = Depends(current_staff)) -> Response:
    with get_db(request).unit_of_work() as session:
        service.end_session(
            session,
            staff.session_id,
            user=service.get_user(session, staff.user_id),
            now=clock.now(),
        )
    response = RedirectResponse(path_for(request, "sign_in", {"signed_out": "1"}), status_code=303)
    response.delete_cookie(
        SESSION_COOKIE,
        path=_cookie_path(request),
        secure=secure_cookies(request),
        httponly=True,
        samesite="lax",
    )
    return response


def _account_page(
    request: Request, staff: Staff, *, errors: forms.Errors | None = None, status: int = 200
) -> Response:
    return render(
        request,
        "account/account.html",
        status=status,
        section="account",
        errors=errors or {},
        done=request.query_params.get("done"),
    )


@router.get("/account", name="account")
def account(request: Request, staff: Staff = Depends(current_staff)) -> Response:
    return _account_page(request, staff)


@router.post("/account/password", name="account_password")
def change_password(
    request: Request,
    staff: Staff = Depends(current_staff),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    fields = ("current_password", "password", "password_again")
    errors = forms.required(form, fields, lang)
    if not errors and form["password"] != form["password_again"]:
        errors = {"password_again": i18n.translate("account.password.mismatch", lang)}
    if errors:
        return _account_page(request, staff, errors=errors, status=422)
    try:
        with get_db(request).unit_of_work() as session:
            service.change_password(
                session,
                service.get_user(session, staff.user_id),
                current=form["current_password"],
                new=form["password"],
                now=clock.now(),
                keep_session=staff.session_id,
            )
    except PatronError as exc:
        return _account_page(request, staff, errors=forms.from_error(exc, lang, fields), status=422)
    return RedirectResponse(path_for(request, "account", {"done": "password"}), status_code=303)


@router.post("/account/language", name="account_language")
def change_language(
    request: Request,
    staff: Staff = Depends(current_staff),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    language = form.get("language", "")
    if language in i18n.LANGUAGES:
        with get_db(request).unit_of_work() as session:
            service.set_language(
                session, service.get_user(session, staff.user_id), language, now=clock.now()
            )
    return RedirectResponse(safe_next(request, form.get("next")), status_code=303)
