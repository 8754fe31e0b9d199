"""SQLite writers of several processes queue on the OS file lock (patron.db.engine.WriterLock)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from patron.db import engine as engine_module
from patron.db.engine import Database, WriterLock

HOLDER = textwrap.dedent(
    """
    import sys, time
    from patron.db.engine import WriterLock
    lock = WriterLock(sys.argv[1])
    lock.acquire()
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    lock.release()
    """
)


def _hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_writer_in_another_process_is_waited_for_then_followed_at_once(tmp_path: Path):
    path = tmp_path / "patron.db"
    holder = _hold(path, 0.4)
    lock = WriterLock(str(path))
    started = time.monotonic()
    lock.acquire()
    waited = time.monotonic() - started
    lock.release()
    holder.wait(timeout=10)
    assert 0.2 < waited < 2.0, waited


def test_the_lock_is_reentrant_and_released_by_the_outermost(tmp_path: Path):
    path = tmp_path / "patron.db"
    lock = WriterLock(str(path))
    lock.acquire()
    lock.acquire()
    lock.release()
    # Still held after the inner release: a second open of the lock file (as another
    # process has) cannot take it.
    probe = WriterLock(str(path))
    with pytest.raises(OperationalError):
        _try_quickly(probe)
    lock.release()
    _try_quickly(probe)
    probe.release()


def _try_quickly(lock: WriterLock) -> None:
    saved = engine_module._BUSY_SECONDS
    engine_module._BUSY_SECONDS = 0.05
    try:
        lock.acquire()
    finally:
        engine_module._BUSY_SECONDS = saved


def test_a_stuck_writer_gives_a_database_busy_error_not_a_hang(tmp_path: Path, monkeypatch):
    path = tmp_path / "patron.db"
    holder = _hold(path, 5)
    monkeypatch.setattr(engine_module, "_BUSY_SECONDS", 0.2)
    db = Database(f"sqlite:///{path}")
    try:
        with pytest.raises(OperationalError), db.unit_of_work():
            pass
    finally:
        db.dispose()
        holder.kill()
        holder.wait()


def test_in_memory_databases_need_no_file(tmp_path: Path):
    lock = WriterLock(":memory:")
    lock.acquire()
    lock.release()
    assert list(tmp_path.iterdir()) == []
