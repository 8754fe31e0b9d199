"""The demo's staff users, and migration 0004 up and down."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect

from patron import clock, demo
from patron.admin import service
from patron.db.migrate import alembic_config, upgrade


def test_the_demo_creates_one_user_per_role_with_printed_passwords(db, frozen):
    result = demo.load(db, now=frozen, members_count=3, days=20)
    assert [(role, email) for role, email, _ in result.staff] == [
        ("owner", "owner@demo.patron"),
        ("marketer", "marketer@demo.patron"),
        ("support", "support@demo.patron"),
        ("viewer", "viewer@demo.patron"),
    ]
    for _role, email, password in result.staff:
        with db.unit_of_work() as s:
            assert service.authenticate(s, email=email, password=password, now=clock.now()).ok


def test_migration_0004_creates_and_drops_the_staff_tables(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0004")
    tables = set(inspect(create_engine(url)).get_table_names())
    assert {"staff_users", "staff_sessions"} <= tables
    command.downgrade(alembic_config(url), "0003")
    tables = set(inspect(create_engine(url)).get_table_names())
    assert not {"staff_users", "staff_sessions"} & tables
    upgrade(url)
