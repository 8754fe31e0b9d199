"""Reports in the admin UI: the dashboard and one page per report, each with charts, a date
filter, and Excel/CSV downloads.

Every figure comes from the report services (patron.reports.*), called as the HTTP API calls
them; this module only parses the filters, picks the program, lays the service's output out for
charts (charts.py) and hands downloads to reports.export. A filter the service refuses (from
after to, a malformed date, a range that is too long, a date in the future) re-renders the page
with the message under the field and status 422.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from patron import clock, formats
from patron.admin import charts, context, forms, i18n, program_context
from patron.admin.deps import Staff, get_db, require
from patron.admin.templating import path_for, render
from patron.errors import Invalid
from patron.ledger.expiry import add_months
from patron.programs.models import Program
from patron.reports import dashboard as dashboards
from patron.reports import export, finance, members, period, promotions, rewards, rollup
from patron.reports.common import (
    MAX_DAYS,
    DayRange,
    Granularity,
    bucket,
    bucket_end,
    bucket_label,
    buckets,
    day_range,
    today,
)
from patron.reports.members import TierCount

log = logging.getLogger("patron.admin.reports")

router = APIRouter()
PERMISSION = "reports.view"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMATS = ("csv", "xlsx")
GRANULARITIES = ("day", "week", "month")
GROUPS = ("store", "channel", "tier")
PROJECTIONS = (3, 6, 12)
JOURNAL_LINES_SHOWN = 1000
# The figures of a period, in the order the charts and tables show them.
MOVES = ("issued", "net_redeemed", "expired")

# The report pages, in the order of the tabs: (endpoint, message key).
PAGES = (
    ("reports_home", "reports.dashboard"),
    ("reports_period", "reports.period"),
    ("reports_liability", "reports.liability"),
    ("reports_journal", "reports.journal"),
    ("reports_members", "reports.members"),
    ("reports_promotions", "reports.promotions"),
    ("campaigns_list", "reports.campaigns"),
)


def _text(alias: str) -> Any:
    # Text, not a typed value: an empty GET field is "" (no bound) and a bad one gets an inline
    # message instead of FastAPI's error page.
    return Query("", alias=alias, max_length=40)


ProgramCode = Query(None, max_length=40)


# --- shared plumbing --------------------------------------------------------------------------


def _fresh(request: Request) -> None:
    """As the API does: keep the live part of report queries small (exact either way)."""
    try:
        rollup.ensure_fresh(get_db(request), now=clock.now())
    except OperationalError as exc:  # e.g. the lock timed out behind a long import
        log.warning("report roll-up refresh skipped: %s", exc.orig)


def _choose(session: Session, code: str | None) -> tuple[Program | None, list[Program]]:
    """The program asked for (404 if unknown), else the first one; and all of them."""
    every = program_context.visible(context.programs(session))
    if code:
        return program_context.visible_program(session, code), every
    return (every[0] if every else None), every


def _parse_dates(texts: dict[str, str], lang: str) -> tuple[dict[str, date | None], forms.Errors]:
    values: dict[str, date | None] = {}
    errors: forms.Errors = {}
    for name, text in texts.items():
        try:
            values[name] = forms.optional_date(text)
        except forms.BadDate:
            values[name] = None
            errors[name] = i18n.translate("form.error.date", lang)
    return values, errors


def _refusal(exc: Invalid, lang: str, fields: Sequence[str]) -> forms.Errors:
    """A service's Invalid as {field: message}, in the user's language where we have it."""
    errors = forms.from_error(exc, lang, fields)
    key = f"reports.error.{exc.code}"
    if i18n.has_message(key):
        message = i18n.translate(key, lang, max=i18n.number(MAX_DAYS, lang))
        errors = {name: message for name in errors}
    return errors


def _choice(value: str, options: Sequence[str], default: str | None) -> str | None:
    return value if value in options else default


def _download(tables: export.Tables, fmt: str, lang: str) -> Response:
    if fmt == "csv":
        return Response(
            export.to_csv(tables),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{tables.name}.csv"'},
        )
    return Response(
        export.to_xlsx(tables, language=lang, exported_at=clock.now()),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{tables.name}.xlsx"'},
    )


def _links(request: Request, name: str, query: dict[str, Any]) -> dict[str, str]:
    """This page's address for each download format, with the same filters."""
    return {fmt: path_for(request, name, {**query, "format": fmt}) for fmt in FORMATS}


