"""kill -9 of `patron worker` in the middle of sending: nothing is lost, and what is sent twice
is only what was in flight when it died (at least once, with the event id to drop repeats)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from patron import clock
from patron.events.models import Delivery
from tests.delivery.test_runner import _emit, _members

PATRON = str(Path(sys.executable).parent / "patron")


def _worker(db, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PATRON_DATABASE_URL": db.url,
        "PATRON_WEBHOOK_ALLOW_PRIVATE": "true",
        "PATRON_DELIVERY_POLL_SECONDS": "0.05",
        "PATRON_DELIVERY_LEASE_SECONDS": "2",
        "PATRON_MESSAGE_LOG": str(tmp_path / "messages.log"),
    }
    return subprocess.Popen(
        [PATRON, "worker", "--no-jobs"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def test_kill_9_mid_delivery_loses_nothing(db, client, pos, endpoint, http_receiver, tmp_path):
    members = _members(client, pos, 4)
    ids = _emit(db, members, 5, at=clock.now())
    expected = {f"evt_{i}" for i in ids}
    http_receiver.delay_seconds = 0.3  # slow enough that sends are in flight when it dies
    first = _worker(db, tmp_path)
    try:
        http_receiver.wait_for(3, timeout=30)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    received_at_kill = len(http_receiver.requests)
    with db.unit_of_work(readonly=True) as s:
        in_flight = s.scalar(select(func.count()).where(Delivery.status == "sending"))
    assert received_at_kill < len(ids) + 4, "the worker finished before it could be killed"
    second = _worker(db, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _open(db):
            time.sleep(0.1)
    finally:
        second.terminate()
        second.wait(10)
    counts = Counter(r.headers.get("webhook-id") for r in http_receiver.requests)
    assert expected <= set(counts), "an event was lost"
    repeats = sum(n - 1 for key, n in counts.items() if key in expected)
    assert repeats <= (in_flight or 0), (repeats, in_flight)
    with db.unit_of_work(readonly=True) as s:
        states = dict(
            s.execute(
                select(Delivery.status, func.count())
                .where(Delivery.channel == "webhook")
                .group_by(Delivery.status)
            ).all()
        )
    assert set(states) == {"delivered"}, states


def _open(db) -> int:
    with db.unit_of_work(readonly=True) as s:
        return (
            s.scalar(
                select(func.count()).where(
                    Delivery.channel == "webhook",
                    Delivery.status.in_(("pending", "retry", "sending")),
                )
            )
            or 0
        )
