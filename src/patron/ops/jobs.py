"""Job durations for the jobs that run inside a server process (docs/operations.md)."""

from __future__ import annotations

from patron.delivery.worker import DeliveryLoop, Tick
from patron.ops.metrics import JobTimer


class MeasuredDeliveryLoop(DeliveryLoop):
    """The delivery loop, each round timed as `patron_job_duration_seconds{job="delivery_round"}`
    (a round dispatches new events, sends what is due and, once a minute, starts the scheduled
    jobs)."""

    def tick(self) -> Tick:
        with JobTimer("delivery_round"):
            return super().tick()