def _tabs(request: Request, program: Program | None) -> list[tuple[str, str, str]]:
    query = {"program": program.code} if program is not None else {}
    return [(name, key, path_for(request, name, query)) for name, key in PAGES]


def _presets(
    request: Request, name: str, program: Program, now: datetime, extra: dict[str, Any]
) -> list[tuple[str, str]]:
    """Quick ranges: this month, last month, the last 12 months (as from/to links)."""
    current = today(program, now)
    start = current.replace(day=1)
    ranges = (
        ("reports.preset.this_month", start, current, None),
        ("reports.preset.last_month", add_months(start, -1), start - timedelta(days=1), None),
        ("reports.preset.last_30", current - timedelta(days=29), current, None),
        ("reports.preset.last_12m", add_months(start, -11), current, "month"),
    )
    out = []
    for key, first, last, granularity in ranges:
        query = {**extra, "program": program.code, "from": first, "to": last}
        if granularity and "granularity" in extra:
            query["granularity"] = granularity
        out.append((key, path_for(request, name, query)))
    return out


@dataclass
class Fmt:
    """Number formatters in the user's language, for chart axes and tables."""

    lang: str
    currency: str = ""

    def number(self, value: Any) -> str:
        return formats.number(value, self.lang)

    def money(self, value: Any) -> str:
        return formats.money(value, self.currency, self.lang)

    def percent(self, rate: Decimal | None) -> str:
        return formats.percent(rate, self.lang)


def tier_label(tier: TierCount, lang: str) -> str:
    if tier.tier is None:
        return i18n.translate("reports.no_tier", lang)
    return tier.names.get(lang) or tier.names.get("en") or tier.tier


def tier_chart(tiers: list[TierCount], lang: str, title: str) -> charts.Chart:
    return charts.hbar_chart(
        [(tier_label(t, lang), t.members) for t in tiers],
        title=title,
        desc=i18n.translate("reports.chart.tiers.desc", lang),
        name=i18n.translate("reports.fig.members", lang),
        key="tier",
        fmt=Fmt(lang).number,
        empty_message=i18n.translate("reports.chart.empty", lang),
    )


def _axis_label(start: date, granularity: str, label: str, lang: str) -> str:
    if granularity == "month":
        return charts.month_label(start, lang)
    if granularity == "day":
        return charts.day_label(start, lang)
    return label  # 2026-W10


def period_chart(
    report: period.PeriodReport,
    rng: DayRange,
    lang: str,
    title: str,
    frame: charts.Frame = charts.WIDE,
) -> charts.Chart:
    """Issued/redeemed/expired per period; grouped reports stack points issued per group.
    Periods without entries (the service leaves them out) are drawn as zero."""
    g = report.granularity
    cut = buckets(rng, g)
    slots = [start for start, _first, _last in cut]
    # A week or month the range covers only part of (the current month, so far) says so.
    labels = [
        _axis_label(s, g, period_label(s, g), lang)
        if (first, last) == (s, bucket_end(s, g))
        else i18n.translate(
            "reports.chart.partial", lang, label=_axis_label(s, g, period_label(s, g), lang)
        )
        for s, first, last in cut
    ]
    fmt = Fmt(lang).number
    empty = i18n.translate("reports.chart.empty", lang)
    starts = {s: i for i, s in enumerate(slots)}
    if report.group_by is None:
        by_slot = {starts[_slot(r.starts, g)]: r for r in report.rows}
        series = [
            charts.Series(
                move,
                i18n.translate(f"reports.fig.{move}", lang),
                [getattr(by_slot[i], move) if i in by_slot else 0 for i in range(len(slots))],
            )
            for move in MOVES
        ]
        desc = i18n.translate("reports.chart.period.desc", lang)
        draw = charts.line_chart if g == "day" else charts.bar_chart
        return draw(
            labels, series, title=title, desc=desc, fmt=fmt, empty_message=empty, frame=frame
        )
    groups: dict[str, list[int]] = {}
    none = i18n.translate("reports.group.none", lang)
    for r in report.rows:
        values = groups.setdefault(r.group or none, [0] * len(slots))
        values[starts[_slot(r.starts, g)]] = r.issued
    series = [
        charts.Series(f"g{n % 8}", name, values) for n, (name, values) in enumerate(groups.items())
    ]
    return charts.bar_chart(
        labels,
        series,
        title=title,
        desc=i18n.translate("reports.chart.period.grouped_desc", lang),
        fmt=fmt,
        empty_message=empty,
        stacked=True,
        frame=frame,
    )


