"""The roll-up: local days across DST, exactness after random operations, the watermark under
concurrent writers, the checker, resumable refresh and rebuild."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text, update

from patron import clock
from patron.audit.service import CLI
from patron.check import run_check
from patron.db.engine import Database
from patron.errors import PatronError
from patron.ledger import jobs
from patron.members.schemas import MemberRef
from patron.programs.service import get_program
from patron.reports import period, rollup
from patron.reports.common import day_range, day_start
from patron.reports.models import ReportDaily
from patron.sales import purchases
from patron.sales.schemas import AdjustRequest, RefundRequest
from patron.tiers import service as tiers
from tests.factories import make_member, make_program
from tests.reports import _oracle
from tests.reports._scenario import TIERS, adjust, build, sale

T = datetime(2026, 1, 1, tzinfo=UTC)


def _program(
    db: Database,
    code: str,
    timezone: str,
    currency: str = "USD",
    *,
    with_tiers: bool = False,
    **extra,
):
    clock.freeze(T)
    with db.unit_of_work() as session:
        program = make_program(
            session,
            now=T,
            code=code,
            currency=currency,
            timezone=timezone,
            stores=("downtown", "airport"),
            **extra,
        )
        if with_tiers:
            tiers.set_tiers(session, program, TIERS, actor=CLI, now=T)
        return [make_member(session, now=T, program=program).id for _ in range(3)]


def _days(db: Database, code: str, first: date, last: date) -> dict[date, int]:
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, code)
        rng = day_range(program, first=first, last=last, now=clock.now())
        report = period.period_report(session, program, rng, now=clock.now())
    return {row.starts: row.purchases for row in report.rows}


NEW_YORK = [
    (datetime(2026, 3, 8, 4, 59, tzinfo=UTC), date(2026, 3, 7)),  # 23:59 EST
    (datetime(2026, 3, 8, 5, 0, tzinfo=UTC), date(2026, 3, 8)),  # 00:00 EST
    (datetime(2026, 3, 8, 7, 30, tzinfo=UTC), date(2026, 3, 8)),  # 03:30 EDT, after the jump
    (datetime(2026, 3, 9, 3, 59, tzinfo=UTC), date(2026, 3, 8)),  # 23:59 EDT: a 23-hour day
    (datetime(2026, 3, 9, 4, 0, tzinfo=UTC), date(2026, 3, 9)),
    (datetime(2026, 11, 1, 3, 59, tzinfo=UTC), date(2026, 10, 31)),  # 23:59 EDT
    (datetime(2026, 11, 1, 4, 0, tzinfo=UTC), date(2026, 11, 1)),
    (datetime(2026, 11, 2, 4, 59, tzinfo=UTC), date(2026, 11, 1)),  # 23:59 EST: 25 hours
    (datetime(2026, 11, 2, 5, 0, tzinfo=UTC), date(2026, 11, 2)),
]
SEOUL = [
    (datetime(2026, 6, 30, 14, 59, tzinfo=UTC), date(2026, 6, 30)),  # 23:59 on 30 June
    (datetime(2026, 6, 30, 15, 0, tzinfo=UTC), date(2026, 7, 1)),
]


@pytest.mark.parametrize("rolled", [False, True])
@pytest.mark.parametrize(
    ("zone", "currency", "cases"),
    [("America/New_York", "USD", NEW_YORK), ("Asia/Seoul", "KRW", SEOUL)],
)
def test_local_days_across_dst_and_midnight(
    db: Database, zone: str, currency: str, cases: list[tuple[datetime, date]], rolled: bool
) -> None:
    member = _program(db, "tz", zone, currency)[0]
    for n, (instant, _day) in enumerate(cases):
        sale(db, "tz", member, 1000, ext=f"t{n}", now=instant)
    if rolled:
        rollup.refresh(db, now=clock.now())
    expected: dict[date, int] = {}
    for _instant, day in cases:
        expected[day] = expected.get(day, 0) + 1
    first, last = min(expected), max(expected)
    assert _days(db, "tz", first, last) == expected
    for day, count in expected.items():  # a one-day range holds exactly that local day
        assert _days(db, "tz", day, day) == {day: count}
    with db.unit_of_work(readonly=True) as session:
        assert rollup.check(session).ok
        program = get_program(session, "tz")
        assert day_start(program, first) < cases[0][0] + timedelta(days=1)


# --- random operations ------------------------------------------------------------------------

_codes = itertools.count(1)
operation = st.one_of(
    st.tuples(
        st.just("buy"),
        st.integers(0, 2),  # member
        st.integers(1, 200),  # amount in 1,000s
        st.sampled_from([None, "downtown", "airport"]),
        st.sampled_from(["pos", "online", "app"]),
        st.sampled_from([0, 0, 1000, 2000]),  # points to spend
        st.integers(0, 60),  # hours since the last operation
        st.integers(0, 48),  # hours the sale is backdated
    ),
    st.tuples(st.just("refund"), st.integers(0, 50), st.booleans(), st.integers(0, 30)),
    st.tuples(st.just("adjust"), st.integers(0, 2), st.integers(-500, 800), st.integers(0, 30)),
    st.tuples(st.just("expire"), st.integers(24, 24 * 20)),
    st.tuples(st.just("refresh"), st.integers(1, 12)),
)


def _apply(db: Database, code: str, members: list[int], ops: list[tuple], now: datetime) -> None:
    sales: list[str] = []
    for n, op in enumerate(ops):
        try:
            if op[0] == "buy":
                _, m, amount, store, channel, spend, hours, back = op
                now += timedelta(hours=hours, minutes=7)
                ext = f"{code}-{n}"
                sale(
                    db,
                    code,
                    members[m],
                    amount * 1000,
                    ext=ext,
                    now=now,
                    store=store,
                    channel=channel,
                    spend=spend,
                    occurred_at=now - timedelta(hours=back),
                )
                sales.append(ext)
            elif op[0] == "refund" and sales:
                _, pick, full, hours = op
                now += timedelta(hours=hours, minutes=3)
                clock.freeze(now)
                with db.unit_of_work() as session:
                    purchases.refund(
                        session,
                        get_program(session, code),
                        sales[pick % len(sales)],
                        RefundRequest(
                            refund_id=f"r{n}",
                            full=full,
                            amount=None if full else Decimal(1000),
                        ),
                        actor=CLI,
                        now=now,
                    )
            elif op[0] == "adjust" and op[2] != 0:
                now += timedelta(hours=op[3], minutes=1)
                adjust(db, code, members[op[1]], op[2], now=now)
            elif op[0] == "expire":
                now += timedelta(hours=op[1])
                clock.freeze(now)
                jobs.run_expiry(db, now)
            elif op[0] == "refresh":
                rollup.refresh(db, now=now, limit=op[1], chunk=3)
        except PatronError:
            pass  # insufficient points, refunded already, …: the ledger refused; nothing changed
    clock.freeze(now + timedelta(hours=1))


def _compare(db: Database, code: str) -> None:
    _oracle.assert_reports_match(db, code, date(2025, 12, 1), date(2027, 12, 31))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_random_operations_match_the_ledger(db: Database, ops: list[tuple]) -> None:
    code = f"rnd{next(_codes)}"
    members = _program(
        db,
        code,
        "America/New_York",
        with_tiers=True,
        expiry={"kind": "months", "months": 1},
        pending_days=2,
    )
    _apply(db, code, members, ops, datetime(2026, 2, 20, tzinfo=UTC))
    _compare(db, code)
    rollup.refresh(db, now=clock.now(), chunk=5)
    _compare(db, code)


# --- the watermark under concurrent writers ------------------------------------------------------


@pytest.mark.postgresql_only
def test_refresh_waits_for_a_writer_that_has_not_committed(db: Database) -> None:
    """An entry inserted before the refresh but committed after it must not be skipped."""
    members = _program(db, "wm", "Asia/Seoul", "KRW")
    sale(db, "wm", members[0], 10_000, ext="w1", now=T + timedelta(days=1))
    rollup.refresh(db, now=clock.now())
    writer_inserted = threading.Event()
    release = threading.Event()

    def slow_writer() -> None:
        with db.unit_of_work() as session:
            program = get_program(session, "wm")
            clock_now = T + timedelta(days=2)
            purchases.adjust(
                session,
                program,
                AdjustRequest(member=MemberRef(id=members[1]), points=77, reason="slow"),
                actor=CLI,
                now=clock_now,
            )
            writer_inserted.set()
            release.wait(10)

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert writer_inserted.wait(10)
    # A later writer commits first, with a higher id.
    sale(db, "wm", members[2], 20_000, ext="w2", now=T + timedelta(days=2, hours=1))
    result: list[rollup.RefreshReport] = []
    refresher = threading.Thread(target=lambda: result.append(rollup.refresh(db, now=T)))
    refresher.start()
    time.sleep(0.5)
    assert not result, "the refresh must wait for the open writer"
    release.set()
    thread.join(10)
    refresher.join(10)
    assert result
    with db.unit_of_work(readonly=True) as session:
        assert rollup.check(session).ok
        assert rollup.freshness(session).behind == 0
        rolled = session.scalar(select(ReportDaily.adjusted_in).where(ReportDaily.adjusted_in > 0))
        assert rolled == 77


@pytest.mark.postgresql_only
def test_refresh_gives_up_behind_a_long_writer(db: Database, monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError

    _program(db, "lw", "Asia/Seoul", "KRW")
    monkeypatch.setattr(rollup, "LOCK_TIMEOUT", "200ms")
    with db.engine.connect() as conn:
        conn.execute(text("BEGIN"))
        conn.execute(text("LOCK TABLE entries IN ROW EXCLUSIVE MODE"))
        with pytest.raises(OperationalError):
            rollup.refresh(db, now=T)
        conn.execute(text("ROLLBACK"))
    assert rollup.refresh(db, now=T).to_entry_id == 0


# --- check, refresh, rebuild ---------------------------------------------------------------------


def test_check_finds_a_changed_rollup_row_and_rebuild_repairs_it(db: Database) -> None:
    build(db)
    first = rollup.refresh(db, now=clock.now(), chunk=4)
    assert first.chunks >= 3 and first.from_entry_id == 0
    again = rollup.refresh(db, now=clock.now())
    assert again.chunks == 0 and again.to_entry_id == first.to_entry_id
    with db.unit_of_work() as session:
        session.execute(update(ReportDaily).where(ReportDaily.earned > 0).values(earned=1))
    with db.unit_of_work(readonly=True) as session:
        result = rollup.check(session)
    assert not result.ok and "earned" in result.violations[0]
    with db.unit_of_work(readonly=True) as session:
        ledger_check = run_check(session)  # `patron check` proves the roll-up too
    assert any("report roll-up differs" in v for v in ledger_check.violations)
    rebuilt = rollup.rebuild(db, now=clock.now())
    assert rebuilt.to_entry_id == first.to_entry_id
    with db.unit_of_work(readonly=True) as session:
        assert rollup.check(session).ok


def test_a_report_refreshes_when_far_behind(db: Database) -> None:
    build(db)
    assert rollup.ensure_fresh(db, now=clock.now(), max_tail=1000) is None
    done = rollup.ensure_fresh(db, now=clock.now(), max_tail=3)
    assert done is not None and done.to_entry_id > 3
    with db.unit_of_work(readonly=True) as session:
        assert rollup.freshness(session).behind == 0
