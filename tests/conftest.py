"""Every test that takes `db` runs on SQLite and on PostgreSQL.

PostgreSQL runs when PATRON_TEST_DATABASE_URL is set (`.ci/run` always sets it);
with CI=true a missing or unreachable PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from sqlalchemy import event

from patron import clock, http
from patron.db.engine import Database
from patron.db.migrate import upgrade
from patron.schema import Base

PG_URL = os.environ.get("PATRON_TEST_DATABASE_URL", "")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # 12:00 on a Monday in Seoul

# No test asserts timing (benchmarks do, beside their baselines): Hypothesis' per-example deadline
# of 200 ms only turned a slow example on a busy CI machine into a Flaky failure.
settings.register_profile("patron", deadline=None)
settings.load_profile("patron")


def pytest_configure(config: pytest.Config) -> None:
    if IN_CI and not PG_URL:
        raise pytest.UsageError("CI=true but PATRON_TEST_DATABASE_URL is not set")
    # The log channel's file (where the demo's messages land): never the checkout's messages.log.
    os.environ.setdefault(
        "PATRON_MESSAGE_LOG", str(Path(tempfile.gettempdir()) / f"patron-test-{os.getpid()}.log")
    )


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("PostgreSQL not configured (set PATRON_TEST_DATABASE_URL)")
    import psycopg

    admin_url = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    # One database per test process, so parallel runs never drop each other's.
    name = f"patron_test_{_worker()}_{os.getpid()}"
    base, _, _ = admin_url.rpartition("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
        # A commit returns before its WAL reaches the disk. Only a crash of PostgreSQL itself
        # could lose one; the crash tests kill Patron's processes, never the database.
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    url = f"{base}/{name}"
    upgrade(url)
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_all(db: Database) -> None:
    """Every table emptied and every sequence back at its start, as TRUNCATE … RESTART IDENTITY
    would leave them. DELETE with the foreign-key triggers off (replication role) is ~100× faster
    than TRUNCATE here: TRUNCATE of 70 tables creates 70 new files per test."""
    deletes = "; ".join(f'DELETE FROM "{t.name}"' for t in Base.metadata.sorted_tables)
    restart = (
        "SELECT setval(quote_ident(schemaname) || '.' || quote_ident(sequencename), "
        "start_value, false) FROM pg_sequences WHERE last_value IS NOT NULL"
    )
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"SET LOCAL session_replication_role = replica; {deletes}; {restart}")


def _no_fsync(dbapi_conn: Any, _record: Any) -> None:
    """The `db` fixture's SQLite skips fsync (after Patron's own PRAGMAs, which ask for FULL):
    a test's file never outlives a crash. The crash tests run their own servers on files of
    their own, with Patron's settings."""
    dbapi_conn.execute("PRAGMA synchronous=OFF")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        if request.node.get_closest_marker("postgresql_only"):
            pytest.skip("needs row locks across connections: PostgreSQL only")
        path = tmp_path / "patron.db"
        shutil.copy(sqlite_template, path)
        database = Database(f"sqlite:///{path}")
        event.listen(database.engine, "connect", _no_fsync)
    else:
        url = request.getfixturevalue("pg_url")
        database = Database(url, pool_size=20)
        empty_all(database)
    yield database
    database.dispose()


@pytest.fixture(autouse=True)
def _reset_state() -> Iterator[None]:
    http.forget_keys()
    yield
    clock.freeze(None)
    http.forget_keys()


@pytest.fixture
def frozen() -> Iterator[datetime]:
    """The clock pinned at T0; tests move it with clock.freeze(...)."""
    clock.freeze(T0)
    yield T0


@pytest.fixture
def app(db: Database):
    from patron.app import create_app

    return create_app(db=db)


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def keys(db: Database) -> dict[str, str]:
    """One API key per scope: {"admin": ..., "pos": ..., "read": ...}."""
    from patron.audit.service import CLI
    from patron.auth.service import create_key

    out = {}
    with db.unit_of_work() as session:
        for scope in ("admin", "pos", "read"):
            _row, out[scope] = create_key(
                session, name=f"{scope} key", scopes=[scope], actor=CLI, now=clock.now()
            )
    return out


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