def _slot(day: date, granularity: Granularity) -> date:
    return bucket(day, granularity)


def period_label(start: date, granularity: Granularity) -> str:
    return bucket_label(start, granularity)


def outstanding_series(
    session: Session, program: Program, *, until: date, now: datetime, months: int = 12
) -> list[finance.OutstandingPoint]:
    """Points outstanding at the end of each of the last `months` months, the last one `until`
    itself (one query for all of them: finance.outstanding_series)."""
    return finance.outstanding_series(session, program, finance.month_ends(until, months), now=now)


def outstanding_chart(
    owed: list[finance.OutstandingPoint],
    lang: str,
    currency: str,
    title: str,
    frame: charts.Frame = charts.WIDE,
) -> charts.Chart:
    return charts.line_chart(
        [charts.day_label(o.as_of, lang) for o in owed],
        [
            charts.Series(
                "outstanding",
                i18n.translate("reports.fig.outstanding_value", lang),
                [o.outstanding_value for o in owed],
            )
        ],
        title=title,
        desc=i18n.translate("reports.chart.outstanding.desc", lang),
        fmt=Fmt(lang, currency).money,
        area=True,
        empty_message=i18n.translate("reports.chart.empty", lang),
        frame=frame,
    )


@dataclass
class Page:
    """What every report page's template gets besides its own figures."""

    program: Program | None
    programs: list[Program]
    tabs: list[tuple[str, str, str]]
    values: dict[str, Any]
    errors: forms.Errors = field(default_factory=dict)
    downloads: dict[str, str] = field(default_factory=dict)
    presets: list[tuple[str, str]] = field(default_factory=list)

    @property
    def program_options(self) -> list[tuple[str, str]]:
        return [(p.code, p.name) for p in self.programs]


def _show(
    request: Request,
    template: str,
    page: Page,
    status: int | None = None,
    **extra: Any,
) -> Response:
    tz = ZoneInfo(page.program.timezone) if page.program is not None else None
    return render(
        request,
        template,
        status=status or (422 if page.errors else 200),
        tz=tz,
        section="reports",
        p=page,
        **extra,
    )


# --- the dashboard ----------------------------------------------------------------------------


@dataclass
class RewardLine:
    """One reward on the dashboard: redeemed in the month (net of cancellations) and its
    coupons outstanding today."""

    name: str
    units: int = 0
    points: int = 0
    cost: Decimal = Decimal(0)
    coupons: int = 0
    coupons_value: Decimal = Decimal(0)


def reward_lines(
    redeemed: rewards.RedemptionsReport, open_coupons: rewards.CouponsReport, lang: str
) -> list[RewardLine]:
    """The two reports side by side, one line per reward that has either (by code)."""

    def name(info: rewards.RewardInfo) -> str:
        names = info.names
        return names.get(lang) or names.get("en") or next(iter(names.values()), info.reward)

    lines: dict[str, RewardLine] = {}
    for r in redeemed.by_reward:
        lines[r.reward] = RewardLine(name(r), r.net_units, r.net_points, r.net_value)
    for c in open_coupons.rows:
        line = lines.setdefault(c.reward, RewardLine(name(c)))
        line.coupons, line.coupons_value = c.coupons, c.value
    return [lines[code] for code in sorted(lines)]


