"""`patron check`: every cached figure proved against what it caches, with set-based queries —
the ledger (account totals, lots, movements, the outbox), the rewards (stock, coupons) and the
report roll-ups. Each part lives with what it checks; this puts them together."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Forbidden, Unauthorized, responses
from patron.ledger.check import CheckReport, add, check_ledger
from patron.reports.rollup import check as check_report_rollup
from patron.rewards.check import check as check_rewards

__all__ = ["CheckReport", "router", "run_check"]

router = APIRouter(prefix="/api/v1", responses=responses(Unauthorized, Forbidden))


def run_check(session: Session) -> CheckReport:
    report = check_ledger(session)
    check_rewards(session, lambda label, rows: add(report, label, rows))
    report.violations.extend(check_report_rollup(session).violations)
    return report


@router.get("/check", tags=["operations"], summary="Verify every ledger invariant")
def check(
    db: Database = Depends(http.get_db), _actor: Actor = Depends(http.require("admin"))
) -> dict[str, object]:
    report = http.read(db, run_check)
    return {
        "ok": report.ok,
        "accounts": report.accounts,
        "entries": report.entries,
        "lots": report.lots,
        "violations": report.violations,
    }
