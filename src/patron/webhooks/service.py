"""Webhook endpoints: register, change, rotate the secret, remove; the events each one wants;
the body each delivery posts (the test send's too: patron.delivery.ping queues and sends it);
the delivery log; and replay.

Secrets leave this module only as the return value of `create_endpoint` and `rotate_secret`
(shown once); audit records and lists carry `signing.secret_hint` instead. Every change is
audited ("webhooks.created", "webhooks.updated", "webhooks.secret_rotated", "webhooks.deleted",
"deliveries.replayed") in the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.clock import as_utc
from patron.config import get_settings
from patron.errors import Invalid, NotFound
from patron.events import service as events
from patron.events.kinds import EVENT_TYPES, public_id
from patron.events.models import Delivery, DeliveryAttempt, EventFacts
from patron.programs.models import Program
from patron.webhooks import signing, ssrf
from patron.webhooks.models import WebhookEndpoint

ALL_EVENTS = "*"
TEST_EVENT = "webhook.test"
MAX_KEEP_PREVIOUS_HOURS = 168


class WebhookNotFound(NotFound):
    code = "webhook_not_found"


class UnknownEventType(Invalid):
    code = "unknown_event_type"


class DeliveryNotFound(NotFound):
    code = "delivery_not_found"


# --- validation -------------------------------------------------------------------------------


def _allow_private(allow_private: bool | None) -> bool:
    return get_settings().webhook_allow_private if allow_private is None else allow_private


def clean_event_types(event_types: Iterable[str]) -> list[str]:
    """Known types only (422 unknown_event_type), each once, in the order given; "*" alone
    stands for every type."""
    out: list[str] = []
    for kind in event_types:
        kind = kind.strip()
        if kind != ALL_EVENTS and kind not in EVENT_TYPES:
            raise UnknownEventType(
                f"event_types: {kind!r} is not an event type "
                f"(one of {', '.join(EVENT_TYPES)} or '*')"
            )
        if kind not in out:
            out.append(kind)
    if not out:
        raise Invalid("event_types: choose at least one event type", code="event_types_required")
    return [ALL_EVENTS] if ALL_EVENTS in out else out


def _description(text: str | None) -> str:
    text = (text or "").strip()
    if len(text) > 200:
        raise Invalid("description: at most 200 characters", code="invalid_description")
    return text


def snapshot(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """An endpoint as audit records show it: never the secret itself."""
    return {
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": list(endpoint.event_types),
        "active": endpoint.active,
        "secret": signing.secret_hint(endpoint.secret),
    }


# --- endpoints --------------------------------------------------------------------------------


def create_endpoint(
    session: Session,
    program: Program,
    url: str,
    description: str,
    event_types: Iterable[str],
    *,
    actor: Actor,
    now: datetime,
    allow_private: bool | None = None,
) -> tuple[WebhookEndpoint, str]:
    """A new active endpoint and its secret (returned once; store it to verify signatures).
    allow_private: None reads Settings.webhook_allow_private."""
    clean_url = ssrf.check_url(url, allow_private=_allow_private(allow_private))
    kinds = clean_event_types(event_types)
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(
        program_id=program.id,
        url=clean_url,
        description=_description(description),
        event_types=kinds,
        secret=secret,
        previous_secret=None,
        previous_secret_until=None,
        active=True,
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="webhooks.created",
        subject_type="webhook",
        subject_id=endpoint.id,
        at=now,
        program_id=program.id,
        after=snapshot(endpoint),
    )
    return endpoint, secret


def list_endpoints(session: Session, program: Program) -> list[WebhookEndpoint]:
    stmt = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.program_id == program.id)
        .order_by(WebhookEndpoint.id)
    )
    return list(session.scalars(stmt))


def get_endpoint(
    session: Session, program: Program, endpoint_id: int, *, for_update: bool = False
) -> WebhookEndpoint:
    stmt = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.program_id == program.id
    )
    if for_update:
        stmt = stmt.with_for_update()
    endpoint = session.scalars(stmt).one_or_none()
    if endpoint is None:
        raise WebhookNotFound(f"no webhook endpoint {endpoint_id} in {program.code}")
    return endpoint


def update_endpoint(
    session: Session,
    endpoint: WebhookEndpoint,
    *,
    actor: Actor,
    now: datetime,
    url: str | None = None,
    description: str | None = None,
    event_types: Iterable[str] | None = None,
    active: bool | None = None,
    allow_private: bool | None = None,
) -> WebhookEndpoint:
    """Change the fields given (None leaves a field as it is); audited only if something
    changed."""
    before = snapshot(endpoint)
    # The same URL again (the admin form always posts it) is not resolved again: a DNS hiccup
    # must not block changing the description. A new URL gets the full check.
    if url is not None and ssrf.parse(url).url != endpoint.url:
        endpoint.url = ssrf.check_url(url, allow_private=_allow_private(allow_private))
    if description is not None:
        endpoint.description = _description(description)
    if event_types is not None:
        endpoint.event_types = clean_event_types(event_types)
    if active is not None:
        endpoint.active = active
    old, new = audit.changes(before, snapshot(endpoint))
    if new:
        endpoint.updated_at = now
        audit.record(
            session,
            actor=actor,
            action="webhooks.updated",
            subject_type="webhook",
            subject_id=endpoint.id,
            at=now,
            program_id=endpoint.program_id,
            before=old,
            after=new,
        )
        session.flush()
    return endpoint


def rotate_secret(
    session: Session,
    endpoint: WebhookEndpoint,
    *,
    keep_previous_hours: int = 24,
    actor: Actor,
    now: datetime,
) -> str:
    """A new secret (returned once). The one it replaces keeps signing, next to the new one,
    for `keep_previous_hours` (0: not at all), so receivers can switch without a gap."""
    if not 0 <= keep_previous_hours <= MAX_KEEP_PREVIOUS_HOURS:
        raise Invalid(
            f"keep_previous_hours: between 0 and {MAX_KEEP_PREVIOUS_HOURS}",
            code="invalid_keep_previous_hours",
        )
    old_hint = signing.secret_hint(endpoint.secret)
    secret = signing.new_secret()
    if keep_previous_hours:
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_until = now + timedelta(hours=keep_previous_hours)
    else:
        endpoint.previous_secret = None
        endpoint.previous_secret_until = None
    endpoint.secret = secret
    endpoint.updated_at = now
    audit.record(
        session,
        actor=actor,
        action="webhooks.secret_rotated",
        subject_type="webhook",
        subject_id=endpoint.id,
        at=now,
        program_id=endpoint.program_id,
        before={"secret": old_hint},
        after={
            "secret": signing.secret_hint(secret),
            "previous_secret_until": (
                endpoint.previous_secret_until.isoformat()
                if endpoint.previous_secret_until is not None
                else None
            ),
        },
    )
    session.flush()
    return secret


def delete_endpoint(
    session: Session, endpoint: WebhookEndpoint, *, actor: Actor, now: datetime
) -> int:
    """Remove the endpoint. Its deliveries stay (the log keeps them); the ones still waiting
    are cancelled, since there is nowhere to send them. Returns how many were cancelled."""
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.channel == "webhook",
            Delivery.endpoint_id == endpoint.id,
            Delivery.status.in_(("pending", "retry")),
        )
        .values(
            status="cancelled",
            skip_reason="endpoint_deleted",
            last_error="the webhook endpoint was deleted",
        )
    )
    cancelled = int(cast(CursorResult[Any], result).rowcount or 0)
    audit.record(
        session,
        actor=actor,
        action="webhooks.deleted",
        subject_type="webhook",
        subject_id=endpoint.id,
        at=now,
        program_id=endpoint.program_id,
        before=snapshot(endpoint),
        after={"cancelled_deliveries": cancelled},
    )
    session.delete(endpoint)
    session.flush()
    return cancelled


def matching(session: Session, program_id: int, kind: str) -> list[WebhookEndpoint]:
    """The active endpoints of a program that want events of `kind` (listed, or "*").

    Called once per event by the dispatcher: one indexed query on program_id returning the
    program's few active endpoints; the type filter runs here, which is cheaper and the same on
    both engines (a JSON-contains test differs between SQLite and PostgreSQL)."""
    stmt = select(WebhookEndpoint).where(
        WebhookEndpoint.program_id == program_id, WebhookEndpoint.active.is_(True)
    )
    return [
        e
        for e in session.scalars(stmt.order_by(WebhookEndpoint.id))
        if kind in e.event_types or ALL_EVENTS in e.event_types
    ]


def last_statuses(session: Session, endpoint_ids: list[int]) -> dict[int, str]:
    """Each endpoint's newest delivery status (endpoints without deliveries are absent)."""
    if not endpoint_ids:
        return {}
    newest = (
        select(func.max(Delivery.id))
        .where(Delivery.channel == "webhook", Delivery.endpoint_id.in_(endpoint_ids))
        .group_by(Delivery.endpoint_id)
    )
    rows = session.execute(
        select(Delivery.endpoint_id, Delivery.status).where(Delivery.id.in_(newest))
    )
    return {int(endpoint_id): status for endpoint_id, status in rows if endpoint_id is not None}