def dashboard_tables(
    out: dashboards.DashboardOut, months: period.PeriodReport, new: tuple[int, int]
) -> export.Tables:
    """The dashboard as a workbook: the headline figures, the months, and the daily series."""
    summary = export.Table(
        "dashboard",
        ["figure", "value"],
        [
            ["today", out.today],
            ["currency", out.currency],
            ["issued_this_month", out.this_month.issued],
            ["issued_last_month", out.last_month.issued],
            ["issued_value_last_month", out.last_month.issued_value],
            ["redeemed_this_month", out.this_month.net_redeemed],
            ["redeemed_last_month", out.last_month.net_redeemed],
            ["expired_this_month", out.this_month.expired],
            ["expired_last_month", out.last_month.expired],
            ["outstanding_points", out.outstanding_points],
            ["outstanding_value", out.outstanding_value],
            ["breakage_rate_12m", "" if out.breakage_rate_12m is None else out.breakage_rate_12m],
            [
                "redemption_rate_12m",
                "" if out.redemption_rate_12m is None else out.redemption_rate_12m,
            ],
            ["members", out.members],
            ["active_members", out.active_members],
            ["dormant_members", out.dormant_members],
            ["dormant_days", out.dormant_days],
            ["new_members_this_month", new[0]],
            ["new_members_last_month", new[1]],
        ],
    )
    month_table = export.period_tables(months).tables[0]
    month_table.title = "months"
    series = export.Table(
        "days",
        ["date", "earned", "redeemed", "expired", "adjusted", "net", "sales"],
        [[p.day, p.earned, p.redeemed, p.expired, p.adjusted, p.net, p.sales] for p in out.series],
        money_columns={"sales"},
    )
    tiers = export.Table(
        "tiers",
        ["tier", "name", "members"],
        [[t.tier or "(none)", t.names.get("en", ""), t.members] for t in out.tier_distribution],
    )
    return export.Tables(
        f"{out.program}-dashboard-{out.today}",
        out.currency,
        [summary, month_table, series, tiers],
        program=out.program,
        report="dashboard",
        dates=(out.today,),
    )


@router.get("/reports", name="reports_home")
def reports_home(
    request: Request,
    program: str | None = ProgramCode,
    format: str = Query("", max_length=10),
    staff: Staff = Depends(require(PERMISSION)),
) -> Response:
    """The dashboard: this and last month, what is outstanding, members, tiers; charts."""
    _fresh(request)
    lang = staff.language
    now = clock.now()
    with get_db(request).unit_of_work(readonly=True) as session:
        prog, every = _choose(session, program)
        page = Page(prog, every, _tabs(request, prog), {})
        if prog is None:
            return _show(request, "reports/dashboard.html", page, d=None)
        out = dashboards.dashboard(session, prog, now=now, days=30)
        month_start = out.today.replace(day=1)
        last_start = add_months(month_start, -1)
        year = day_range(prog, first=add_months(month_start, -11), last=out.today, now=now)
        months = period.period_report(session, prog, year, now=now, granularity="month")
        this_rng = day_range(prog, first=month_start, last=out.today, now=now)
        last_rng = day_range(prog, first=last_start, last=month_start - timedelta(days=1), now=now)
        new_this = members.new_members(session, prog, this_rng, "month")
        new_last = members.new_members(session, prog, last_rng, "month")
        new = (new_this[0].count if new_this else 0, new_last[0].count if new_last else 0)
        if format in FORMATS:
            return _download(dashboard_tables(out, months, new), format, lang)
        owed = outstanding_series(session, prog, until=out.today, now=now)
        redeemed = rewards.redemptions_report(session, prog, this_rng, now=now, granularity="month")
        open_coupons = rewards.coupons_report(session, prog, as_of=out.today, now=now)
        fmt = Fmt(lang, prog.currency)
        daily = charts.line_chart(
            [charts.day_label(p.day, lang) for p in out.series],
            [
                charts.Series(
                    "issued",
                    i18n.translate("reports.fig.earned", lang),
                    [p.earned for p in out.series],
                ),
                charts.Series(
                    "net_redeemed",
                    i18n.translate("reports.fig.net_redeemed", lang),
                    [p.redeemed for p in out.series],
                ),
                charts.Series(
                    "expired",
                    i18n.translate("reports.fig.expired", lang),
                    [p.expired for p in out.series],
                ),
            ],
            title=i18n.translate("reports.chart.days", lang, days=out.days),
            desc=i18n.translate("reports.chart.period.desc", lang),
            fmt=fmt.number,
            empty_message=i18n.translate("reports.chart.empty", lang),
        )
        page.downloads = _links(request, "reports_home", {"program": prog.code})
        return _show(
            request,
            "reports/dashboard.html",
            page,
            d=out,
            new=new,
            fmt=fmt,
            reward_lines=reward_lines(redeemed, open_coupons, lang),
            redeemed=redeemed.totals,
            open_coupons=open_coupons,
            chart_months=period_chart(
                months, year, lang, i18n.translate("reports.chart.months", lang), charts.Frame()
            ),
            chart_days=daily,
            chart_outstanding=outstanding_chart(
                owed,
                lang,
                prog.currency,
                i18n.translate("reports.chart.outstanding", lang),
                charts.Frame(),
            ),
            chart_tiers=tier_chart(
                out.tier_distribution, lang, i18n.translate("reports.chart.tiers", lang)
            ),
        )


