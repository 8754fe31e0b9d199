"""Reports as tables: for the terminal, CSV (UTF-8 with a BOM, for Excel) and XLSX.

Free text that a spreadsheet would run as a formula gets a leading apostrophe, as in every
Patron export (`patron.ledger.views._no_formula`).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from patron.ledger.views import _no_formula
from patron.money import minor_unit
from patron.reports import labels
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
    # For the title row of a workbook: the program, which report (a `labels` code after
    # "report.") and its dates (first and last day, or the one day it is as of).
    program: str = ""
    report: str = ""
    dates: tuple[date, ...] = ()


def _figures(f: FiguresOut) -> list[Any]:
    return [getattr(f, c) for c in FIGURE_COLUMNS]


MONEY_FIGURES = {"sales", "issued_value", "redeemed_value"}


def period_tables(report: PeriodReport) -> Tables:
    group = [report.group_by] if report.group_by else []
    columns = ["period", "from", "to", *group, *FIGURE_COLUMNS]
    table = Table(
        "points",
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
    return Tables(
        name,
        report.currency,
        [table],
        program=report.program,
        report="points",
        dates=(report.first_day, report.last_day),
    )


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
        f"{report.program}-liability-{report.as_of}",
        report.currency,
        [summary, breakage],
        program=report.program,
        report="liability",
        dates=(report.as_of,),
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
    return Tables(
        name,
        report.currency,
        [table],
        program=report.program,
        report="journal",
        dates=(report.first_day, report.last_day),
    )


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
    return Tables(
        f"{report.program}-members-{report.as_of}",
        "",
        [summary, new, tiers, moves],
        program=report.program,
        report="members",
        dates=(report.as_of,),
    )


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
    return Tables(
        name,
        "",
        [table],
        program=report.program,
        report="rules",
        dates=(report.first_day, report.last_day),
    )


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
        "rewards",
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
    return Tables(
        name,
        report.currency,
        [table, by_reward],
        program=report.program,
        report="rewards",
        dates=(report.first_day, report.last_day),
    )


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
    return Tables(
        f"{report.program}-stock-{span}",
        "",
        [table],
        program=report.program,
        report="stock",
        dates=(report.first_day, report.last_day) if report.first_day and report.last_day else (),
    )


def coupons_tables(report: CouponsReport) -> Tables:
    table = Table(
        "coupons outstanding",
        ["reward", "name", "kind", "coupons", "points", "value"],
        money_columns={"value"},
    )
    for r in report.rows:
        table.rows.append([r.reward, _name(r.names), r.kind, r.coupons, r.points, r.value])
    table.rows.append(["total", "", "", report.coupons, report.points, report.value])
    return Tables(
        f"{report.program}-coupons-{report.as_of}",
        report.currency,
        [table],
        program=report.program,
        report="coupons",
        dates=(report.as_of,),
    )


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
    return Tables(
        name,
        report.currency,
        [table],
        program=report.program,
        report="coupon_breakage",
        dates=(report.first_day, report.last_day),
    )


def balance_tables(report: MemberBalanceOut) -> Tables:
    table = Table(
        "balance",
        ["figure", "value"],
        [[k, v] for k, v in report.model_dump().items()],
    )
    return Tables(
        f"{report.program}-member-{report.member_id}-balance",
        report.currency,
        [table],
        program=report.program,
        report="balance",
        dates=(report.as_of.date(),),
    )


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


# Cells a person reads as words, not codes: the total row, empty groups, unlimited stock.
_WORD_CELLS = {"(none)", "unlimited"}


def _width(text: str) -> int:
    """Columns a text takes in a spreadsheet: Korean and Chinese characters count twice."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _title_row(tables: Tables, language: str, exported_at: datetime) -> str:
    from babel.dates import format_date, format_datetime

    locale = {"zh": "zh_Hans"}.get(language, language)
    parts = [tables.program] if tables.program else []
    if tables.report:
        parts.append(labels.word(f"report.{tables.report}", language))
    if tables.dates:
        days = [format_date(d, "medium", locale=locale) for d in tables.dates]
        parts.append(" – ".join(days) if days[0] != days[-1] else days[0])
    stamp = format_datetime(exported_at.astimezone(UTC), "medium", tzinfo=UTC, locale=locale)
    parts.append(f"{labels.word('exported', language)} {stamp} UTC")
    return " · ".join(parts)


def to_xlsx(tables: Tables, *, language: str = "en", exported_at: datetime | None = None) -> bytes:
    """A workbook for people: a title row (program, report, dates, time of export), headers
    and figure names in `language`, numbers with thousands separators, money with the
    currency's decimals, rates as percentages, dates as dates, the header frozen and columns
    as wide as their words. CSV and JSON keep the code keys for programs."""
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    digits = minor_unit(tables.currency) if tables.currency else 0
    money_format = "#,##0" + ("." + "0" * digits if digits else "")
    bold = Font(bold=True)
    header_fill = PatternFill("solid", fgColor="E8ECF2")
    title = _title_row(tables, language, exported_at or datetime.now(UTC))
    book = Workbook()
    first = book.active
    assert first is not None
    book.remove(first)
    used: set[str] = set()
    for table in tables.tables:
        name = labels.word(table.title, language) if labels.known(table.title) else table.title
        name = ("".join(c for c in name if c not in "[]:*?/\\")[:31]) or "report"
        while name in used:
            name = name[:28] + f"~{len(used)}"
        used.add(name)
        sheet = book.create_sheet(name)
        sheet.append([title])
        sheet.cell(row=1, column=1).font = bold
        headers = [labels.word(c, language) for c in table.columns]
        sheet.append(headers)
        for cell in sheet[2]:
            cell.font, cell.fill = bold, header_fill
        figures = table.columns == ["figure", "value"]
        widths = [_width(h) for h in headers]
        for row in table.rows:
            cells: list[Any] = []
            for index, value in enumerate(row):
                if isinstance(value, str):
                    if ((figures or value == "total") and index == 0) or value in _WORD_CELLS:
                        value = labels.word(value, language)
                    value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", str(_no_formula(value)))
                elif isinstance(value, datetime):
                    value = value.astimezone(UTC).replace(tzinfo=None)  # XLSX has no zones
                cells.append(value)
            sheet.append(cells)
            code = str(row[0]) if figures and row else ""
            for index, value in enumerate(cells, start=1):
                column = code if figures else table.columns[index - 1]
                cell = sheet.cell(row=sheet.max_row, column=index)
                cell.number_format = _number_format(value, column, table, money_format)
                if index <= len(widths):
                    widths[index - 1] = max(widths[index - 1], _width(_shown(value)))
        for index, width in enumerate(widths, start=1):
            sheet.column_dimensions[get_column_letter(index)].width = min(max(width + 2, 8), 48)
        sheet.freeze_panes = "A3"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _number_format(value: Any, column: str, table: Table, money_format: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float | date):
        return "General"
    if isinstance(value, datetime):
        return "yyyy-mm-dd hh:mm"
    if isinstance(value, date):
        return "yyyy-mm-dd"
    if "rate" in column:
        return "0.0%"
    if column in table.money_columns or column.endswith("_value") or column == "value":
        return money_format
    if isinstance(value, Decimal) and value != value.to_integral_value():
        return "#,##0.00"
    return "#,##0"


def _shown(value: Any) -> str:
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else str(value)


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
