"""Engines and units of work for SQLite (WAL) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

# Registers the hook that versions each program's configuration on every ORM flush, so every
# session of every entry point has it.
import patron.db.config_version  # noqa: F401

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux or macOS: SQLite's busy handler only
    fcntl = None  # type: ignore[assignment]

READONLY = "patron_readonly"


def normalise_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(
    url: str, *, pool_size: int = 10, echo: bool = False, pre_ping: bool = False
) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    # Behind a transaction pooler (PgBouncer < 1.21) each transaction may get another server
    # connection: `?prepare_threshold=none` turns psycopg's automatic prepared statements off
    # (docs/operations.md, "Connection pooling"); libpq does not know the option.
    parsed = make_url(url)
    connect_args: dict[str, Any] = {}
    if "prepare_threshold" in parsed.query:
        raw = parsed.query["prepare_threshold"]
        value = (raw if isinstance(raw, str) else raw[-1]).strip().lower()
        connect_args["prepare_threshold"] = None if value in ("none", "") else int(value)
        parsed = parsed.difference_update_query(["prepare_threshold"])
    # No pre-ping by default: it costs a round trip on every checkout, i.e. on every request.
    # A connection the server dropped fails its request once (503, "retry") and is replaced.
    return create_engine(
        parsed,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        connect_args=connect_args,
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # FULL: a committed earn survives power loss, as on PostgreSQL with fsync on.
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front so two read-then-write transactions
        # never deadlock on the upgrade; readers keep WAL's non-blocking snapshot.
        if conn.get_execution_options().get(READONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


_BUSY_SECONDS = 30.0  # as PRAGMA busy_timeout


class WriterLock:
    """SQLite's single writer, queued for without SQLite's busy handler.

    Threads of this process queue on a lock; processes (other workers, the CLI) on an OS file
    lock beside the database (`<file>-writer`, polled every millisecond). SQLite's own busy
    handler sleeps 1, 2, 5 … up to 100 ms a try when it finds the file locked, so under
    concurrent writes from several processes that sleep, not the work, set the latency. Gives up
    with OperationalError (answered 503) after 30 s, as the busy handler would. Re-entrant."""

    def __init__(self, database: str | None) -> None:
        self._threads = threading.RLock()
        self._depth = 0
        self._path = f"{database}-writer" if database and database != ":memory:" else None
        self._fd: int | None = None
        self._pid = 0

    def acquire(self) -> None:
        self._threads.acquire()
        self._depth += 1
        if self._depth > 1 or self._path is None or fcntl is None:
            return
        try:
            self._lock_file()
        except BaseException:
            self._depth -= 1
            self._threads.release()
            raise

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None and fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def _lock_file(self) -> None:
        assert self._path is not None and fcntl is not None
        if self._fd is None or self._pid != os.getpid():  # a forked child needs its own
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        deadline = time.monotonic() + _BUSY_SECONDS
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OperationalError(
                        "waiting for the SQLite writer lock",
                        None,
                        TimeoutError("database is locked"),
                    ) from None
                time.sleep(0.001)


class Database:
    """An engine plus the two session factories the edges use."""

    def __init__(
        self, url: str, *, pool_size: int = 10, echo: bool = False, pre_ping: bool = False
    ) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, pool_size=pool_size, echo=echo, pre_ping=pre_ping)
        self._writer = sessionmaker(self.engine, expire_on_commit=False)
        self._reader = sessionmaker(
            self.engine.execution_options(**{READONLY: True}), expire_on_commit=False
        )
        # SQLite has one writer at a time: writers queue on WriterLock, not on SQLite's busy
        # handler (see there).
        self._write_lock = WriterLock(self.engine.url.database) if is_sqlite(self.engine) else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def unit_of_work(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any error."""
        factory = self._reader if readonly else self._writer
        lock = None if readonly else self._write_lock
        if lock is not None:
            lock.acquire()
        session = factory()
        try:
            yield session
            if readonly:
                session.rollback()
            else:
                session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
            if lock is not None:
                lock.release()

    def dispose(self) -> None:
        self.engine.dispose()