# --- period -----------------------------------------------------------------------------------


@router.get("/reports/period", name="reports_period")
def reports_period(
    request: Request,
    program: str | None = ProgramCode,
    from_text: str = _text("from"),
    to_text: str = _text("to"),
    granularity: str = Query("day", max_length=10),
    group_by: str = Query("", max_length=10),
    format: str = Query("", max_length=10),
    staff: Staff = Depends(require(PERMISSION)),
) -> Response:
    _fresh(request)
    lang = staff.language
    now = clock.now()
    dates, errors = _parse_dates({"from": from_text, "to": to_text}, lang)
    values: dict[str, Any] = {
        "from": from_text,
        "to": to_text,
        "granularity": _choice(granularity, GRANULARITIES, "day"),
        "group_by": _choice(group_by, GROUPS, ""),
    }
    if granularity not in GRANULARITIES:
        errors["granularity"] = i18n.translate("form.error.choice", lang)
    if group_by not in ("", *GROUPS):
        errors["group_by"] = i18n.translate("form.error.choice", lang)
    with get_db(request).unit_of_work(readonly=True) as session:
        prog, every = _choose(session, program)
        page = Page(prog, every, _tabs(request, prog), values, errors)
        if prog is None:
            return _show(request, "reports/period.html", page, report=None)
        report = chart = None
        if not errors:
            try:
                rng = day_range(prog, first=dates["from"], last=dates["to"], now=now)
                report = period.period_report(
                    session,
                    prog,
                    rng,
                    now=now,
                    granularity=values["granularity"],
                    group_by=values["group_by"] or None,
                )
            except Invalid as exc:
                page.errors = _refusal(exc, lang, ("from", "to"))
        if report is not None:
            if format in FORMATS:
                return _download(export.period_tables(report), format, lang)
            values["from"], values["to"] = rng.first.isoformat(), rng.last.isoformat()
            chart = period_chart(report, rng, lang, i18n.translate("reports.chart.period", lang))
            query = {"program": prog.code, **values}
            page.downloads = _links(request, "reports_period", query)
        extra = {"granularity": values["granularity"]}
        page.presets = _presets(request, "reports_period", prog, now, extra)
        return _show(
            request,
            "reports/period.html",
            page,
            report=report,
            chart=chart,
            fmt=Fmt(lang, prog.currency),
            granularities=GRANULARITIES,
            groups=GROUPS,
        )


# --- liability --------------------------------------------------------------------------------


@router.get("/reports/liability", name="reports_liability")
def reports_liability(
    request: Request,
    program: str | None = ProgramCode,
    as_of_text: str = _text("as_of"),
    projection: str = Query("12", alias="projection_months", max_length=4),
    format: str = Query("", max_length=10),
    staff: Staff = Depends(require(PERMISSION)),
) -> Response:
    _fresh(request)
    lang = staff.language
    now = clock.now()
    dates, errors = _parse_dates({"as_of": as_of_text}, lang)
    months = int(projection) if projection in ("3", "6", "12") else 12
    if projection not in ("3", "6", "12"):
        errors["projection_months"] = i18n.translate("form.error.choice", lang)
    values: dict[str, Any] = {"as_of": as_of_text, "projection_months": months}
    with get_db(request).unit_of_work(readonly=True) as session:
        prog, every = _choose(session, program)
        page = Page(prog, every, _tabs(request, prog), values, errors)
        if prog is None:
            return _show(request, "reports/liability.html", page, report=None)
        report = chart = None
        if not errors:
            as_of = dates["as_of"] or today(prog, now)
            try:
                report = finance.liability(
                    session, prog, as_of=as_of, now=now, projection_months=months
                )
            except Invalid as exc:
                page.errors = _refusal(exc, lang, ("as_of",))
        if report is not None:
            if format in FORMATS:
                return _download(export.liability_tables(report), format, lang)
            values["as_of"] = report.as_of.isoformat()
            owed = outstanding_series(session, prog, until=report.as_of, now=now)
            chart = outstanding_chart(
                owed, lang, prog.currency, i18n.translate("reports.chart.outstanding", lang)
            )
            query = {"program": prog.code, **values}
            page.downloads = _links(request, "reports_liability", query)
        return _show(
            request,
            "reports/liability.html",
            page,
            report=report,
            chart=chart,
            fmt=Fmt(lang, prog.currency),
            projections=PROJECTIONS,
        )


