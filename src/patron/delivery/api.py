"""The webhook test send over HTTP: POST /programs/{code}/webhooks/{webhook_id}/test.

One of the webhook endpoint calls (same tag, parameters and admin scope as patron.webhooks.api),
kept here because it drives the delivery runner (patron.delivery.ping), which stands above the
webhooks package.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.delivery.ping import WebhookInactive, send_test
from patron.errors import Forbidden, Unauthorized, responses
from patron.events.models import DeliveryAttempt
from patron.events.schemas import AttemptOut
from patron.webhooks.api import ProgramCode, ProgramNotFound, ValidationFailed, WebhookId
from patron.webhooks.schemas import WebhookTestResult
from patron.webhooks.service import WebhookNotFound

router = APIRouter(
    prefix="/api/v1",
    tags=["webhooks"],
    responses=responses(Unauthorized, Forbidden),
)


def attempt_out(a: DeliveryAttempt) -> AttemptOut:
    return AttemptOut(
        at=a.at,
        ok=a.ok,
        status_code=a.status_code,
        duration_ms=a.duration_ms,
        error=a.error,
        response=a.response,
    )


@router.post(
    "/programs/{code}/webhooks/{webhook_id}/test",
    response_model=WebhookTestResult,
    responses=responses(ProgramNotFound, WebhookNotFound, ValidationFailed, WebhookInactive),
    summary='Send a signed "webhook.test" event to the endpoint now and say how it went',
)
def send_test_webhook(
    code: str = ProgramCode,
    webhook_id: int = WebhookId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> WebhookTestResult:
    sent = send_test(db, code, webhook_id, actor=actor, now=http.now())
    return WebhookTestResult(
        delivery_id=sent.delivery_id,
        status=sent.status,
        attempt=attempt_out(sent.attempt) if sent.attempt is not None else None,
    )
