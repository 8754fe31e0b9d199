"""create_app(): routers, the one error shape, OpenAPI."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from patron import __version__, openapi
from patron.access import router as access_router
from patron.campaigns.api import router as campaigns_router
from patron.check import router as check_router
from patron.config import get_settings
from patron.db.engine import Database
from patron.delivery.api import router as webhook_test_router
from patron.earning.api import router as rules_router
from patron.earning.examples_api import router as rule_examples_router
from patron.errors import PatronError
from patron.events.api import router as events_router
from patron.fraud.api import router as fraud_router
from patron.ledger.api import router as points_router
from patron.members.api import router as members_router
from patron.milestones.api import router as milestones_router
from patron.moves.api import router as moves_router
from patron.notify.api import router as notify_router
from patron.notify.templates_api import router as templates_router
from patron.notify.unsubscribe import router as unsubscribe_router
from patron.ops.middleware import OpsMiddleware
from patron.ops.routes import metrics_router, ready_router
from patron.portal.card_api import router as card_token_router
from patron.portal.enrollment_api import router as enrollment_router
from patron.privacy.api import router as privacy_router
from patron.reports.api import router as reports_router
from patron.review.api import router as review_router
from patron.rewards.api import router as rewards_router
from patron.rewards.offline_api import router as offline_coupons_router
from patron.sales.api import router as sales_router
from patron.sales.till_route import TillRoute, group_commit_for
from patron.segment_deletion import router as segment_deletion_router
from patron.segments.api import router as segments_router
from patron.setup.api import router as programs_router
from patron.setup.branding_api import router as branding_router
from patron.surveys.api import router as surveys_router
from patron.surveys.page import router as survey_page_router
from patron.text import TextGuard
from patron.tiers.api import router as tiers_router
from patron.tiers.read_api import router as tier_reads_router
from patron.wallet.api import router as wallet_router
from patron.webhooks.api import router as webhooks_router

log = logging.getLogger("patron")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
}


def _location(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p not in ("body",)) or "body"


INVALID_JSON = {"error": "invalid_json", "detail": "the request body is not valid JSON"}


def _unparsable_json(request: Request, exc: StarletteHTTPException) -> bool:
    """FastAPI's 400 for a JSON body its decoder failed on other than with a JSONDecodeError:
    nested deeper than json.loads goes (RecursionError) or not UTF-8. Malformed like any other
    invalid JSON, so it gets the same answer. (A form body's parse errors keep their own.)"""
    if exc.status_code != 400:
        return False
    if request.url.path.startswith("/api/"):
        # FastAPI raises a 400 only when it cannot read a body: on the API, always JSON.
        return True
    if not isinstance(exc.__cause__, (RecursionError, ValueError)):
        return False
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind in ("", "application/json") or kind.endswith("+json")


def _validation_detail(exc: RequestValidationError) -> tuple[str, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return INVALID_JSON["error"], INVALID_JSON["detail"]
    parts = []
    for err in errors[:5]:
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{_location(tuple(err.get('loc', ())))}: {message}")
    return "validation_error", "; ".join(parts)


def create_app(
    database_url: str | None = None,
    *,
    db: Database | None = None,
    till_route: bool = True,
    group_commit: bool | None = None,
    delivery: bool = False,
    metrics: bool | None = None,
) -> FastAPI:
    """The API with the admin UI mounted. `till_route=False` leaves the purchase call to the
    FastAPI route alone; `group_commit` overrides the PATRON_GROUP_COMMIT setting;
    `delivery=True` runs the outbox delivery loop on a thread of this process; `metrics`
    overrides the PATRON_METRICS setting (/metrics and request counting)."""
    settings = get_settings()
    app = FastAPI(
        title="Patron",
        version=__version__,
        summary="API-first customer loyalty engine: members, an append-only points ledger, POS API.",
        description="Every `/api/v1` call needs an API key (`Authorization: Bearer <key>` or "
        '`X-API-Key`). Errors are always `{"error": code, "detail": message}`.',
    )
    app.state.db = db or Database(
        database_url or settings.resolved_database_url, pool_size=settings.pool_size
    )

    @app.exception_handler(PatronError)
    async def _patron_error(_request: Request, exc: PatronError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        code, detail = _validation_detail(exc)
        return JSONResponse(
            {"error": code, "detail": detail}, status_code=400 if code == "invalid_json" else 422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if _unparsable_json(request, exc):
            return JSONResponse(INVALID_JSON, status_code=400)
        code = HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse(
            {"error": code, "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(_request: Request, exc: IntegrityError) -> JSONResponse:
        log.warning("integrity error turned into 409: %s", exc.orig)
        return JSONResponse(
            {"error": "conflict", "detail": "the change conflicts with existing data"},
            status_code=409,
        )

    @app.exception_handler(DataError)
    async def _data(_request: Request, exc: DataError) -> JSONResponse:
        return JSONResponse(
            {
                "error": "invalid_value",
                "detail": "a value cannot be stored "
                "(out of range or contains characters such as NUL)",
            },
            status_code=422,
        )

    @app.exception_handler(OperationalError)
    async def _busy(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc.orig)
        return JSONResponse(
            {
                "error": "database_unavailable",
                "detail": "the database is busy or "
                "unreachable; retry with the same Idempotency-Key",
            },
            status_code=503,
        )

    # Mounted first: a page request never walks (nor builds, on a fresh app) the API's 180
    # routes. The admin web UI: its own app (HTML errors, not in the OpenAPI schema), same database.
    from patron.admin.web import create_admin_app

    app.mount("/admin", create_admin_app(app.state.db))

    # The member pages (/m/{program}/…): their own app too, HTML only, same database.
    from patron.portal.app import create_portal_app

    app.mount("/m", create_portal_app(app.state.db))

    # Before the tier write router, so /tiers/near-miss is never read as a tier code.
    app.include_router(tier_reads_router)
    app.include_router(reports_router)
    # Before the rewards router, so /coupons/keys is never read as a coupon code.
    app.include_router(offline_coupons_router)
    app.include_router(rewards_router)
    for router in (
        programs_router,
        branding_router,
        members_router,
        moves_router,
        sales_router,
        points_router,
        check_router,
        access_router,
        rules_router,
        rule_examples_router,
        tiers_router,
        events_router,
        notify_router,
        templates_router,
        webhooks_router,
        webhook_test_router,
        unsubscribe_router,
        wallet_router,
        enrollment_router,
        card_token_router,
        fraud_router,
        review_router,
        segments_router,
        segment_deletion_router,
        campaigns_router,
        surveys_router,
        survey_page_router,
        milestones_router,
        privacy_router,
    ):
        app.include_router(router)

    @app.get("/health", tags=["operations"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    # The till's purchase call, answered without the framework when it can be (same functions,
    # same answers; everything else goes on to the routes above).
    app.state.group_commit = group_commit_for(app.state.db, group_commit) if till_route else None
    if till_route:
        app.add_middleware(TillRoute, db=app.state.db, groups=app.state.group_commit)
    # Outside the till route, so every /api call is refused NUL and lone surrogates alike.
    app.add_middleware(TextGuard)
    # Outermost: every request gets its X-Request-ID and is counted, the till's included.
    use_metrics = settings.metrics if metrics is None else metrics
    app.add_middleware(OpsMiddleware, metrics=use_metrics)
    app.include_router(ready_router)
    if use_metrics:
        app.include_router(metrics_router)
    openapi.install(app)

    if delivery:
        from patron.ops.jobs import MeasuredDeliveryLoop

        loop = MeasuredDeliveryLoop(app.state.db, settings=settings)
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(a: Any) -> AsyncIterator[Any]:
            loop.start()
            try:
                async with inner(a) as state:
                    yield state
            finally:
                loop.stop()

        app.router.lifespan_context = lifespan

    @app.get("/", include_in_schema=False)
    def root() -> dict[str, str]:
        return {"name": "Patron", "docs": "/docs", "openapi": "/openapi.json"}

    return app


def serve_app() -> FastAPI:
    """What `patron serve` runs in each server process: the app, with the delivery loop unless
    PATRON_DELIVERY_IN_PROCESS=false.

    What is loaded by then (the framework, the models, every route: most of the process's
    objects) is frozen out of the garbage collector's reach: a full collection scanned all of
    it, a pause of 150–175 ms every few seconds under a till load (decision 0017, second
    addendum)."""
    app = create_app(delivery=get_settings().delivery_in_process)
    gc.freeze()
    return app
