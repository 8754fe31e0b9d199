"""Fixtures for the operations tests: most run on SQLite only (what they test does not depend
on the engine); /ready runs on both through the shared `db` fixture."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from patron.config import get_settings
from patron.db.engine import Database


@pytest.fixture
def sqlite_db(tmp_path: Path, sqlite_template: Path) -> Iterator[Database]:
    path = tmp_path / "patron.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


@pytest.fixture
def setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """`setting("ready_max_outbox_lag_seconds", "60")`: a PATRON_ setting for this test."""

    def set_(name: str, value: str) -> None:
        monkeypatch.setenv(f"PATRON_{name.upper()}", value)
        get_settings.cache_clear()

    yield set_
    get_settings.cache_clear()
