"""Who is signed in, what they may do, and the CSRF check every state-changing request passes.

    @router.get("/reports", name="reports_home")
    def reports(request: Request, staff: Staff = Depends(require("reports.view"))): ...

`require(permission)` answers a signed-out browser with a redirect to the sign-in page and a
signed-in user without the permission with a 403 page. A user limited to programs
(`Staff.programs`) is also kept inside them here, for every page at once: a program named in the
path (`{code}`), the query or the form (`program`) outside them is a 403 page, a member
(`{member_id}`) enrolled in none of them a 404, a staff user they do not manage a 404; and the
pages' program lists and default program come from `program_context.visible` (see there). `verify_csrf` runs on every admin route
(it is a dependency of the whole admin app): a POST, PUT, PATCH or DELETE must carry the
session's token in the `csrf_token` form field or the `X-CSRF-Token` header (htmx sends it).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from patron import clock
from patron.admin import program_context, service
from patron.admin.roles import can
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import NotFound
from patron.members.service import in_reach

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
    # The programs (codes) this user may see and act in; None: every program.
    programs: frozenset[str] | None = None

    @property
    def actor(self) -> Actor:
        # The reach travels with the actor, so services that honour a key's reach
        # (members.service.get_member(actor=...), ...) honour the user's too.
        return Actor("user", str(self.user_id), programs=self.programs)

    def can(self, permission: str) -> bool:
        return can(self.role, permission)

    def reaches(self, program: str) -> bool:
        return self.programs is None or program in self.programs


class SignInRequired(Exception):
    """No live session: a browser is sent to the sign-in page."""


class PermissionDenied(Exception):
    def __init__(self, permission: str) -> None:
        super().__init__(permission)
        self.permission = permission


class OutOfReach(PermissionDenied):
    """A user limited to programs asked for another program's page (or a deployment-wide one)."""


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
            # Read from the user's row on every request: a reach change applies at the next one.
            programs=None if user.programs is None else frozenset(user.programs),
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


def require(permission: str) -> Callable[..., Awaitable[Staff]]:
    """A dependency: the signed-in user must hold `permission` (see roles.PERMISSIONS)."""
    can("owner", permission)  # an unknown permission fails at import, not at request time

    async def check(request: Request, staff: Staff = Depends(current_staff)) -> Staff:
        if not staff.can(permission):
            raise PermissionDenied(permission)
        # Async on purpose: a context variable set here is seen by the (threaded) view.
        program_context.set_reach(staff.programs)
        if staff.programs is not None:
            await within_reach(request, staff)
        return staff

    return check


# Pages that act on the whole deployment: not for a user limited to programs.
DEPLOYMENT_WIDE = frozenset({"program_new", "program_create"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def within_reach(request: Request, staff: Staff) -> None:
    """Keep a user limited to programs inside them (see the module's docstring)."""
    assert staff.programs is not None
    asked = [str(request.path_params["code"])] if "code" in request.path_params else []
    asked += request.query_params.getlist("program")
    if request.method not in SAFE_METHODS and request.headers.get("content-type", "").startswith(
        FORM_TYPES
    ):
        asked += [v for v in (await request.form()).getlist("program") if isinstance(v, str)]
    outside = sorted({c.strip() for c in asked if c.strip()} - staff.programs)
    if outside:
        raise OutOfReach(f"program:{outside[0]}")
    route = request.scope.get("route")
    if getattr(route, "name", None) in DEPLOYMENT_WIDE:
        raise OutOfReach("deployment")
    member_id = request.path_params.get("member_id")
    if member_id is not None:
        await run_in_threadpool(_member_in_reach, get_db(request), staff, str(member_id))
    user_id = request.path_params.get("user_id")
    if user_id is not None and getattr(route, "path", "").startswith("/staff/users/"):
        await run_in_threadpool(_user_managed, get_db(request), staff, str(user_id))


def _member_in_reach(db: Database, staff: Staff, member_id: str) -> None:
    """A member enrolled in none of the user's programs is not found (as for a key)."""
    if not member_id.isdigit() or len(member_id) > 16:
        return  # the route's own validation answers a malformed id
    with db.unit_of_work(readonly=True) as session:
        if not in_reach(session, staff.actor, int(member_id)):
            raise NotFound(f"no member with id {member_id}", code="member_not_found")


def _user_managed(db: Database, staff: Staff, user_id: str) -> None:
    """A staff user outside a limited manager's programs is not found for them."""
    if not user_id.isdigit() or len(user_id) > 16:
        return
    with db.unit_of_work(readonly=True) as session:
        user = session.get(service.StaffUser, int(user_id))
        if user is not None and not service.manages(staff.programs, user):
            raise NotFound(f"no staff user {user_id}", code="staff_user_not_found")


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