# --- bodies -----------------------------------------------------------------------------------


def _iso(at: datetime) -> str:
    return as_utc(at).isoformat().replace("+00:00", "Z")


def _dump(document: dict[str, Any]) -> str:
    # Compact UTF-8 JSON: the body is signed byte for byte, so it is built once and stored.
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str)


def event_body(event: EventFacts, program_code: str) -> str:
    """The JSON every webhook delivery of `event` posts."""
    return _dump(
        {
            "id": public_id(event.id),
            "type": event.kind,
            "timestamp": _iso(event.at),
            "program": program_code,
            "data": event.payload,
        }
    )


def ping_body(message_id: str, endpoint: WebhookEndpoint, program_code: str, now: datetime) -> str:
    return _dump(
        {
            "id": message_id,
            "type": TEST_EVENT,
            "timestamp": _iso(now),
            "program": program_code,
            "data": {
                "endpoint_id": endpoint.id,
                "message": "A test from Patron: if the signature verifies, the endpoint works.",
            },
        }
    )


# --- the delivery log and replay -------------------------------------------------------------

# The log and replay are the delivery log's own (patron.events.service), filtered to one
# endpoint, so a webhook call reads and replays the same way as any other delivery.
# Replayable from the webhook pages: everything the log replays except what already arrived.
REPLAYABLE = tuple(s for s in events.REPLAYABLE if s != "delivered")


def deliveries(
    session: Session,
    program: Program,
    endpoint: WebhookEndpoint,
    *,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[Delivery], dict[int, list[DeliveryAttempt]], str | None]:
    """The endpoint's deliveries, newest first, their tries (oldest first) by delivery id, and
    the cursor of the next page."""
    rows, nxt = events.list_deliveries(
        session,
        program,
        channel="webhook",
        endpoint_id=endpoint.id,
        status=status,
        cursor=cursor,
        limit=limit,
    )
    return rows, events.attempts_of(session, [r.id for r in rows]), nxt


def replay_delivery(session: Session, delivery_id: int, *, actor: Actor, now: datetime) -> Delivery:
    """Send a delivery again now (status pending, due now; its tries stay in the log), audited
    as deliveries.replayed: patron.events.service.replay for a delivery known by id alone."""
    row = session.get(Delivery, delivery_id)
    program = session.get(Program, row.program_id) if row is not None and row.program_id else None
    if row is None or program is None:
        raise DeliveryNotFound(f"no delivery {delivery_id}")
    return events.replay(session, program, delivery_id, actor=actor, now=now)
