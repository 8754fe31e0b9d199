"""The outstanding-points series (one query for every month end) equals the liability report
called once per month end, and the raw ledger, to the point and the won.

The program keeps its books far from UTC (Kiritimati, UTC+14; Adak, UTC−10 with DST), over
seventeen months of earns, spends, refunds, manual adjustments and expiries — some written off
by the job, some still overdue at a month end — with sales on the last local second of a month
and the first of the next, and the roll-up at three watermarks: nothing rolled up, half, all.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from patron import clock
from patron.db.engine import Database
from patron.ledger import jobs
from patron.ledger.expiry import add_months
from patron.ledger.models import Account, Entry, Lot
from patron.programs.service import get_program
from patron.reports import finance, rollup
from patron.reports.common import day_start, money, today
from tests.factories import make_member, make_program
from tests.reports._scenario import adjust, full_refund, sale

FIRST_MONTH = date(2025, 1, 1)
MONTHS = 16
NOW = datetime(2026, 5, 20, 3, tzinfo=UTC)


def local(zone: str, day: date, at: time = time(12)) -> datetime:
    return datetime.combine(day, at, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def seed(db: Database, zone: str) -> str:
    """Seventeen months of a two-member bakery in `zone`; returns the program code."""
    code = "edge"
    clock.freeze(local(zone, FIRST_MONTH - timedelta(days=1)))
    with db.unit_of_work() as session:
        program = make_program(
            session,
            now=clock.now(),
            code=code,
            timezone=zone,
            expiry={"kind": "months", "months": 2},
        )
        a = make_member(session, now=clock.now(), program=program, name="A").id
        b = make_member(session, now=clock.now(), program=program, name="B").id
    for n in range(MONTHS):
        month = add_months(FIRST_MONTH, n)
        last = add_months(month, 1) - timedelta(days=1)
        sale(db, code, a, 120_000, ext=f"a{n}", now=local(zone, month + timedelta(days=9)))
        if n % 3 == 2:  # a spend: 1,000 points off a sale
            sale(
                db, code, a, 40_000, ext=f"s{n}", now=local(zone, month + timedelta(14)), spend=1000
            )
        if n % 6 == 3:  # a refund of last month's spend (points given back, earned ones taken back)
            full_refund(db, code, f"s{n - 1}", now=local(zone, month + timedelta(days=16)))
        if n % 5 == 1:
            adjust(db, code, b, 300, now=local(zone, month + timedelta(days=20)))
            adjust(db, code, a, -70, now=local(zone, month + timedelta(days=20)))
        # The last local second of the month counts in its month end; the next one does not.
        sale(db, code, b, 25_800, ext=f"b{n}", now=local(zone, last, time(23, 59, 59)))
        sale(db, code, b, 31_000, ext=f"c{n}", now=local(zone, last + timedelta(days=1), time(0)))
        if n % 3 == 0:  # the expiry job runs now and then: in between, lots wait overdue
            clock.freeze(local(zone, month + timedelta(days=25)))
            jobs.run_expiry(db, clock.now())
    clock.freeze(NOW)
    return code


def raw_outstanding(db: Database, code: str, day: date) -> int:
    """Σ entries up to the end of `day` less the remainders of lots expired by then."""
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, code)
        end = day_start(program, day + timedelta(days=1))
        ledger = session.scalar(
            select(func.coalesce(func.sum(Entry.points), 0)).where(
                Entry.program_id == program.id, Entry.occurred_at < end
            )
        )
        overdue = session.scalar(
            select(func.coalesce(func.sum(Lot.remaining), 0))
            .join(Account, Account.id == Lot.account_id)
            .where(Account.program_id == program.id, Lot.remaining > 0, Lot.expires_at < end)
        )
        return int(ledger) - int(overdue)


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "America/Adak"])
def test_the_series_equals_the_liability_report_at_every_month_end(db: Database, zone: str):
    code = seed(db, zone)
    with db.unit_of_work(readonly=True) as session:
        top = rollup.freshness(session).max_entry_id
    checked = 0
    for watermark in (0, top // 2, top):  # nothing rolled up, half, all
        if watermark:
            rollup.refresh(db, now=NOW, limit=watermark - rollup_mark(db), chunk=max(1, top // 7))
        assert rollup_mark(db) == watermark
        with db.unit_of_work(readonly=True) as session:
            program = get_program(session, code)
            current = today(program, NOW)
            days = finance.month_ends(current, MONTHS + 2)
            # Before the first sale, every month end of the ledger, and today.
            assert days[0] < FIRST_MONTH <= days[2] and days[-1] == current
            series = finance.outstanding_series(session, program, days, now=NOW)
            assert [p.as_of for p in series] == days
            for point in series:
                reference = finance.liability(session, program, as_of=point.as_of, now=NOW)
                assert (point.outstanding_points, point.outstanding_value) == (
                    reference.outstanding_points,
                    reference.outstanding_value,
                ), (watermark, point.as_of)
                assert point.outstanding_value == money(program, point.outstanding_points)
                checked += 1
        for point in series:
            assert point.outstanding_points == raw_outstanding(db, code, point.as_of), point.as_of
    assert checked == 3 * (MONTHS + 2)
    # The figures move: points earned, spent and expired in every month, some still overdue.
    values = [p.outstanding_points for p in series]
    assert values[0] == 0 and values[-1] > 0 and len(set(values)) > MONTHS // 2
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, code)
        kinds = dict(
            session.execute(
                select(Entry.kind, func.count())
                .where(Entry.program_id == program.id)
                .group_by(Entry.kind)
            ).all()
        )
        assert set(kinds) == {"earn", "redeem", "reverse", "adjust", "expire"}
        assert finance.overdue_points(session, program, day_start(program, current)) > 0


def rollup_mark(db: Database) -> int:
    with db.unit_of_work(readonly=True) as session:
        return rollup.freshness(session).watermark


def test_a_series_of_any_days_in_any_order(db: Database):
    code = seed(db, "Pacific/Kiritimati")
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, code)
        days = [date(2025, 7, 15), date(2024, 1, 1), date(2025, 7, 15), today(program, NOW)]
        series = finance.outstanding_series(session, program, days, now=NOW)
        assert [p.as_of for p in series] == days
        for point in series:
            reference = finance.liability(session, program, as_of=point.as_of, now=NOW)
            assert point.outstanding_points == reference.outstanding_points
        assert finance.outstanding_series(session, program, [], now=NOW) == []


def test_a_day_in_the_future_is_refused(db: Database):
    from patron.errors import Invalid

    clock.freeze(NOW)
    with db.unit_of_work() as session:
        program = make_program(session, now=NOW, code="edge", timezone="Pacific/Kiritimati")
        tomorrow = today(program, NOW) + timedelta(days=1)
        with pytest.raises(Invalid) as refused:
            finance.outstanding_series(session, program, [tomorrow], now=NOW)
        assert refused.value.code == "as_of_in_future"


def test_month_ends_skip_no_month() -> None:
    """Eleven month ends in a row, the month just ended included, then the day itself."""
    days = finance.month_ends(date(2026, 12, 3), 12)
    assert days[-3:] == [date(2026, 10, 31), date(2026, 11, 30), date(2026, 12, 3)]
    assert days[0] == date(2026, 1, 31) and len(days) == 12
    assert [(d.year, d.month) for d in days[:-1]] == [(2026, m) for m in range(1, 12)]
    assert finance.month_ends(date(2024, 3, 1), 3) == [
        date(2024, 1, 31),
        date(2024, 2, 29),
        date(2024, 3, 1),
    ]
