"""Sending deliveries: claim, send, record — with retries, backoff, dead letters and order.

A round claims due deliveries in one short transaction: status `sending` and a lease, then the
transaction ends, so no row lock is held while a slow webhook answers. Each delivery is then
sent and its outcome recorded in a transaction of its own. A runner killed mid-send leaves the
delivery `sending` with a lease that runs out; the next round claims it again and sends it
again: delivery is at least once, and the event id (webhook-id) lets receivers drop repeats.

Order: a delivery is claimable only when no earlier delivery of its queue (one webhook
endpoint and one member, or one member's messages on one channel) is still open, so a member's
events reach an endpoint in the order they happened, even across retries; one member's
failing delivery holds back only that member's later ones. Dead, delivered and skipped
deliveries no longer hold anything back.

Several runners share the work on PostgreSQL through `FOR UPDATE SKIP LOCKED`; a delivery
being claimed by one is invisible to the others' claim.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from patron import clock
from patron.config import Settings, get_settings
from patron.db.engine import Database
from patron.events.kinds import public_id
from patron.events.models import OPEN_STATES, Delivery, DeliveryAttempt
from patron.events.sending import SendResult
from patron.members import consent
from patron.members.models import Member
from patron.notify import settings as notify_settings
from patron.programs.models import Program


@dataclass
class Sent:
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0
    deferred: int = 0

    @property
    def total(self) -> int:
        return self.delivered + self.retried + self.dead + self.skipped + self.deferred


def backoff(attempts: int, settings: Settings, *, rng: random.Random | None = None) -> timedelta:
    """Exponential, with full jitter over its upper half: try n waits between half and all of
    base × 2^(n-1), capped."""
    ceiling = min(
        settings.delivery_backoff_max_seconds,
        settings.delivery_backoff_seconds * 2 ** max(attempts - 1, 0),
    )
    return timedelta(seconds=ceiling * (0.5 + 0.5 * (rng or random).random()))


def _claimable(now: Any):
    earlier = aliased(Delivery)
    due = or_(
        and_(Delivery.status.in_(("pending", "retry")), Delivery.next_attempt_at <= now),
        and_(Delivery.status == "sending", Delivery.lease_until < now),
    )
    blocked = exists(
        select(earlier.id).where(
            earlier.queue_key == Delivery.queue_key,
            earlier.id < Delivery.id,
            earlier.status.in_(OPEN_STATES),
        )
    )
    return and_(Delivery.status.in_(OPEN_STATES), Delivery.next_attempt_at <= now, due, ~blocked)


_due: dict[str, Any] = {}


def _due_stmt(dialect: str) -> Any:
    """What is due at :now, up to :limit, oldest first (built once per process and engine: a
    round that finds nothing costs its two round trips, not the statement's construction)."""
    found = _due.get(dialect)
    if found is None:
        now = bindparam("now", type_=Delivery.next_attempt_at.type)
        found = (
            select(Delivery).where(_claimable(now)).order_by(Delivery.id).limit(bindparam("limit"))
        )
        if dialect == "postgresql":
            found = found.with_for_update(skip_locked=True)
        _due[dialect] = found
    return found


@dataclass
class _Job:
    """A claimed delivery with everything its send needs, read in the claim's transaction."""

    id: int
    channel: str
    recipient: str | None
    subject: str | None
    body: str
    message_id: str
    endpoint: Any = None  # a detached WebhookEndpoint for webhooks
    headers: dict[str, str] | None = None
    outcome: str | None = None  # set when it was decided without sending (skipped, deferred)


def claim(db: Database, *, now: datetime, settings: Settings, limit: int = 100) -> list[int]:
    """Claim what is due (status `sending` with a lease) and return the ids; see `_claim`."""
    return [job.id for job in _claim(db, now=now, settings=settings, limit=limit)]


def _claim(
    db: Database,
    *,
    now: datetime,
    settings: Settings,
    limit: int = 100,
    only: int | None = None,
) -> list[_Job]:
    """One transaction: pick due deliveries (or just `only`), decide the ones that may not go
    out now (quiet hours, consent withdrawn, frequency cap, endpoint off), lease the rest and
    read what sending them needs."""
    from patron.webhooks.models import WebhookEndpoint

    with db.unit_of_work() as session:
        dialect = session.get_bind().dialect.name
        if only is not None:
            stmt = select(Delivery).where(
                Delivery.id == only, Delivery.status.not_in(("delivered", "sending"))
            )
            if dialect == "postgresql":
                stmt = stmt.with_for_update()
            rows = list(session.scalars(stmt))
        else:
            rows = list(session.scalars(_due_stmt(dialect), {"now": now, "limit": limit}))
        jobs: list[_Job] = []
        endpoints: dict[int, Any] = {}
        lease = now + timedelta(seconds=settings.delivery_lease_seconds)
        for row in rows:
            job = _Job(
                id=row.id,
                channel=row.channel,
                recipient=row.recipient,
                subject=row.subject,
                body=row.body,
                message_id=public_id(row.event_id) if row.event_id else f"msg_{row.id}",
            )
            decided = _may_send(session, row, now=now)
            if decided is None and row.channel == "webhook":
                key = row.endpoint_id or 0
                if key not in endpoints:
                    endpoints[key] = session.get(WebhookEndpoint, key)
                job.endpoint = endpoints[key]
                if job.endpoint is None or not job.endpoint.active:
                    row.status, row.skip_reason, row.lease_until = "cancelled", "endpoint_off", None
                    decided = row.status
            if decided is not None:
                job.outcome = decided
            else:
                row.status, row.lease_until = "sending", lease
                if row.channel == "email":
                    job.headers = _email_headers(session, row, settings=settings, now=now)
            jobs.append(job)
        session.flush()
        for endpoint in endpoints.values():
            if endpoint is not None:
                session.expunge(endpoint)
        return jobs


def run_round(
    db: Database,
    *,
    now: datetime | None = None,
    settings: Settings | None = None,
    limit: int = 100,
    pool: ThreadPoolExecutor | None = None,
) -> Sent:
    """Claim what is due, send it (concurrently through `pool` when given), record every
    outcome in one transaction."""
    settings = settings or get_settings()
    now = now or clock.now()
    jobs = _claim(db, now=now, settings=settings, limit=limit)
    outcomes = _send_all(db, jobs, settings=settings, now=now, pool=pool)
    done = Sent()
    for status in outcomes:
        if status == "delivered":
            done.delivered += 1
        elif status == "retry":
            done.retried += 1
        elif status == "dead":
            done.dead += 1
        elif status == "pending":
            done.deferred += 1
        else:
            done.skipped += 1
    return done


def deliver_one(db: Database, delivery_id: int, *, settings: Settings | None = None) -> str:
    """Send one delivery now, whatever its schedule (the test-send button, a manual replay);
    returns its new status. A delivery already delivered or being sent is left alone."""
    settings = settings or get_settings()
    now = clock.now()
    jobs = _claim(db, now=now, settings=settings, only=delivery_id)
    if not jobs:
        with db.unit_of_work(readonly=True) as session:
            row = session.get(Delivery, delivery_id)
            return row.status if row is not None else "missing"
    return _send_all(db, jobs, settings=settings, now=now, pool=None)[0]


def _send_all(
    db: Database,
    jobs: list[_Job],
    *,
    settings: Settings,
    now: datetime,
    pool: ThreadPoolExecutor | None,
) -> list[str]:
    to_send = [job for job in jobs if job.outcome is None]
    if pool is not None and len(to_send) > 1:
        results = list(pool.map(lambda job: _send(job, settings=settings, now=now), to_send))
    else:
        results = [_send(job, settings=settings, now=now) for job in to_send]
    recorded = record_many(
        db, list(zip((j.id for j in to_send), results, strict=True)), settings=settings
    )
    return [job.outcome or recorded[job.id] for job in jobs]


def _send(job: _Job, *, settings: Settings, now: datetime) -> SendResult:
    try:
        if job.channel == "webhook":
            from patron.webhooks import sender

            return sender.post(
                job.endpoint, message_id=job.message_id, body=job.body, now=now, settings=settings
            )
        from patron.notify import channels

        if not job.recipient:
            return SendResult(ok=False, error="no recipient", retryable=False)
        return channels.send(
            job.channel,
            job.recipient,
            job.subject,
            job.body,
            settings=settings,
            headers=job.headers,
        )
    except Exception as exc:  # a channel bug must not stop the runner or lose the message
        return SendResult(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])


