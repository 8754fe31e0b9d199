"""Job durations for the jobs that run inside a server process (docs/operations.md)."""

from __future__ import annotations

import threading

from patron.delivery.worker import DeliveryLoop, Tick
from patron.ops.metrics import JobTimer

# A busy round in a server that caught up is followed by this pause before the next one
# (decision 0032); a full round (as many events or sends as a round takes: a backlog) is not.
GATHER_SECONDS = 0.25
_FULL_EVENTS = 200  # patron.delivery.dispatch.dispatch_pending's limit
_FULL_SENDS = 100  # patron.delivery.runner.run_round's limit


class MeasuredDeliveryLoop(DeliveryLoop):
    """The delivery loop of a server process, each round timed as
    `patron_job_duration_seconds{job="delivery_round"}` (a round dispatches new events, sends
    what is due and, once a minute, starts the scheduled jobs).

    In a server the loop shares the CPU with the requests that make the events: after a busy
    round that left nothing behind it waits `GATHER_SECONDS` (never longer than the poll interval) so that the next round
    finds the events of many sales together, instead of starting again at once for the few
    that arrived meanwhile. A round's own cost (its transactions, the program's settings and
    webhooks read again) is then paid once for many events (decision 0032)."""

    def tick(self) -> Tick:
        with JobTimer("delivery_round"):
            done = super().tick()
        # Only on the loop's own thread (`start`): `drain` runs its rounds back to back.
        caught_up = done.events < _FULL_EVENTS and done.sent < _FULL_SENDS
        if done.busy and caught_up and threading.current_thread() is self._thread:
            self._stop.wait(min(GATHER_SECONDS, self.settings.delivery_poll_seconds))
        return done
