"""The sale path's reads find their rows by index on SQLite without looking at bound values.

The snapshot's statements had `remaining > ?` with 0 bound. SQLite can use the partial index on
open lots (`WHERE remaining > 0`) only by looking at the bound 0, and a plan that depends on a
bound value is compiled again every time the value is bound: every sale recompiled its largest
statement (270 → 147 µs a group of 8 once the 0 is in the SQL, docs/benchmarks.md). SQLite's
plan with the literal parameters unknown (bound NULL) is the check: it must scan no ledger
table.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from patron.db.engine import Database
from patron.ledger.models import Lot, is_open
from patron.ledger.views import EXPIRING_WINDOW  # noqa: F401  (the module the views query)
from patron.sales import snapshot

LEDGER_TABLES = ("lots", "entries", "purchases", "movements", "accounts", "members")


@pytest.fixture
def sqlite_db(tmp_path: Path, sqlite_template: Path) -> Any:
    path = tmp_path / "plans.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


def _plan(database: Database, stmt: Any) -> list[str]:
    """SQLite's plan for `stmt` as the snapshot runs it (its text and parameter order), the
    literal values among its parameters unknown to the planner (NULL)."""
    with database.engine.connect() as conn:
        sql, params, _results = snapshot._sqlite_sql(stmt, conn)
        values = [
            json.dumps([1, 2])
            if name in ("x_members", "x_spenders", "x_takers", "x_exts", "x_late")
            else (None if not name.startswith("x_") else 1)
            for name, _process, fixed in params
        ]
        driver = conn.connection.driver_connection
        assert driver is not None
        return [row[3] for row in driver.execute("EXPLAIN QUERY PLAN " + sql, values)]


def _scans(plan: list[str]) -> list[str]:
    return [step for step in plan if step.startswith("SCAN") and step.split()[1] in LEDGER_TABLES]


STATEMENTS = {
    "lock": lambda: snapshot._lock_stmt("sqlite"),
    "figures, points metric": lambda: snapshot._figures_stmt("sqlite", "points", True, False),
    "figures, spend metric": lambda: snapshot._figures_stmt("sqlite", "spend", False, False),
    "figures, rolling expiry": lambda: snapshot._figures_stmt("sqlite", "purchases", True, True),
    "replays": lambda: snapshot._replays_stmt("sqlite"),
    "spendable lots": lambda: snapshot._lots_stmt("sqlite"),
}


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_the_snapshot_scans_no_ledger_table(sqlite_db, name):
    plan = _plan(sqlite_db, STATEMENTS[name]())
    assert plan, name
    assert _scans(plan) == [], (name, plan)


def test_open_lots_of_an_account_are_read_through_the_partial_index(sqlite_db):
    """The reason for `is_open`: with the 0 bound, a plan that cannot see it scans the table."""
    bound = select(Lot.id).where(Lot.account_id == 1, Lot.remaining > 0)
    inline = select(Lot.id).where(Lot.account_id == 1, is_open(Lot.remaining))
    assert _scans(_plan(sqlite_db, bound)) == ["SCAN lots"]
    assert _scans(_plan(sqlite_db, inline)) == []
    assert any("ix_lots_account_open" in step for step in _plan(sqlite_db, inline))