def record(db: Database, delivery_id: int, result: SendResult, *, settings: Settings) -> str:
    return record_many(db, [(delivery_id, result)], settings=settings).get(delivery_id, "missing")


def record_many(
    db: Database, results: list[tuple[int, SendResult]], *, settings: Settings
) -> dict[int, str]:
    """Every try's outcome and its log row, in one transaction."""
    if not results:
        return {}
    now = clock.now()
    out: dict[int, str] = {}
    with db.unit_of_work() as session:
        ids = [i for i, _r in results]
        rows = {
            r.id: r
            for r in session.scalars(select(Delivery).where(Delivery.id.in_(ids)).with_for_update())
        }
        for delivery_id, result in results:
            row = rows.get(delivery_id)
            if row is None:
                continue
            session.add(
                DeliveryAttempt(
                    delivery_id=row.id,
                    at=now,
                    ok=result.ok,
                    status_code=result.status_code,
                    duration_ms=result.duration_ms,
                    error=(result.error or None) and result.error[:1000],
                    response=(result.response or None) and result.response[:1000],
                )
            )
            row.attempts += 1
            row.last_status_code = result.status_code
            row.lease_until = None
            if result.ok:
                row.status, row.delivered_at, row.last_error = "delivered", now, None
            else:
                row.last_error = (result.error or f"answered {result.status_code}")[:1000]
                if not result.retryable or row.attempts >= settings.delivery_max_attempts:
                    row.status = "dead"
                else:
                    row.status = "retry"
                    row.next_attempt_at = now + backoff(row.attempts, settings)
            out[delivery_id] = row.status
    return out


