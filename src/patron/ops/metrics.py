"""Prometheus metrics: what every request, earn, redemption and delivery round adds up to.

Request metrics are labelled by the route *template* (`/api/v1/programs/{code}/purchases`),
never the raw path, so a label set stays bounded whatever clients send; a request no route
matched counts under `<unmatched>`. Earns and redemptions are the successful answers of the
operations that make them (`OPERATIONS`). The outbox lag is read from the database when
`/metrics` is scraped, by the worker that answers the scrape.

Several worker processes (`patron serve --workers N`): each counts in its own memory unless
PROMETHEUS_MULTIPROC_DIR names a directory shared by them, which `patron serve` sets up itself
for N > 1 (`prepare_multiprocess`); `/metrics` then sums the files of every worker.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from patron import clock
from patron.db.engine import Database

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# No `_created` series beside each counter and histogram: they double the scrape for a
# timestamp Prometheus does not need (it sees resets itself).
disable_created_metrics()

# A till earn takes about a millisecond; the default buckets start at 5 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

UNMATCHED = "<unmatched>"

REQUESTS = Counter(
    "patron_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ("method", "route", "status"),
)
LATENCY = Histogram(
    "patron_http_request_duration_seconds",
    "Time from the request's arrival to the end of its answer, by method and route template.",
    ("method", "route"),
    buckets=LATENCY_BUCKETS,
)
POINTS_OPERATIONS = Counter(
    "patron_points_operations",
    "Successful points operations: earn (purchases, batches) and redeem (reward redemptions).",
    ("operation",),
)
JOB_DURATION = Histogram(
    "patron_job_duration_seconds",
    "Duration of background job runs (delivery rounds and their scheduled jobs).",
    ("job",),
    buckets=JOB_BUCKETS,
)

# (method, route template) -> operation counted in POINTS_OPERATIONS on a 2xx answer.
OPERATIONS: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/programs/{code}/purchases"): "earn",
    ("POST", "/api/v1/programs/{code}/purchases/batch"): "earn",
    ("POST", "/api/v1/programs/{code}/rewards/{reward}/redeem"): "redeem",
}


class RequestMetrics:
    """The per-request bookkeeping, with each label set's children cached: on the till's hot
    path a request costs two dict look-ups, an `inc` and an `observe`."""

    def __init__(self) -> None:
        self._counted: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._counted.get(key)
        if children is None:
            operation = OPERATIONS.get((method, route)) if 200 <= status < 300 else None
            children = (
                REQUESTS.labels(method, route, str(status)),
                LATENCY.labels(method, route),
                POINTS_OPERATIONS.labels(operation) if operation else None,
            )
            self._counted[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if children[2] is not None:
            children[2].inc()


class JobTimer:
    """`with JobTimer("delivery_round"): ...` adds the run's duration to JOB_DURATION."""

    def __init__(self, job: str) -> None:
        self.child = JOB_DURATION.labels(job)
        self.started = 0.0

    def __enter__(self) -> JobTimer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.child.observe(time.perf_counter() - self.started)


class OutboxCollector(Collector):
    """The outbox lag, read at scrape time: events not yet dispatched (count, age of the
    oldest) and deliveries due but not yet sent (count, how overdue the oldest is)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        try:
            lag = outbox_lag(self.db)
        except SQLAlchemyError:  # the scrape still answers: the database's state is /ready's
            yield _gauge("patron_outbox_readable", "1 if the outbox lag could be read.", 0)
            return
        yield _gauge("patron_outbox_readable", "1 if the outbox lag could be read.", 1)
        yield _gauge(
            "patron_outbox_undispatched_events",
            "Outbox events not yet turned into deliveries.",
            lag["undispatched"],
        )
        yield _gauge(
            "patron_outbox_oldest_undispatched_age_seconds",
            "Age of the oldest outbox event not yet dispatched (0 when none).",
            lag["oldest_age_seconds"],
        )
        yield _gauge(
            "patron_deliveries_due",
            "Deliveries (webhooks, e-mail, SMS) whose time has come and that are not sent yet.",
            lag["deliveries_due"],
        )
        yield _gauge(
            "patron_deliveries_oldest_due_seconds",
            "How long the most overdue open delivery has been due (0 when none).",
            lag["oldest_due_seconds"],
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def outbox_lag(db: Database, now: datetime | None = None) -> dict[str, Any]:
    """Undispatched events and due deliveries, with the age of the oldest of each, in seconds.
    Both queries use the partial indexes the delivery loop reads by."""
    from patron.events.models import Delivery, DomainEvent

    now = now or clock.now()
    with db.unit_of_work(readonly=True) as session:
        undispatched, oldest_event = session.execute(
            select(func.count(), func.min(DomainEvent.at)).where(DomainEvent.dispatched.is_(False))
        ).one()
        due, oldest_due = session.execute(
            select(func.count(), func.min(Delivery.next_attempt_at)).where(
                Delivery.status.in_(("pending", "retry")), Delivery.next_attempt_at <= now
            )
        ).one()
    return {
        "undispatched": int(undispatched),
        "oldest_age_seconds": _age(now, oldest_event),
        "deliveries_due": int(due),
        "oldest_due_seconds": _age(now, oldest_due),
    }


def _age(now: datetime, then: datetime | None) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return round(max((now - then).total_seconds(), 0.0), 3)


def exposition(db: Database | None) -> tuple[bytes, str]:
    """The text `/metrics` answers: this process's metrics (or every worker's, summed, in
    multi-process mode) and the outbox lag."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Default())
    if db is not None:
        registry.register(OutboxCollector(db))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Default(Collector):
    """The process-wide registry (our metrics and the process/platform collectors)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def prepare_multiprocess(workers: int) -> str | None:
    """Before `patron serve` starts N > 1 workers: give them one fresh directory to count in,
    unless the operator set PROMETHEUS_MULTIPROC_DIR (then it is theirs to empty at start).
    Returns the directory in use, if any. Must run before prometheus_client is imported by the
    workers, i.e. before uvicorn spawns them (they inherit the environment)."""
    if os.environ.get(MULTIPROC_ENV):
        return os.environ[MULTIPROC_ENV]
    if workers <= 1:
        return None
    path = tempfile.mkdtemp(prefix="patron-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path
