"""Webhook endpoints over HTTP: register, list, change, remove, rotate the secret, and read an
endpoint's delivery log. The test send's route is patron.delivery.api's (it drives the runner).

Every call needs the admin scope, reads included: an endpoint's URL often carries a credential
of its own (Slack-style hook URLs, ?token=…), and the delivery log holds what receivers
answered, so read and pos keys see none of it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from patron import http
from patron.audit.service import Actor
from patron.clock import as_utc
from patron.db.engine import Database
from patron.errors import Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.events import service as events
from patron.events.schemas import DeliveryPage
from patron.programs.models import Program
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program
from patron.webhooks import service, signing
from patron.webhooks.models import WebhookEndpoint
from patron.webhooks.schemas import (
    RotateRequest,
    SecretRotated,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookUpdate,
)
from patron.webhooks.ssrf import InvalidUrl


class ProgramNotFound(NotFound):
    code = "program_not_found"


class InvalidCursor(Invalid):
    code = "invalid_cursor"


class ValidationFailed(Invalid):
    """A field missing or out of range (the app's request-validation handler)."""

    code = "validation_error"


router = APIRouter(
    prefix="/api/v1",
    tags=["webhooks"],
    responses=responses(Unauthorized, Forbidden),
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
WebhookId = Path(ge=1, le=2**53, description="The endpoint's id")
# Each route declares every error it can answer (one call, so codes sharing a status merge).
PROGRAM_ERRORS = responses(ProgramNotFound, ValidationFailed)
ENDPOINT_ERRORS = responses(ProgramNotFound, service.WebhookNotFound, ValidationFailed)
FIELD_ERRORS = (InvalidUrl, service.UnknownEventType, ValidationFailed)


def to_out(
    endpoint: WebhookEndpoint, program_code: str, last_status: str | None = None
) -> WebhookOut:
    return WebhookOut(
        id=endpoint.id,
        program=program_code,
        url=endpoint.url,
        description=endpoint.description,
        event_types=list(endpoint.event_types),
        active=endpoint.active,
        secret_hint=signing.secret_hint(endpoint.secret),
        previous_secret_until=(
            as_utc(endpoint.previous_secret_until)
            if endpoint.previous_secret and endpoint.previous_secret_until is not None
            else None
        ),
        last_delivery_status=last_status,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def _endpoint(session: Any, code: str, webhook_id: int) -> tuple[Program, WebhookEndpoint]:
    program = get_program(session, code)
    return program, service.get_endpoint(session, program, webhook_id, for_update=True)


@router.post(
    "/programs/{code}/webhooks",
    status_code=201,
    response_model=WebhookCreated,
    responses=responses(ProgramNotFound, *FIELD_ERRORS),
    summary="Register a webhook endpoint; the answer holds its signing secret, once",
)
def create_webhook(
    body: WebhookCreate,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    def run(s: Any) -> WebhookCreated:
        program = get_program(s, code)
        endpoint, secret = service.create_endpoint(
            s,
            program,
            body.url,
            body.description,
            body.event_types,
            actor=actor,
            now=http.now(),
        )
        return WebhookCreated(**to_out(endpoint, program.code).model_dump(), secret=secret)

    return http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"program": code, **body.model_dump(mode="json")},
        status_code=201,
    )


@router.get(
    "/programs/{code}/webhooks",
    response_model=list[WebhookOut],
    responses=PROGRAM_ERRORS,
    summary="The program's webhook endpoints (secrets shown as a hint only)",
)
def list_webhooks(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("admin")),
) -> list[WebhookOut]:
    def run(s: Any) -> list[WebhookOut]:
        program = get_program(s, code)
        rows = service.list_endpoints(s, program)
        last = service.last_statuses(s, [e.id for e in rows])
        return [to_out(e, program.code, last.get(e.id)) for e in rows]

    return http.read(db, run)


@router.get(
    "/programs/{code}/webhooks/{webhook_id}",
    response_model=WebhookOut,
    responses=ENDPOINT_ERRORS,
)
def get_webhook(
    code: str = ProgramCode,
    webhook_id: int = WebhookId,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("admin")),
) -> WebhookOut:
    def run(s: Any) -> WebhookOut:
        program = get_program(s, code)
        endpoint = service.get_endpoint(s, program, webhook_id)
        return to_out(
            endpoint, program.code, service.last_statuses(s, [endpoint.id]).get(endpoint.id)
        )

    return http.read(db, run)


