"""Reports as tables: for the terminal, CSV (UTF-8 with a BOM, for Excel) and XLSX.

Free text that a spreadsheet would run as a formula gets a leading apostrophe, as in every
Patron export (`patron.ledger.views._no_formula`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from patron.ledger.views import _no_formula
from patron.money import minor_unit
from patron.reports.finance import JournalOut, LiabilityOut, MemberBalanceOut
from patron.reports.members import MembersReport
from patron.reports.period import FiguresOut, PeriodReport
from patron.reports.promotions import PromotionsReport
from patron.reports.rewards import (
    BreakageFigures,
    BreakageReport,
    CouponsReport,
    RedemptionFigures,
    RedemptionsReport,
    StockReport,
)

FIGURE_COLUMNS = [
    "earned",
    "reversed",
    "redeemed",
    "restored",
    "expired",
    "adjusted_in",
    "adjusted_out",
    "net",
    "issued",
    "net_redeemed",
    "purchases",
    "sales",
    "issued_value",
    "redeemed_value",
]


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    # Columns holding money, formatted with the currency's decimals in XLSX.
    money_columns: set[str] = field(default_factory=set)
    # Columns left out on the terminal, where width is short (files keep them).
    terminal_hidden: set[str] = field(default_factory=set)


@dataclass
class Tables:
    """One report as one or more tables (XLSX: one sheet each; CSV: sections)."""

    name: str
    currency: str
    tables: list[Table]


def _figures(f: FiguresOut) -> list[Any]:
    return [getattr(f, c) for c in FIGURE_COLUMNS]


MONEY_FIGURES = {"sales", "issued_value", "redeemed_value"}


def period_tables(report: PeriodReport) -> Tables:
    group = [report.group_by] if report.group_by else []
    columns = ["period", "from", "to", *group, *FIGURE_COLUMNS]
    table = Table(
        f"{report.program} points",
        columns,
        money_columns=MONEY_FIGURES,
        terminal_hidden={"from", "to", "issued_value", "redeemed_value"},
    )
    for row in report.rows:
        table.rows.append(
            [
                row.period,
                row.starts,
                row.ends,
                *([row.group or "(none)"] if group else []),
                *_figures(row),
            ]
        )
    table.rows.append(
        [
            "total",
            report.first_day,
            report.last_day,
            *([""] if group else []),
            *_figures(report.totals),
        ]
    )
    name = f"{report.program}-points-{report.first_day}-{report.last_day}"
    return Tables(name, report.currency, [table])


def liability_tables(report: LiabilityOut) -> Tables:
    summary = Table(
        "liability",
        ["figure", "value"],
        [
            ["as_of", report.as_of],
            ["basis", report.basis],
            ["currency", report.currency],
            ["point_value", report.point_value],
            ["ledger_points", report.ledger_points],
            ["overdue_points", report.overdue_points],
            ["outstanding_points", report.outstanding_points],
            ["outstanding_value", report.outstanding_value],
            ["projection_months", report.projection_months],
            ["projected_breakage_points", report.projected_breakage_points],
            ["projected_breakage_value", report.projected_breakage_value],
            ["expected_redemption_value", report.expected_redemption_value],
            *[[f"lifetime_{k}", v] for k, v in report.lifetime.items()],
            ["coupons_outstanding", report.coupons_outstanding],
            ["coupons_outstanding_value", report.coupons_outstanding_value],
            ["total_liability_value", report.total_liability_value],
        ],
    )
    breakage = Table(
        "breakage",
        [
            "months",
            "from",
            "to",
            "issued",
            "expired",
            "redeemed",
            "breakage_rate",
            "redemption_rate",
        ],
        [
            [
                w.months,
                w.first_day,
                w.last_day,
                w.issued,
                w.expired,
                w.redeemed,
                w.breakage_rate if w.breakage_rate is not None else "",
                w.redemption_rate if w.redemption_rate is not None else "",
            ]
            for w in report.breakage
        ],
    )
    return Tables(
        f"{report.program}-liability-{report.as_of}", report.currency, [summary, breakage]
    )


JOURNAL_COLUMNS = ["date", "entry", "account", "debit", "credit", "currency", "points", "memo"]


def journal_tables(report: JournalOut) -> Tables:
    table = Table("journal", JOURNAL_COLUMNS, money_columns={"debit", "credit"})
    for line in report.lines:
        table.rows.append(
            [
                line.day,
                line.entry,
                line.account,
                line.debit,
                line.credit,
                report.currency,
                line.points,
                line.memo,
            ]
        )
    name = f"{report.program}-journal-{report.first_day}-{report.last_day}"
    return Tables(name, report.currency, [table])


def members_tables(report: MembersReport) -> Tables:
    summary = Table(
        "members",
        ["figure", "value"],
        [
            ["as_of", report.as_of],
            ["dormant_days", report.dormant_days],
            ["members", report.members],
            ["active", report.active],
            ["dormant", report.dormant],
            ["never_purchased", report.never_purchased],
        ],
    )
    new = Table(
        "new members",
        ["period", "from", "members"],
        [[r.period, r.starts, r.count] for r in report.new_members],
    )
    tiers = Table(
        "tiers",
        ["tier", "name", "members"],
        [[t.tier or "(none)", t.names.get("en", ""), t.members] for t in report.tier_distribution],
    )
    moves = Table(
        "tier moves",
        ["period", "from", "from_tier", "to_tier", "direction", "members"],
        [
            [
                m.period,
                m.starts,
                m.from_tier or "(none)",
                m.to_tier or "(none)",
                m.direction,
                m.count,
            ]
            for m in report.tier_moves
        ],
    )
    return Tables(f"{report.program}-members-{report.as_of}", "", [summary, new, tiers, moves])


def promotions_tables(report: PromotionsReport) -> Tables:
    table = Table(
        "rules",
        ["rule", "name", "kind", "points", "earns", "budget_points", "budget_used", "budget_left"],
    )
    for r in report.rows:
        table.rows.append(
            [
                r.rule,
                r.name or "",
                r.kind or "",
                r.points,
                r.earns,
                "" if r.budget_points is None else r.budget_points,
                "" if r.budget_used is None else r.budget_used,
                "" if r.budget_left is None else r.budget_left,
            ]
        )
    table.rows.append(["total", "", "", report.earned, report.earns, "", "", ""])
    name = f"{report.program}-rules-{report.first_day}-{report.last_day}"
    return Tables(name, "", [table])


def _name(names: dict[str, str]) -> str:
    """A reward's name for a file: English, else the first given."""
    return names.get("en") or next(iter(names.values()), "")


