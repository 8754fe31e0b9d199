"""The webhook test send: a "webhook.test" delivery queued for one endpoint and tried at once
by the runner, so whoever sets an endpoint up sees what it answered.

Here, above patron.webhooks, because it drives the runner: the webhooks package configures
endpoints, builds bodies and signs and posts one try; sending a delivery, with its claim and
its log, is this package's. Audited as "webhooks.test_sent" in the queueing transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.delivery.runner import deliver_one
from patron.errors import Conflict
from patron.events.models import Delivery, DeliveryAttempt
from patron.programs.service import get_program
from patron.webhooks.service import TEST_EVENT, get_endpoint, ping_body

TEST_HOLD = timedelta(minutes=1)


class WebhookInactive(Conflict):
    code = "webhook_inactive"


@dataclass(frozen=True)
class SentTest:
    delivery_id: int
    status: str
    attempt: DeliveryAttempt | None


def send_test(
    db: Database, program_code: str, endpoint_id: int, *, actor: Actor, now: datetime
) -> SentTest:
    """Queue a "webhook.test" delivery for the endpoint, commit it, and have the delivery
    runner try it at once (`deliver_one`). Two transactions: the runner claims committed
    deliveries only. A paused endpoint is refused (409 webhook_inactive): the runner cancels
    whatever is due to one."""
    with db.unit_of_work() as session:
        program = get_program(session, program_code)
        endpoint = get_endpoint(session, program, endpoint_id)
        if not endpoint.active:
            raise WebhookInactive(
                f"webhook endpoint {endpoint_id} is paused; resume it to send a test"
            )
        delivery = Delivery(
            event_id=None,
            program_id=program.id,
            member_id=None,
            event_kind=TEST_EVENT,
            channel="webhook",
            endpoint_id=endpoint.id,
            queue_key=f"webhook:{endpoint.id}:test",
            recipient=endpoint.url,
            purpose="transactional",
            body="",
            status="pending",
            attempts=0,
            # Not due for a minute, so a delivery loop running next to this request does not
            # claim it before deliver_one below does; if this request dies first, the loop
            # sends it then.
            next_attempt_at=now + TEST_HOLD,
            created_at=now,
        )
        session.add(delivery)
        session.flush()
        # The body names its message id, which for a delivery without an event is the
        # runner's msg_<delivery id>: so the body is set after the insert.
        delivery.body = ping_body(f"msg_{delivery.id}", endpoint, program.code, now)
        audit.record(
            session,
            actor=actor,
            action="webhooks.test_sent",
            subject_type="webhook",
            subject_id=endpoint.id,
            at=now,
            program_id=program.id,
            after={"delivery_id": delivery.id},
        )
        delivery_id = delivery.id
    status = deliver_one(db, delivery_id)
    with db.unit_of_work(readonly=True) as session:
        attempt = session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == delivery_id)
            .order_by(DeliveryAttempt.id.desc())
            .limit(1)
        ).one_or_none()
        if attempt is not None:
            session.expunge(attempt)
    return SentTest(delivery_id, status, attempt)
