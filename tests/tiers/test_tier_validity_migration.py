"""Migration 0014: the period's validity on the run's row; going down writes it to the accounts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect

from patron.db.engine import Database
from patron.db.migrate import alembic_config, upgrade
from patron.programs.service import get_program
from patron.tiers import jobs
from tests.factories import make_member, make_program
from tests.tiers._tier_helpers import AFTER_H1, AFTER_H2, account, buy, set_club

END_H2 = datetime(2026, 12, 31, 15, 0, tzinfo=UTC)
END_H1_2027 = datetime(2027, 6, 30, 15, 0, tzinfo=UTC)


def _run_columns(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns("tier_evaluation_runs")}
    finally:
        engine.dispose()


def test_migration_0014_up_and_down_keeps_what_readers_showed(tmp_path: Path, frozen):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    assert "valid_until" in _run_columns(url)
    db = Database(url)
    try:
        with db.unit_of_work() as session:
            program = make_program(session, now=frozen)
            set_club(session, program, now=frozen)
            kept = make_member(session, now=frozen, program=program).id
            buy(session, program, kept, 150_000, now=frozen)  # silver, valid to the end of H2
            buy(session, program, kept, 150_000, now=AFTER_H1)  # silver again in H2
        jobs.evaluate(db, "bakery", AFTER_H2, now=AFTER_H2)  # kept: not written
        with db.unit_of_work(readonly=True) as session:
            acc = account(session, get_program(session, "bakery"), kept)
            assert acc.tier == "silver" and acc.tier_valid_until == END_H2
    finally:
        db.dispose()

    command.downgrade(alembic_config(url), "0013")
    assert "valid_until" not in _run_columns(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT tier_valid_until FROM accounts").scalar_one()
    finally:
        engine.dispose()
    assert str(stored).startswith("2027-06-30 15:00:00")  # the run's, written to the account
    upgrade(url)
    assert "valid_until" in _run_columns(url)
