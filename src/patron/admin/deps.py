"""Who is signed in, what they may do, and the CSRF check every state-changing request passes.

    @router.get("/reports", name="reports_home")
    def reports(request: Request, staff: Staff = Depends(require("reports.view"))): ...

`require(permission)` answers a signed-out browser with a redirect to the sign-in page and a
signed-in user without the permission with a 403 page. `verify_csrf` runs on every admin route
(it is a dependency of the whole admin app): a POST, PUT, PATCH or DELETE must carry the
session's token in the `csrf_token` form field or the `X-CSRF-Token` header (htmx sends it).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from patron import clock
from patron.admin import service
from patron.admin.roles import can
from patron.audit.service import Actor
from patron.db.engine import Database

SESSION_COOKIE = "patron_session"
# Before sign-in there is no session: the sign-in form's token is double-submitted in this cookie.
SIGNIN_COOKIE = "patron_signin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Staff:
    """The signed-in user, copied out of the database session that found them."""

    user_id: int
    email: str
    name: str
    role: str
    language: str
    session_id: int
    csrf_token: str

    @property
    def actor(self) -> Actor:
        return Actor("user", str(self.user_id))

    def can(self, permission: str) -> bool:
        return can(self.role, permission)


class SignInRequired(Exception):
    """No live session: a browser is sent to the sign-in page."""


class PermissionDenied(Exception):
    def __init__(self, permission: str) -> None:
        super().__init__(permission)
        self.permission = permission


class CsrfRejected(Exception):
    """A state-changing request without the right CSRF token."""


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _load(db: Database, token: str | None) -> Staff | None:
    with db.unit_of_work(readonly=True) as session:
        found = service.resolve_session(session, token, now=clock.now())
        if found is None:
            return None
        row, user = found
        return Staff(
            user_id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,
            language=user.language,
            session_id=row.id,
            csrf_token=row.csrf_token,
        )


def optional_staff(request: Request) -> Staff | None:
    """The signed-in user or None; looked up once per request."""
    if not hasattr(request.state, "staff"):
        token = request.cookies.get(SESSION_COOKIE)
        request.state.staff = _load(get_db(request), token) if token else None
    staff: Staff | None = request.state.staff
    return staff


def current_staff(staff: Staff | None = Depends(optional_staff)) -> Staff:
    if staff is None:
        raise SignInRequired()
    return staff


def require(permission: str) -> Callable[..., Staff]:
    """A dependency: the signed-in user must hold `permission` (see roles.PERMISSIONS)."""
    can("owner", permission)  # an unknown permission fails at import, not at request time

    def check(staff: Staff = Depends(current_staff)) -> Staff:
        if not staff.can(permission):
            raise PermissionDenied(permission)
        return staff

    return check


async def verify_csrf(request: Request) -> None:
    if request.method in SAFE_METHODS:
        return
    staff = await run_in_threadpool(optional_staff, request)
    expected = staff.csrf_token if staff is not None else request.cookies.get(SIGNIN_COOKIE)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRejected()


async def form_data(request: Request) -> dict[str, str]:
    """The posted form as plain strings (files are ignored; the admin UI uploads none).
    Starlette caches the parsed form, so the CSRF check has not consumed it."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}