@router.patch(
    "/programs/{code}/webhooks/{webhook_id}",
    response_model=WebhookOut,
    responses=responses(ProgramNotFound, service.WebhookNotFound, *FIELD_ERRORS),
    summary="Change an endpoint's URL, description, event types or active flag",
)
def update_webhook(
    body: WebhookUpdate,
    code: str = ProgramCode,
    webhook_id: int = WebhookId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    def run(s: Any) -> WebhookOut:
        program, endpoint = _endpoint(s, code, webhook_id)
        service.update_endpoint(
            s,
            endpoint,
            actor=actor,
            now=http.now(),
            url=body.url,
            description=body.description,
            event_types=body.event_types,
            active=body.active,
        )
        return to_out(endpoint, program.code)

    return http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"program": code, "id": webhook_id, **body.model_dump(mode="json")},
    )


@router.delete(
    "/programs/{code}/webhooks/{webhook_id}",
    status_code=204,
    response_class=Response,
    responses=ENDPOINT_ERRORS,
    summary="Remove an endpoint; its delivery log stays, waiting deliveries are cancelled",
)
def delete_webhook(
    code: str = ProgramCode,
    webhook_id: int = WebhookId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> Response:
    with db.unit_of_work() as s:
        _program, endpoint = _endpoint(s, code, webhook_id)
        service.delete_endpoint(s, endpoint, actor=actor, now=http.now())
    return Response(status_code=204)


@router.post(
    "/programs/{code}/webhooks/{webhook_id}/rotate-secret",
    response_model=SecretRotated,
    responses=ENDPOINT_ERRORS,
    summary="A new signing secret (shown once); the previous one keeps signing for a while",
)
def rotate_secret(
    body: RotateRequest | None = None,
    code: str = ProgramCode,
    webhook_id: int = WebhookId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    request = body or RotateRequest()

    def run(s: Any) -> SecretRotated:
        _program, endpoint = _endpoint(s, code, webhook_id)
        secret = service.rotate_secret(
            s,
            endpoint,
            keep_previous_hours=request.keep_previous_hours,
            actor=actor,
            now=http.now(),
        )
        return SecretRotated(
            id=endpoint.id,
            secret=secret,
            secret_hint=signing.secret_hint(secret),
            previous_secret_until=endpoint.previous_secret_until,
        )

    return http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"program": code, "id": webhook_id, **request.model_dump(mode="json")},
    )


@router.get(
    "/programs/{code}/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    responses=responses(ProgramNotFound, service.WebhookNotFound, ValidationFailed, InvalidCursor),
    summary="The endpoint's delivery log, newest first, with every try",
    description="The same deliveries as GET /programs/{code}/deliveries?channel=webhook"
    "&endpoint_id=…, in the same shape.",
)
def webhook_deliveries(
    code: str = ProgramCode,
    webhook_id: int = WebhookId,
    status: str | None = Query(
        None,
        pattern=r"^(pending|retry|sending|delivered|dead|skipped|cancelled)$",
        description="Only deliveries in this state",
    ),
    cursor: str | None = Query(None, max_length=40),
    limit: int = Query(50, ge=1, le=200),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("admin")),
) -> DeliveryPage:
    def run(s: Any) -> DeliveryPage:
        program = get_program(s, code)
        endpoint = service.get_endpoint(s, program, webhook_id)
        rows, tries, nxt = service.deliveries(
            s, program, endpoint, status=status, cursor=cursor, limit=limit
        )
        return DeliveryPage(
            items=[events.delivery_out(r, tries[r.id]) for r in rows], next_cursor=nxt
        )

    return http.read(db, run)