REDEMPTION_COLUMNS = [
    "redemptions",
    "units",
    "points",
    "value",
    "cancelled_units",
    "cancelled_points",
    "cancelled_value",
    "net_units",
    "net_points",
    "net_value",
]
REDEMPTION_MONEY = {"value", "cancelled_value", "net_value"}


def _redemption_figures(f: RedemptionFigures) -> list[Any]:
    return [getattr(f, c) for c in REDEMPTION_COLUMNS]


def redemptions_tables(report: RedemptionsReport) -> Tables:
    group = [report.group_by] if report.group_by else []
    table = Table(
        f"{report.program} rewards",
        ["period", "from", "to", "reward", *group, *REDEMPTION_COLUMNS],
        money_columns=REDEMPTION_MONEY,
        terminal_hidden={"from", "to", "cancelled_points", "cancelled_value"},
    )
    for row in report.rows:
        table.rows.append(
            [
                row.period,
                row.starts,
                row.ends,
                row.reward,
                *([row.group or "(none)"] if group else []),
                *_redemption_figures(row),
            ]
        )
    table.rows.append(
        [
            "total",
            report.first_day,
            report.last_day,
            "",
            *([""] if group else []),
            *_redemption_figures(report.totals),
        ]
    )
    by_reward = Table(
        "by reward",
        ["reward", "name", "kind", *REDEMPTION_COLUMNS],
        [[r.reward, _name(r.names), r.kind, *_redemption_figures(r)] for r in report.by_reward],
        money_columns=REDEMPTION_MONEY,
        terminal_hidden={"cancelled_points", "cancelled_value"},
    )
    name = f"{report.program}-rewards-{report.first_day}-{report.last_day}"
    return Tables(name, report.currency, [table, by_reward])


def stock_tables(report: StockReport) -> Tables:
    columns = [
        "reward",
        "name",
        "status",
        "stock_left",
        "opening",
        "restocked",
        "redeemed",
        "returned",
        "corrected",
        "closing",
    ]
    table = Table("stock", columns, terminal_hidden={"name"})
    for r in report.rows:
        table.rows.append(
            [
                r.reward,
                _name(r.names),
                r.status,
                "unlimited" if r.stock_left is None else r.stock_left,
                r.opening,
                r.restocked,
                r.redeemed,
                r.returned,
                r.corrected,
                r.closing,
            ]
        )
    span = f"{report.first_day}-{report.last_day}" if report.first_day else "all"
    return Tables(f"{report.program}-stock-{span}", "", [table])


