"""The member pages as their own ASGI app, mounted at /m by create_app: /m/{program}/…

Like the admin app it shares the API's Database, answers errors as HTML pages, checks a CSRF
token on every POST (the session's, or before sign-in a double-submitted cookie) and sends
no script at all. Every page is for the signed-in member only and shows only her rows: anything
addressed by a code or id that is not hers answers 404, as if it did not exist.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from patron import clock
from patron.config import get_settings
from patron.db.engine import Database
from patron.errors import NotFound, PatronError
from patron.notify import channels
from patron.portal import i18n, service
from patron.portal.templating import render
from patron.programs.models import Program
from patron.programs.service import get_program

log = logging.getLogger("patron.portal")
STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "patron_member"
SIGNIN_COOKIE = "patron_member_signin"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSP = (
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'self'"
)


@dataclass(frozen=True)
class ProgramInfo:
    id: int
    code: str
    name: str
    currency: str
    timezone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Viewer:
    """The signed-in member, copied out of the session that found her."""

    program: ProgramInfo
    member_id: int
    name: str
    language: str
    session_id: int
    csrf_token: str


class SignInRequired(Exception):
    def __init__(self, program: str) -> None:
        super().__init__(program)
        self.program = program


class CsrfRejected(Exception):
    pass


class TooManyRequests(Exception):
    pass


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def program_info(program: Program) -> ProgramInfo:
    return ProgramInfo(program.id, program.code, program.name, program.currency, program.timezone)


def load_program(request: Request, code: str) -> ProgramInfo:
    if not hasattr(request.state, "program"):
        with get_db(request).unit_of_work(readonly=True) as session:
            request.state.program = program_info(get_program(session, code))
    info: ProgramInfo = request.state.program
    return info


def optional_viewer(request: Request) -> Viewer | None:
    """The signed-in member of the program in the address, or None; looked up once."""
    if hasattr(request.state, "viewer"):
        found: Viewer | None = request.state.viewer
        return found
    viewer = None
    code = request.path_params.get("program")
    token = request.cookies.get(SESSION_COOKIE)
    if code and token:
        info = load_program(request, code)
        from patron.members.models import Member

        with get_db(request).unit_of_work(readonly=True) as session:
            program = session.get(Program, info.id)
            assert program is not None
            row = service.resolve_session(session, program, token, now=clock.now())
            member = session.get(Member, row.member_id) if row is not None else None
            if row is not None and member is not None and member.status == "active":
                viewer = Viewer(
                    program=info,
                    member_id=member.id,
                    name=member.name,
                    language=i18n.language(member.language),
                    session_id=row.id,
                    csrf_token=row.csrf_token,
                )
    request.state.viewer = viewer
    return viewer


def current_viewer(request: Request, viewer: Viewer | None = Depends(optional_viewer)) -> Viewer:
    if viewer is None:
        code = str(request.path_params.get("program", ""))
        load_program(request, code)  # an unknown program is a 404, not a sign-in page
        raise SignInRequired(code)
    return viewer


async def verify_csrf(request: Request) -> None:
    if request.method in SAFE_METHODS:
        return
    viewer = await run_in_threadpool(optional_viewer, request)
    expected = viewer.csrf_token if viewer is not None else request.cookies.get(SIGNIN_COOKIE)
    sent = None
    if request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRejected()


def error_page(request: Request, status: int, title_key: str, detail: str | None = None):
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    return render(request, "error.html", viewer=viewer, status=status, title_key=title_key,
                  detail=detail)  # fmt: skip


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def send_code(message: service.CodeMessage) -> None:
    """Straight through the channel (never the outbox: a code must not reach a webhook)."""
    result = channels.send(
        message.channel, message.to, message.subject, message.body, settings=get_settings()
    )
    if not result.ok:
        log.warning("sign-in code not sent on %s: %s", message.channel, result.error)


def create_portal_app(db: Database) -> FastAPI:
    from patron.portal.views import router

    app = FastAPI(
        title="Patron member pages",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(verify_csrf)],
    )
    app.state.db = db
    app.state.throttle = service.Throttle()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(router)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if "/static/" not in request.url.path:
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/{exc.program}/sign-in", status_code=303)

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, _exc: CsrfRejected) -> Response:
        return error_page(request, 403, "error.csrf")

    @app.exception_handler(TooManyRequests)
    async def _busy(request: Request, _exc: TooManyRequests) -> Response:
        return error_page(request, 429, "error.too_many")

    @app.exception_handler(PatronError)
    async def _patron(request: Request, exc: PatronError) -> Response:
        if isinstance(exc, NotFound):
            return error_page(request, 404, "error.not_found")
        key = f"reason.{exc.code}"
        viewer: Viewer | None = getattr(request.state, "viewer", None)
        lang = viewer.language if viewer else i18n.DEFAULT_LANGUAGE
        detail = i18n.translate(key, lang) if key in i18n.catalog() else None
        return error_page(request, exc.status if exc.status < 500 else 409, "error.refused", detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if any(err.get("loc", ("",))[0] == "path" for err in exc.errors()):
            return error_page(request, 404, "error.not_found")
        return error_page(request, 422, "error.invalid")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return error_page(
            request,
            exc.status_code,
            "error.not_found" if exc.status_code == 404 else "error.invalid",
        )

    return app


def new_signin_token() -> str:
    return secrets.token_urlsafe(24)


def cookie_args(request: Request, program: str) -> dict[str, Any]:
    return {
        "httponly": True,
        "samesite": "lax",
        "secure": request.url.scheme == "https",
        "path": f"{request.scope.get('root_path', '')}/{program}",
    }
