"""Is this worker ready for traffic? The database answers, its schema is at the migrations'
head, and (if PATRON_READY_MAX_OUTBOX_LAG_SECONDS is set) the outbox is not lagging.

`/health` says only that the process runs (liveness: restart me if it fails); `/ready` says a
load balancer may send it requests. Each check reports its details whether it passed or not.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from patron.config import Settings
from patron.db.engine import Database
from patron.db.migrate import alembic_config
from patron.ops.metrics import outbox_lag


@lru_cache(maxsize=1)
def script_heads() -> frozenset[str]:
    """The head revisions of the migration scripts this code ships (read once per process)."""
    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def readiness(db: Database, settings: Settings) -> tuple[bool, str, dict[str, Any]]:
    """(ready, the reasons it is not, every check's details)."""
    checks: dict[str, Any] = {}
    reasons: list[str] = []
    try:
        with db.engine.connect() as conn:
            current = frozenset(MigrationContext.configure(conn).get_current_heads())
    except SQLAlchemyError as exc:
        checks["database"] = {"ok": False, "dialect": db.dialect, "error": type(exc).__name__}
        return False, "the database is unreachable", checks
    checks["database"] = {"ok": True, "dialect": db.dialect}

    heads = script_heads()
    at_head = current == heads
    checks["migrations"] = {"ok": at_head, "current": sorted(current), "head": sorted(heads)}
    if not at_head:
        reasons.append(
            f"the schema is at {', '.join(sorted(current)) or 'no revision'}, "
            f"the code expects {', '.join(sorted(heads))} (run `patron db upgrade`)"
        )

    try:
        lag = outbox_lag(db)
    except SQLAlchemyError as exc:  # e.g. the tables are missing on a schema far behind
        checks["outbox"] = {"ok": False, "error": type(exc).__name__}
        reasons.append("the outbox cannot be read")
    else:
        limit = settings.ready_max_outbox_lag_seconds
        lagging = limit > 0 and lag["oldest_age_seconds"] > limit
        checks["outbox"] = {"ok": not lagging, **lag, "max_lag_seconds": limit or None}
        if lagging:
            reasons.append(
                f"the oldest undispatched outbox event is {lag['oldest_age_seconds']:.0f} s old "
                f"(limit {limit:.0f} s): is a delivery loop running?"
            )
    return not reasons, "; ".join(reasons), checks