def coupons_tables(report: CouponsReport) -> Tables:
    table = Table(
        "coupons outstanding",
        ["reward", "name", "kind", "coupons", "points", "value"],
        money_columns={"value"},
    )
    for r in report.rows:
        table.rows.append([r.reward, _name(r.names), r.kind, r.coupons, r.points, r.value])
    table.rows.append(["total", "", "", report.coupons, report.points, report.value])
    return Tables(f"{report.program}-coupons-{report.as_of}", report.currency, [table])


BREAKAGE_COLUMNS = [
    "expired",
    "expired_points",
    "expired_value",
    "used",
    "used_value",
    "breakage_rate",
]


def _breakage_figures(f: BreakageFigures) -> list[Any]:
    return [
        *[getattr(f, c) for c in BREAKAGE_COLUMNS[:-1]],
        "" if f.breakage_rate is None else f.breakage_rate,
    ]


def coupon_breakage_tables(report: BreakageReport) -> Tables:
    table = Table(
        "coupon breakage",
        ["reward", "name", "on_expiry", *BREAKAGE_COLUMNS],
        money_columns={"expired_value", "used_value"},
        terminal_hidden={"name"},
    )
    for r in report.rows:
        table.rows.append([r.reward, _name(r.names), r.on_expiry, *_breakage_figures(r)])
    table.rows.append(["total", "", "", *_breakage_figures(report.totals)])
    name = f"{report.program}-coupon-breakage-{report.first_day}-{report.last_day}"
    return Tables(name, report.currency, [table])


def balance_tables(report: MemberBalanceOut) -> Tables:
    table = Table(
        "balance",
        ["figure", "value"],
        [[k, v] for k, v in report.model_dump().items()],
    )
    return Tables(f"{report.program}-member-{report.member_id}-balance", report.currency, [table])


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return _no_formula(value)


def to_csv(tables: Tables) -> bytes:
    """One table: header and rows. Several: each as a section (title, header, rows, blank)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    several = len(tables.tables) > 1
    for index, table in enumerate(tables.tables):
        if several:
            if index:
                writer.writerow([])
            writer.writerow([_cell(f"# {table.title}")])
        writer.writerow(table.columns)
        writer.writerows([[_cell(v) for v in row] for row in table.rows])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(tables: Tables) -> bytes:
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.utils import get_column_letter

    digits = minor_unit(tables.currency) if tables.currency else 0
    money_format = "#,##0" + ("." + "0" * digits if digits else "")
    book = Workbook()
    first = book.active
    assert first is not None
    book.remove(first)
    used: set[str] = set()
    for table in tables.tables:
        title = (table.title.replace("/", " ")[:31]) or "report"
        while title in used:
            title = title[:28] + f"~{len(used)}"
        used.add(title)
        sheet = book.create_sheet(title)
        sheet.append(table.columns)
        money_at = {i for i, c in enumerate(table.columns, start=1) if c in table.money_columns}
        for row in table.rows:
            cells = []
            for value in row:
                value = _no_formula(value)
                if isinstance(value, str):
                    value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
                elif isinstance(value, datetime):
                    value = value.replace(tzinfo=None)  # XLSX has no time zones; values are UTC
                cells.append(value)
            sheet.append(cells)
            for index in money_at:
                sheet.cell(row=sheet.max_row, column=index).number_format = money_format
        for i, column in enumerate(table.columns, start=1):
            width = max([len(str(column))] + [len(str(r[i - 1])) for r in table.rows[:200]])
            sheet.column_dimensions[get_column_letter(i)].width = min(max(width + 2, 8), 40)
        sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def terminal_columns(table: Table) -> list[str]:
    return [c for c in table.columns if c not in table.terminal_hidden]


def to_terminal_rows(table: Table) -> list[list[str]]:
    def show(value: Any) -> str:
        if isinstance(value, bool):
            return str(value)
        if isinstance(value, int | Decimal):
            return f"{value:,}"
        if isinstance(value, date | datetime):
            return value.isoformat()
        return "" if value is None else str(value)

    shown = [i for i, c in enumerate(table.columns) if c not in table.terminal_hidden]
    return [[show(row[i]) for i in shown] for row in table.rows]
