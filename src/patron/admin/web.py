"""The admin UI as its own ASGI app, mounted at /admin by create_app.

A separate app keeps the admin out of the API's OpenAPI schema and gives it HTML error pages
(the API answers errors in JSON). It shares the API's Database, so both see one unit of work
per request and the same services.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from patron.admin import i18n
from patron.admin.deps import CsrfRejected, PermissionDenied, SignInRequired, verify_csrf
from patron.admin.templating import current_staff_of, path_for, render
from patron.admin.views import ROUTERS
from patron.db.engine import Database
from patron.errors import PatronError

log = logging.getLogger("patron.admin")
STATIC = Path(__file__).parent / "static"

# Everything the pages load comes from Patron itself; no inline script, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'self'"
)


def error_page(
    request: Request, status: int, title_key: str, detail: str | None = None
) -> Response:
    staff = current_staff_of(request)
    lang = staff.language if staff else "en"
    if request.headers.get("HX-Request"):
        # A fragment request: a small message the page can show in place.
        return render(
            request,
            "_error_fragment.html",
            status=status,
            title=i18n.translate(title_key, lang),
            detail=detail,
        )
    return render(
        request, "error.html", status=status, title_key=title_key, detail=detail, code=status
    )


def _patron_detail(exc: PatronError, request: Request) -> str:
    staff = current_staff_of(request)
    key = f"error.code.{exc.code}"
    return (
        i18n.translate(key, staff.language if staff else "en")
        if i18n.has_message(key)
        else (exc.detail)
    )


def create_admin_app(db: Database) -> FastAPI:
    app = FastAPI(
        title="Patron admin",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(verify_csrf)],
    )
    app.state.db = db
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith(request.scope.get("root_path", "") + "/static/"):
            # Pages show personal data: never kept in a shared browser's cache.
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _exc: SignInRequired) -> Response:
        target = path_for(request, "sign_in")
        if request.method == "GET":
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            target += "?next=" + quote(here, safe="")
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(PermissionDenied)
    async def _denied(request: Request, _exc: PermissionDenied) -> Response:
        return error_page(request, 403, "error.forbidden")

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, _exc: CsrfRejected) -> Response:
        return error_page(request, 403, "error.csrf")

    @app.exception_handler(PatronError)
    async def _patron(request: Request, exc: PatronError) -> Response:
        title = {404: "error.not_found", 409: "error.conflict"}.get(exc.status, "error.invalid")
        return error_page(request, exc.status, title, _patron_detail(exc, request))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # A malformed id in the address is a page that does not exist.
        if any(err.get("loc", ("",))[0] == "path" for err in exc.errors()):
            return error_page(request, 404, "error.not_found")
        return error_page(request, 422, "error.invalid")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = {404: "error.not_found", 405: "error.method"}.get(exc.status_code, "error.invalid")
        return error_page(request, exc.status_code, title)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> Response:
        log.warning("integrity error on an admin page: %s", exc.orig)
        return error_page(request, 409, "error.conflict")

    @app.exception_handler(DataError)
    async def _data(request: Request, _exc: DataError) -> Response:
        return error_page(request, 422, "error.invalid")

    @app.exception_handler(OperationalError)
    async def _busy(request: Request, exc: OperationalError) -> Response:
        log.error("database unavailable: %s", exc.orig)
        return error_page(request, 503, "error.busy")

    return app
