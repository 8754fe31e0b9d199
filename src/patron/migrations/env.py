from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import event

from patron.db.engine import make_engine
from patron.schema import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    if engine.dialect.name == "sqlite":
        # SQLite rebuilds a table to alter it; foreign keys must be off while it does
        # (the pragma only takes effect outside a transaction, so set it on connect).
        @event.listens_for(engine, "connect")
        def _fk_off(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA foreign_keys=OFF")

    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