# --- journal ----------------------------------------------------------------------------------


@router.get("/reports/journal", name="reports_journal")
def reports_journal(
    request: Request,
    program: str | None = ProgramCode,
    from_text: str = _text("from"),
    to_text: str = _text("to"),
    format: str = Query("", max_length=10),
    staff: Staff = Depends(require(PERMISSION)),
) -> Response:
    _fresh(request)
    lang = staff.language
    now = clock.now()
    dates, errors = _parse_dates({"from": from_text, "to": to_text}, lang)
    values: dict[str, Any] = {"from": from_text, "to": to_text}
    with get_db(request).unit_of_work(readonly=True) as session:
        prog, every = _choose(session, program)
        page = Page(prog, every, _tabs(request, prog), values, errors)
        if prog is None:
            return _show(request, "reports/journal.html", page, report=None)
        report = chart = None
        if not errors:
            try:
                rng = day_range(prog, first=dates["from"], last=dates["to"], now=now)
                report = finance.journal(session, prog, rng)
            except Invalid as exc:
                page.errors = _refusal(exc, lang, ("from", "to"))
        if report is not None:
            if format in FORMATS:
                return _download(export.journal_tables(report), format, lang)
            values["from"], values["to"] = rng.first.isoformat(), rng.last.isoformat()
            fmt = Fmt(lang, prog.currency)
            chart = charts.bar_chart(
                [charts.day_label(d.day, lang) for d in report.days],
                [
                    charts.Series(
                        "debit",
                        i18n.translate("reports.journal.debit", lang),
                        [d.debit for d in report.days],
                    )
                ],
                title=i18n.translate("reports.chart.journal", lang),
                desc=i18n.translate("reports.chart.journal.desc", lang),
                fmt=fmt.money,
                empty_message=i18n.translate("reports.chart.empty", lang),
                frame=charts.WIDE,
            )
            query = {"program": prog.code, **values}
            page.downloads = _links(request, "reports_journal", query)
        page.presets = _presets(request, "reports_journal", prog, now, {})
        return _show(
            request,
            "reports/journal.html",
            page,
            report=report,
            chart=chart,
            fmt=Fmt(lang, prog.currency),
            shown=JOURNAL_LINES_SHOWN,
        )


# --- members ----------------------------------------------------------------------------------


