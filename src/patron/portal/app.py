"""The member pages as their own ASGI app, mounted at /m by patron.app."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from patron.config import get_settings
from patron.db.engine import Database
from patron.errors import NotFound, PatronError
from patron.portal import (
    account_views,
    card_views,
    engagement,
    i18n,
    privacy_views,
    pwa_views,
    service,
    signup_views,
    views,
)
from patron.portal.context import Viewer
from patron.portal.security import CSP
from patron.portal.web import (
    STATIC,
    CsrfRejected,
    SignInRequired,
    TooManyRequests,
    error_page,
    verify_csrf,
)


def create_portal_app(db: Database) -> FastAPI:
    app = FastAPI(
        title="Patron member pages",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(verify_csrf)],
    )
    app.state.db = db
    app.state.throttle = service.Throttle(get_settings().rate_limit_storage)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (
        views,
        engagement,
        card_views,
        account_views,
        signup_views,
        privacy_views,
        pwa_views,
    ):
        app.include_router(module.router)

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
