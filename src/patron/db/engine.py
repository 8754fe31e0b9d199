"""Engines and units of work for SQLite (WAL) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

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
    # No pre-ping by default: it costs a round trip on every checkout, i.e. on every request.
    # A connection the server dropped fails its request once (503, "retry") and is replaced.
    return create_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=pre_ping
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


class Database:
    """An engine plus the two session factories the edges use."""

    def __init__(
        self, url: str, *, pool_size: int = 10, echo: bool = False, pre_ping: bool = False
    ) -> None:
        # Registers the hook that versions each program's configuration on every ORM flush
        # (patron.ledger.program_cache); imported here so every session of every entry point
        # has it.
        import patron.ledger.program_cache  # noqa: F401

        self.url = normalise_url(url)
        self.engine = make_engine(self.url, pool_size=pool_size, echo=echo, pre_ping=pre_ping)
        self._writer = sessionmaker(self.engine, expire_on_commit=False)
        self._reader = sessionmaker(
            self.engine.execution_options(**{READONLY: True}), expire_on_commit=False
        )
        # SQLite has one writer at a time. Threads of this process queue on a lock instead of
        # on the database's busy handler, which sleeps (up to 100 ms a try) when it finds the
        # file locked: under concurrent writes that sleep, not the work, set the throughput.
        # Other processes (a second worker, the CLI) still meet the busy handler.
        self._write_lock = threading.RLock() if is_sqlite(self.engine) else None

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