@router.get("/reports/members", name="reports_members")
def reports_members(
    request: Request,
    program: str | None = ProgramCode,
    from_text: str = _text("from"),
    to_text: str = _text("to"),
    dormant_text: str = Query(
        str(members.DEFAULT_DORMANT_DAYS), alias="dormant_days", max_length=10
    ),
    granularity: str = Query("month", max_length=10),
    format: str = Query("", max_length=10),
    staff: Staff = Depends(require(PERMISSION)),
) -> Response:
    _fresh(request)
    lang = staff.language
    now = clock.now()
    dates, errors = _parse_dates({"from": from_text, "to": to_text}, lang)
    dormant_days = forms.optional_int(dormant_text, low=1, high=3650)
    if dormant_days is None:
        errors["dormant_days"] = i18n.translate("reports.error.dormant_days", lang)
    if granularity not in GRANULARITIES:
        errors["granularity"] = i18n.translate("form.error.choice", lang)
    values: dict[str, Any] = {
        "from": from_text,
        "to": to_text,
        "dormant_days": dormant_text,
        "granularity": _choice(granularity, GRANULARITIES, "month"),
    }
    with get_db(request).unit_of_work(readonly=True) as session:
        prog, every = _choose(session, program)
        page = Page(prog, every, _tabs(request, prog), values, errors)
        if prog is None:
            return _show(request, "reports/members.html", page, report=None)
        report = None
        chart_new = chart_tiers = None
        if not errors:
            try:
                first = dates["from"]
                if first is None and dates["to"] is None:
                    # A year of sign-ups by month unless asked otherwise.
                    start = today(prog, now).replace(day=1)
                    first = add_months(start, -11)
                rng = day_range(prog, first=first, last=dates["to"], now=now)
                report = members.members_report(
                    session,
                    prog,
                    rng,
                    now=now,
                    dormant_days=dormant_days or members.DEFAULT_DORMANT_DAYS,
                    granularity=values["granularity"],
                )
            except Invalid as exc:
                page.errors = _refusal(exc, lang, ("from", "to", "dormant_days"))
        if report is not None:
            if format in FORMATS:
                return _download(export.members_tables(report), format, lang)
            values["from"], values["to"] = rng.first.isoformat(), rng.last.isoformat()
            g = report.granularity
            slots = [s for s, _f, _l in buckets(rng, g)]
            counts = {_slot(c.starts, g): c.count for c in report.new_members}
            chart_new = charts.bar_chart(
                [_axis_label(s, g, period_label(s, g), lang) for s in slots],
                [
                    charts.Series(
                        "new",
                        i18n.translate("reports.fig.new_members", lang),
                        [counts.get(s, 0) for s in slots],
                    )
                ],
                title=i18n.translate("reports.chart.new_members", lang),
                desc=i18n.translate("reports.chart.new_members.desc", lang),
                fmt=Fmt(lang).number,
                empty_message=i18n.translate("reports.chart.empty", lang),
            )
            chart_tiers = tier_chart(
                report.tier_distribution, lang, i18n.translate("reports.chart.tiers", lang)
            )
            query = {"program": prog.code, **values}
            page.downloads = _links(request, "reports_members", query)
        return _show(
            request,
            "reports/members.html",
            page,
            report=report,
            chart_new=chart_new,
            chart_tiers=chart_tiers,
            tier_names={
                t.tier: tier_label(t, lang) for t in (report.tier_distribution if report else [])
            },
            fmt=Fmt(lang),
            granularities=GRANULARITIES,
        )


# --- promotions -------------------------------------------------------------------------------


@router.get("/reports/promotions", name="reports_promotions")
def reports_promotions(
    request: Request,
    program: str | None = ProgramCode,
    from_text: str = _text("from"),
    to_text: str = _text("to"),
    format: str = Query("", max_length=10),
    staff: Staff = Depends(require(PERMISSION)),
) -> Response:
    lang = staff.language
    now = clock.now()
    dates, errors = _parse_dates({"from": from_text, "to": to_text}, lang)
    values: dict[str, Any] = {"from": from_text, "to": to_text}
    with get_db(request).unit_of_work(readonly=True) as session:
        prog, every = _choose(session, program)
        page = Page(prog, every, _tabs(request, prog), values, errors)
        if prog is None:
            return _show(request, "reports/promotions.html", page, report=None)
        report = chart = None
        if not errors:
            try:
                rng = day_range(prog, first=dates["from"], last=dates["to"], now=now)
                report = promotions.promotions_report(session, prog, rng, now=now)
            except Invalid as exc:
                page.errors = _refusal(exc, lang, ("from", "to"))
        if report is not None:
            if format in FORMATS:
                return _download(export.promotions_tables(report), format, lang)
            values["from"], values["to"] = rng.first.isoformat(), rng.last.isoformat()
            chart = charts.hbar_chart(
                [(r.name or r.rule, r.points) for r in report.rows],
                title=i18n.translate("reports.chart.rules", lang),
                desc=i18n.translate("reports.chart.rules.desc", lang),
                name=i18n.translate("reports.fig.points", lang),
                key="issued",
                fmt=Fmt(lang).number,
                empty_message=i18n.translate("reports.chart.empty", lang),
            )
            query = {"program": prog.code, **values}
            page.downloads = _links(request, "reports_promotions", query)
        page.presets = _presets(request, "reports_promotions", prog, now, {})
        return _show(
            request,
            "reports/promotions.html",
            page,
            report=report,
            chart=chart,
            fmt=Fmt(lang, prog.currency),
        )
