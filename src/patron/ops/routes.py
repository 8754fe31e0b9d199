"""`/ready` and `/metrics`, beside the app's `/health` (docs/operations.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from patron.config import get_settings
from patron.errors import ErrorBody, PatronError, responses
from patron.ops.metrics import exposition
from patron.ops.readiness import readiness


class NotReady(PatronError):
    status = 503
    code = "not_ready"


class ReadyBody(BaseModel):
    status: str = Field(description="`ready`")
    checks: dict[str, Any] = Field(
        description="database (reachable, dialect), migrations (current and head revisions), "
        "outbox (undispatched events, age of the oldest, deliveries due)"
    )


class NotReadyBody(ErrorBody):
    checks: dict[str, Any] = Field(description="every check's details, as when ready")


ready_router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"])


@ready_router.get(
    "/ready",
    response_model=ReadyBody,
    responses={503: {**responses(NotReady)[503], "model": NotReadyBody}},
    summary="Readiness: database reachable, schema at head, outbox not lagging",
)
def ready(request: Request) -> Any:
    ok, reason, checks = readiness(request.app.state.db, get_settings())
    if ok:
        return {"status": "ready", "checks": checks}
    return JSONResponse(
        {"error": NotReady.code, "detail": reason, "checks": checks}, status_code=503
    )


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics (docs/operations.md lists them)",
)
async def metrics(request: Request) -> Response:
    # The outbox lag is read from the database: off the event loop.
    body, content_type = await run_in_threadpool(exposition, request.app.state.db)
    return Response(body, media_type=content_type)