def _email_headers(
    session: Session, row: Delivery, *, settings: Settings, now: datetime
) -> dict[str, str]:
    """One Message-ID per delivery (a retried e-mail is recognisably the same message), and
    for marketing mail the one-click unsubscribe of RFC 8058."""
    domain = parseaddr(settings.smtp_from)[1].rpartition("@")[2] or "patron.invalid"
    headers = {"Message-ID": f"<delivery-{row.id}@{domain}>"}
    if row.purpose == "marketing" and row.member_id is not None:
        token = consent.unsubscribe_token(session, row.member_id, "email", now=now)
        headers["List-Unsubscribe"] = f"<{settings.public_url.rstrip('/')}/u/{token}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


# --- etiquette: what may go out now ---------------------------------------------------------


def _may_send(session: Session, row: Delivery, *, now: datetime) -> str | None:
    """None when the message may be sent now; else the status it was given (pending until
    the quiet hours end, skipped for consent withdrawn or the frequency cap)."""
    if row.channel == "webhook" or row.purpose != "marketing" or row.member_id is None:
        return None
    member = session.get(Member, row.member_id)
    program = session.get(Program, row.program_id) if row.program_id else None
    if member is None or program is None:
        return None
    if not consent.current(session, member, row.channel):
        row.status, row.skip_reason, row.lease_until = "skipped", "no_consent", None
        return row.status
    config = notify_settings.load(session, program.id)
    tz = ZoneInfo(program.timezone)
    local = now.astimezone(tz)
    if config.in_quiet_hours(local.time().replace(tzinfo=None)):
        end = config.quiet_hours_end
        wake = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
        if wake <= local:
            wake += timedelta(days=1)
        row.status, row.lease_until = "pending", None
        row.next_attempt_at = wake.astimezone(now.tzinfo)
        return row.status
    cap = config.frequency_cap_per_day
    if cap:
        recent = session.scalar(
            select(func.count()).where(
                Delivery.member_id == row.member_id,
                Delivery.purpose == "marketing",
                Delivery.channel != "webhook",
                Delivery.status == "delivered",
                Delivery.delivered_at > now - timedelta(hours=24),
            )
        )
        if (recent or 0) >= cap:
            row.status, row.skip_reason, row.lease_until = "skipped", "frequency_cap", None
            return row.status
    return None
