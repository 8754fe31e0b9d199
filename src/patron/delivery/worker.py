"""The delivery loop: dispatch new events, send what is due, start the day's scheduled jobs.

`patron worker` runs it in the foreground; `patron serve` runs it on a background thread of
each server process unless PATRON_DELIVERY_IN_PROCESS=false (then run `patron worker`s). Any
number of loops may run against one database: they share the work without sending anything
twice (see patron.delivery.dispatch and patron.delivery.runner).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from patron import clock
from patron.config import Settings, get_settings
from patron.db.engine import Database
from patron.delivery import dispatch, runner

log = logging.getLogger("patron.delivery")

JOBS_EVERY_SECONDS = 60.0


@dataclass
class Tick:
    events: int = 0
    sent: int = 0
    jobs: int = 0

    @property
    def busy(self) -> bool:
        return bool(self.events or self.sent)


class DeliveryLoop:
    def __init__(
        self,
        db: Database,
        *,
        settings: Settings | None = None,
        jobs: bool = True,
        concurrency: int = 8,
    ) -> None:
        self.db = db
        self.settings = settings or get_settings()
        self.jobs = jobs
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="patron-send")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_jobs = 0.0

    def tick(self) -> Tick:
        """One round: dispatch new events, send what is due, and (once a minute) the jobs."""
        now = clock.now()
        done = Tick()
        done.events = dispatch.dispatch_pending(self.db, now=now, settings=self.settings).events
        done.sent = runner.run_round(self.db, now=now, settings=self.settings, pool=self.pool).total
        if self.jobs and time.monotonic() >= self._next_jobs:
            self._next_jobs = time.monotonic() + JOBS_EVERY_SECONDS
            from patron.notify import jobs

            done.jobs = len(jobs.run_due(self.db, now=now))
        return done

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.tick().busy
            except Exception:  # the database away for a moment: wait and go on
                log.exception("delivery round failed; retrying")
                busy = False
            if not busy:
                self._stop.wait(self.settings.delivery_poll_seconds)
        self.pool.shutdown(wait=True)

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(
            target=self.run_forever, name="patron-delivery", daemon=True
        )
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def drain(self, *, rounds: int = 100) -> Tick:
        """Run rounds until nothing is left to do now (tests, `patron worker --once`)."""
        total = Tick()
        for _ in range(rounds):
            tick = self.tick()
            total.events += tick.events
            total.sent += tick.sent
            total.jobs += tick.jobs
            if not tick.busy:
                break
        return total
