"""Report endpoints: period, liability, journal, members, promotions, rewards and coupons,
dashboard, a member's balance as of a date, and the roll-up refresh. Every report is JSON, and most also CSV or XLSX."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.ledger.views import get_account
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program
from patron.reports import dashboard as dashboards
from patron.reports import export, finance, members, period, promotions, rewards, rollup
from patron.reports.common import Basis, Granularity, GroupBy, day_range, today
from patron.reports.dashboard import DashboardOut
from patron.reports.finance import JournalAccounts, JournalOut, LiabilityOut, MemberBalanceOut
from patron.reports.members import MembersReport
from patron.reports.period import PeriodReport
from patron.reports.promotions import PromotionsReport
from patron.reports.rewards import BreakageReport, CouponsReport, RedemptionsReport, StockReport

log = logging.getLogger("patron.reports")

router = APIRouter(
    prefix="/api/v1",
    tags=["reports"],
    responses=responses(Unauthorized, Forbidden, Invalid, NotFound),
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
MemberId = Path(ge=1, le=2**53)
Format = Literal["json", "csv", "xlsx"]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FILE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/json": {}, "text/csv": {}, XLSX: {}},
        "description": "The report as JSON, or a file with format=csv or format=xlsx",
    }
}

FromDay = Query(None, alias="from", description="First local date (default: 29 days before to)")
ToDay = Query(None, alias="to", description="Last local date, inclusive (default: today)")
Month = Query(
    None, pattern=r"^\d{4}-\d{2}$", description="A whole month instead of from/to, e.g. 2026-02"
)
BasisQuery = Query(
    "occurred",
    description="occurred: by when the points moved (the sale's time); recorded: by when "
    "Patron wrote the entry (a recorded day never changes once it is over)",
)


def _fresh(db: Database) -> None:
    """Keep the live part of report queries small; the figures are exact either way."""
    try:
        rollup.ensure_fresh(db, now=http.now())
    except OperationalError as exc:  # e.g. the lock timed out behind a long import
        log.warning("report roll-up refresh skipped: %s", exc.orig)


def _render(report: Any, fmt: Format, tables: Callable[[Any], export.Tables]) -> Any:
    if fmt == "json":
        return report
    out = tables(report)
    if fmt == "csv":
        return Response(
            export.to_csv(out),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{out.name}.csv"'},
        )
    return Response(
        export.to_xlsx(out),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{out.name}.xlsx"'},
    )


@router.get(
    "/programs/{code}/reports/period",
    response_model=PeriodReport,
    responses=FILE_RESPONSE,
    summary="Points earned, redeemed, expired and adjusted per day, week or month, by store, "
    "channel or tier, with the sales they came from",
)
def period_report(
    code: str = ProgramCode,
    first: date | None = FromDay,
    last: date | None = ToDay,
    month: str | None = Month,
    granularity: Granularity = Query("day"),
    group_by: GroupBy | None = Query(None),
    basis: Basis = BasisQuery,
    store: str | None = Query(None, max_length=40, description="Only this store (code)"),
    channel: str | None = Query(None, max_length=10, description="Only this channel"),
    tier: str | None = Query(None, max_length=40, description="Only members in this tier"),
    format: Format = Query("json"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
):
    _fresh(db)

    def run(s):
        program = get_program(s, code)
        rng = day_range(program, first=first, last=last, month=month, now=http.now())
        return period.period_report(
            s,
            program,
            rng,
            now=http.now(),
            granularity=granularity,
            group_by=group_by,
            basis=basis,
            store=store,
            channel=channel,
            tier=tier,
        )

    return _render(http.read(db, run), format, export.period_tables)


@router.get(
    "/programs/{code}/reports/liability",
    response_model=LiabilityOut,
    responses=FILE_RESPONSE,
    summary="Points outstanding and their money value as of a date; breakage and redemption "
    "rates over the trailing 3, 6 and 12 months; projected breakage",
)
def liability_report(
    code: str = ProgramCode,
    as_of: date | None = Query(None, description="Local date (default: today)"),
    basis: Basis = BasisQuery,
    projection_months: Literal[3, 6, 12] = Query(
        12, description="The breakage window the projection uses"
    ),
    format: Format = Query("json"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
):
    _fresh(db)

    def run(s):
        program = get_program(s, code)
        return finance.liability(
            s,
            program,
            as_of=as_of or today(program, http.now()),
            now=http.now(),
            basis=basis,
            projection_months=projection_months,
        )

    return _render(http.read(db, run), format, export.liability_tables)


@router.get(
    "/programs/{code}/reports/journal",
    response_model=JournalOut,
    responses=FILE_RESPONSE,
    summary="Per day, balanced debit and credit lines for points issued, redeemed, expired and "
    "adjusted, in money (format=csv for an accounting import)",
)
def journal_report(
    code: str = ProgramCode,
    first: date | None = FromDay,
    last: date | None = ToDay,
    month: str | None = Month,
    basis: Basis = BasisQuery,
    liability_account: str = Query("Points liability", min_length=1, max_length=100),
    expense_account: str = Query("Loyalty expense", min_length=1, max_length=100),
    redemption_account: str = Query("Points redemption", min_length=1, max_length=100),
    breakage_account: str = Query("Breakage income", min_length=1, max_length=100),
    adjustment_account: str = Query("Loyalty expense", min_length=1, max_length=100),
    format: Format = Query("json"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
):
    _fresh(db)
    accounts = JournalAccounts(
        liability=liability_account,
        expense=expense_account,
        redemption=redemption_account,
        breakage=breakage_account,
        adjustment=adjustment_account,
    )

    def run(s):
        program = get_program(s, code)
        rng = day_range(program, first=first, last=last, month=month, now=http.now())
        return finance.journal(s, program, rng, basis=basis, accounts=accounts)

    return _render(http.read(db, run), format, export.journal_tables)


@router.get(
    "/programs/{code}/reports/members",
    response_model=MembersReport,
    responses=FILE_RESPONSE,
    summary="Active and dormant members, new members per period, tier distribution and moves",
)
def members_report(
    code: str = ProgramCode,
    first: date | None = FromDay,
    last: date | None = ToDay,
    month: str | None = Month,
    as_of: date | None = Query(
        None, description="Activity and tiers at the end of this local date (default: to)"
    ),
    dormant_days: int = Query(
        members.DEFAULT_DORMANT_DAYS, ge=1, le=3650, description="No purchase in this many days"
    ),
    granularity: Granularity = Query("month"),
    format: Format = Query("json"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
):
    def run(s):
        program = get_program(s, code)
        rng = day_range(program, first=first, last=last, month=month, now=http.now())
        return members.members_report(
            s,
            program,
            rng,
            now=http.now(),
            as_of=as_of,
            dormant_days=dormant_days,
            granularity=granularity,
        )

    return _render(http.read(db, run), format, export.members_tables)


@router.get(
    "/programs/{code}/reports/promotions",
    response_model=PromotionsReport,
    responses=FILE_RESPONSE,
    summary="Points issued per rule and promotion in a range; promotion budgets used and left",
)
def promotions_report(
    code: str = ProgramCode,
    first: date | None = FromDay,
    last: date | None = ToDay,
    month: str | None = Month,
    format: Format = Query("json"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
):
    def run(s):
        program = get_program(s, code)
        rng = day_range(program, first=first, last=last, month=month, now=http.now())
        return promotions.promotions_report(s, program, rng, now=http.now())

    return _render(http.read(db, run), format, export.promotions_tables)


@router.get(
    "/programs/{code}/reports/rewards",
    response_model=RedemptionsReport,
    responses=FILE_RESPONSE,
    summary="Rewards redeemed per day, week or month and reward, by store, tier or channel: "
    "units, points and their cost in money, cancelled coupons netted out",
)
def rewards_report(
    code: str = ProgramCode,
    first: date | None = FromDay,
    last: date | None = ToDay,
    month: str | None = Month,
    granularity: Granularity = Query("day"),
    group_by: GroupBy | None = Query(None),
    format: Format = Query("json"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
):
    def run(s):
        program = get_program(s, code)
        rng = day_range(program, first=first, last=last, month=month, now=http.now())
        return rewards.redemptions_report(
            s, program, rng, now=http.now(), granularity=granularity, group_by=group_by
        )

    return _render(http.read(db, run), format, export.redemptions_tables)


@router.get(
    "/programs/{code}/reports/rewards/stock",
    response_model=StockReport,
    responses=FILE_RESPONSE,
    summary="Every reward's stock: units left, and the units restocked, redeemed, given back by "
    "cancellations and corrected (all time, or in a range)",
)
def rewards_stock_report(
    code: str = ProgramCode,
    first: date | None = Query(None, alias="from", description="First local date (default: all)"),
    last: date | None = Query(None, alias="to", description="Last local date, inclusive"),
    month: str | None = Month,
    format: Format = Query("json"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
):
    def run(s):
        program = get_program(s, code)
        rng = None
        if first is not None or last is not None or month is not None:
            rng = day_range(program, first=first, last=last, month=month, now=http.now())
        return rewards.stock_report(s, program, rng, now=http.now())

    return _render(http.read(db, run), format, export.stock_tables)


@router.get(
    "/programs/{code}/reports/coupons",
    response_model=CouponsReport,
    responses=FILE_RESPONSE,
    summary="Coupons outstanding at the end of a date, per reward, and their value: the "
    "coupons' liability (a gift card counts its balance left)",
)
def coupons_report(
    code: str = ProgramCode,
    as_of: date | None = Query(None, description="Local date (default: today)"),
    format: Format = Query("json"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
):
    def run(s):
        program = get_program(s, code)
        return rewards.coupons_report(
            s, program, as_of=as_of or today(program, http.now()), now=http.now()
        )

    return _render(http.read(db, run), format, export.coupons_tables)


@router.get(
    "/programs/{code}/reports/coupons/breakage",
    response_model=BreakageReport,
    responses=FILE_RESPONSE,
    summary="Coupons that expired unused in a range against those used, per reward: count, "
    "points, value and the breakage rate",
)
def coupon_breakage_report(
    code: str = ProgramCode,
    first: date | None = FromDay,
    last: date | None = ToDay,
    month: str | None = Month,
    format: Format = Query("json"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
):
    def run(s):
        program = get_program(s, code)
        rng = day_range(program, first=first, last=last, month=month, now=http.now())
        return rewards.breakage_report(s, program, rng, now=http.now())

    return _render(http.read(db, run), format, export.coupon_breakage_tables)


@router.get(
    "/programs/{code}/reports/dashboard",
    response_model=DashboardOut,
    summary="The dashboard's numbers in one call: daily series, this and last month, "
    "outstanding value, rates, active members, tier distribution",
)
def dashboard(
    code: str = ProgramCode,
    days: int = Query(30, ge=1, le=366, description="Days in the daily series"),
    dormant_days: int = Query(members.DEFAULT_DORMANT_DAYS, ge=1, le=3650),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> DashboardOut:
    _fresh(db)
    return http.read(
        db,
        lambda s: dashboards.dashboard(
            s, get_program(s, code), now=http.now(), days=days, dormant_days=dormant_days
        ),
    )


@router.get(
    "/programs/{code}/members/{member_id}/balance",
    response_model=MemberBalanceOut,
    summary="A member's balance as of a date (end of that local day) or an instant",
)
def member_balance(
    code: str = ProgramCode,
    member_id: int = MemberId,
    as_of: str | None = Query(
        None,
        max_length=40,
        description="2026-03-01 (end of that local day), or 2026-03-01T18:00:00+09:00; "
        "a time without offset is the program's local time. Default: now",
    ),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> MemberBalanceOut:
    def run(s):
        program = get_program(s, code)
        account = get_account(s, program, member_id)
        at = finance.parse_as_of(program, as_of, http.now())
        return finance.member_balance(s, program, account, at=at, now=http.now())

    return http.read(db, run)


class RefreshOut(BaseModel):
    from_entry_id: int
    to_entry_id: int
    chunks: int
    seconds: float


@router.post(
    "/reports/refresh",
    response_model=RefreshOut,
    summary="Roll the entries written since the last refresh into the report roll-up",
    description="Reports are exact without it; a refresh only keeps them fast. Jobs run it "
    "(`patron report refresh`); reports also run it when many entries are waiting.",
)
def refresh(
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("admin")),
) -> RefreshOut:
    done = rollup.refresh(db, now=http.now())
    return RefreshOut(
        from_entry_id=done.from_entry_id,
        to_entry_id=done.to_entry_id,
        chunks=done.chunks,
        seconds=round(done.seconds, 3),
    )
