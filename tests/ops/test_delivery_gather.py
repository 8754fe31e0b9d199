"""The server's delivery loop pauses after a busy round that caught up, so the next round
finds the events of many sales together (decision 0032); a full round, `drain` and an idle
round are as before."""

from __future__ import annotations

import threading

import pytest

from patron.delivery.worker import DeliveryLoop, Tick
from patron.ops import jobs
from patron.ops.jobs import MeasuredDeliveryLoop


class _Stop:
    """Stands in for the loop's stop event: records each wait, stops after `rounds` waits."""

    def __init__(self, rounds: int) -> None:
        self.waits: list[float] = []
        self.rounds = rounds

    def is_set(self) -> bool:
        return len(self.waits) >= self.rounds

    def set(self) -> None:
        self.rounds = 0

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def _loop(monkeypatch: pytest.MonkeyPatch, ticks: list[Tick], rounds: int) -> MeasuredDeliveryLoop:
    given = iter(ticks)
    monkeypatch.setattr(DeliveryLoop, "tick", lambda self: next(given, Tick()))
    loop = MeasuredDeliveryLoop(None, jobs=False)  # type: ignore[arg-type]
    loop.settings = loop.settings.model_copy(update={"delivery_poll_seconds": 1.0})
    loop._stop = _Stop(rounds)  # type: ignore[assignment]
    return loop


def test_a_busy_round_that_caught_up_waits_before_the_next(monkeypatch):
    ticks = [Tick(events=3), Tick(events=200), Tick(sent=2), Tick()]
    loop = _loop(monkeypatch, ticks, rounds=3)
    thread = loop.start()
    thread.join(10)
    assert not thread.is_alive()
    # 3 events: the pause; 200 (a full round, a backlog): none; 2 sent: the pause; idle: the
    # poll interval, as before.
    assert loop._stop.waits == [jobs.GATHER_SECONDS, jobs.GATHER_SECONDS, 1.0]  # type: ignore[attr-defined]


def test_drain_runs_its_rounds_back_to_back(monkeypatch):
    loop = _loop(monkeypatch, [Tick(events=3), Tick(events=1), Tick()], rounds=99)
    assert threading.current_thread() is not loop._thread
    assert loop.drain().events == 4
    assert loop._stop.waits == []  # type: ignore[attr-defined]
