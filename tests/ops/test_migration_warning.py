"""A fresh SQLite database migrates without SQLAlchemy's "Skipped unsupported reflection of
expression-based index ix_members_name_lower" warning, and keeps that index (the rebuild of
`members` in migration 0020 used to drop it)."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

from sqlalchemy.exc import SAWarning

from patron.db.migrate import upgrade


def test_fresh_sqlite_migrates_without_warnings_and_keeps_the_name_index(tmp_path: Path):
    path = tmp_path / "fresh.db"
    with warnings.catch_warnings():
        warnings.simplefilter("error", SAWarning)
        upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        (sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'ix_members_name_lower'"
        ).fetchone()
        foreign_keys = conn.execute("PRAGMA foreign_key_list(accounts)").fetchall()
    assert "lower(name)" in sql
    assert {row[2] for row in foreign_keys} == {"programs", "members"}
