"""Set-based expiry: chunk boundaries, interrupted runs, pending remainders, concurrent tills.

LESSONS.md (angple PR #1900): expiry runs in bounded, resumable chunks, reports counts, has a dry
run and is safe to run late. (FloCafe #78): expiry removes only a lot's unspent remainder, paired
with a movement, so the balance stays the sum of lot remainders.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from patron.db.engine import Database
from patron.ledger import jobs
from patron.ledger.jobs import run_expiry
from patron.ledger.models import Account, Entry, Lot, Movement
from tests.factories import make_member, make_program
from tests.ledger._helpers import account, adjust, assert_clean, buy, movements_of, program

# Every lot below (earned in March 2026, 12 months) is past its date by then.
RUN_AT = datetime(2027, 6, 1, tzinfo=UTC)
LOTS_EACH = 4


def _population(db: Database, now: datetime, members: int = 5, **program_fields) -> list[int]:
    """`members` members with LOTS_EACH lots of 100, 200, … earned a day apart (so they expire
    at different instants); 250 of the first member's points were taken back, emptying their
    first lot. Returns the member ids."""
    with db.unit_of_work() as session:
        prog = make_program(session, now=now, **program_fields)
        ids = [make_member(session, now=now, program=prog).id for _ in range(members)]
    for day in range(LOTS_EACH):
        with db.unit_of_work() as session:
            prog = program(session, "bakery")
            for member_id in ids:
                adjust(session, prog, member_id, 100 * (day + 1), now=now + timedelta(days=day))
    with db.unit_of_work() as session:
        adjust(session, program(session, "bakery"), ids[0], -250, now=now + timedelta(days=9))
    return ids


def _open_lots(db: Database) -> int:
    with db.unit_of_work(readonly=True) as session:
        return int(session.scalar(select(func.count()).where(Lot.remaining > 0)) or 0)


def _remainders(db: Database) -> dict[int, int]:
    """{account id: points left in its lots}."""
    with db.unit_of_work(readonly=True) as session:
        rows = session.execute(
            select(Lot.account_id, func.sum(Lot.remaining)).group_by(Lot.account_id)
        ).all()
    return {account_id: int(points) for account_id, points in rows}


def _expired(db: Database) -> dict[int, int]:
    with db.unit_of_work(readonly=True) as session:
        return {a: int(e) for a, e in session.execute(select(Account.id, Account.expired))}


def _expire_entries_per_lot(db: Database) -> dict[int, int]:
    with db.unit_of_work(readonly=True) as session:
        rows = session.execute(
            select(Entry.lot_id, func.count()).where(Entry.kind == "expire").group_by(Entry.lot_id)
        ).all()
    return {lot_id: int(n) for lot_id, n in rows}


def test_sqlite_is_new_enough_for_the_set_based_statements():
    # The SQLite path moves account totals with UPDATE … FROM (SQLite 3.33).
    assert sqlite3.sqlite_version_info >= (3, 33), sqlite3.sqlite_version


@pytest.mark.parametrize("batch_size", [1, 3, 4, 7, 5000])
def test_every_chunking_expires_each_remainder_once(db, frozen, batch_size):
    _population(db, frozen)
    due = _remainders(db)
    lots_due = _open_lots(db)
    assert lots_due == 5 * LOTS_EACH - 1  # the 250 took the first lot's 100 and 150 of the next
    dry = run_expiry(db, RUN_AT, dry_run=True, batch_size=batch_size)
    assert (dry.lots, dry.points, dry.accounts) == (lots_due, sum(due.values()), 5)

    seen: list[int] = []
    report = run_expiry(db, RUN_AT, batch_size=batch_size, progress=lambda r: seen.append(r.lots))

    assert (report.lots, report.points, report.accounts) == (dry.lots, dry.points, dry.accounts)
    # One progress call per chunk, each at most batch_size lots, then the empty last one.
    steps = [b - a for a, b in zip([0, *seen], seen, strict=False)]
    assert seen[-1] == report.lots and steps[-1] == 0
    assert all(0 < step <= batch_size for step in steps[:-1])
    assert _expired(db) == due
    assert set(_remainders(db).values()) == {0}
    assert set(_expire_entries_per_lot(db).values()) == {1}
    with db.unit_of_work(readonly=True) as session:
        for entry in session.scalars(select(Entry).where(Entry.kind == "expire")):
            assert movements_of(session, entry.id) == {entry.lot_id: entry.points}
            lot = session.get(Lot, entry.lot_id)
            assert lot is not None and entry.occurred_at == lot.expires_at
        balances = session.scalars(select(Account.available + Account.pending)).all()
        assert set(balances) == {0}
    again = run_expiry(db, RUN_AT, batch_size=batch_size)
    assert (again.lots, again.points, again.accounts) == (0, 0, 0)
    assert_clean(db)


def test_a_run_stopped_between_chunks_resumes_where_it_stopped(db, frozen):
    _population(db, frozen)
    due, lots_due = _remainders(db), _open_lots(db)

    class Stop(Exception):
        pass

    def stop_after_two_chunks(report: jobs.ExpiryReport) -> None:
        if report.lots == 6:
            raise Stop

    with pytest.raises(Stop):
        run_expiry(db, RUN_AT, batch_size=3, progress=stop_after_two_chunks)
    # Two whole chunks are done, nothing else: every lot is either expired once or untouched.
    per_lot = _expire_entries_per_lot(db)
    assert len(per_lot) == 6 and set(per_lot.values()) == {1}
    assert _open_lots(db) == lots_due - 6
    assert_clean(db)

    rest = run_expiry(db, RUN_AT, batch_size=3)
    assert rest.lots == lots_due - 6 and set(_expire_entries_per_lot(db).values()) == {1}
    assert _expired(db) == due
    assert_clean(db)


def test_a_crash_inside_a_chunk_leaves_it_undone(db, frozen, monkeypatch):
    _population(db, frozen)
    due, lots_due = _remainders(db), _open_lots(db)
    real = jobs._expire_chunk
    calls = {"n": 0}

    def crash_in_second_chunk(session, now, batch_size, actor):
        calls["n"] += 1
        chunk = real(session, now, batch_size, actor)
        if calls["n"] == 2:
            raise RuntimeError("power cut after the chunk's statements, before its commit")
        return chunk

    monkeypatch.setattr(jobs, "_expire_chunk", crash_in_second_chunk)
    with pytest.raises(RuntimeError):
        run_expiry(db, RUN_AT, batch_size=5)
    assert len(_expire_entries_per_lot(db)) == 5  # the first chunk only
    with db.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Movement)) == 5 + 2
    assert_clean(db)

    monkeypatch.setattr(jobs, "_expire_chunk", real)
    assert run_expiry(db, RUN_AT, batch_size=5).lots == lots_due - 5
    assert _expired(db) == due
    assert_clean(db)


def test_pending_and_available_remainders_leave_their_own_totals(db, frozen):
    # Points stay pending for 60 days but expire after one month: some expire while pending.
    with db.unit_of_work() as session:
        prog = make_program(
            session, now=frozen, pending_days=60, expiry={"kind": "months", "months": 1}
        )
        ids = [make_member(session, now=frozen, program=prog).id for _ in range(3)]
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        for n, member_id in enumerate(ids):
            buy(session, prog, member_id, 100_000, ext=f"old-{n}", now=frozen)  # 1,000 pending
    later = frozen + timedelta(days=70)
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        adjust(session, prog, ids[0], 500, now=later - timedelta(days=40))  # available, 1 month
    run_at = frozen + timedelta(days=50)  # the purchases' lots: past their date, still pending
    with db.unit_of_work(readonly=True) as session:
        before = {a.id: (a.available, a.pending) for a in session.scalars(select(Account))}
        assert sorted(before.values()) == [(0, 1000), (0, 1000), (500, 1000)]

    report = run_expiry(db, run_at, batch_size=2)

    assert (report.lots, report.points, report.accounts) == (3, 3000, 3)
    assert report.released_lots == 0
    with db.unit_of_work(readonly=True) as session:
        after = {
            a.id: (a.available, a.pending, a.expired) for a in session.scalars(select(Account))
        }
    assert sorted(after.values()) == [(0, 0, 1000), (0, 0, 1000), (500, 0, 1000)]
    assert_clean(db)

    final = run_expiry(db, later + timedelta(days=30), batch_size=2)
    assert (final.lots, final.points, final.released_lots) == (1, 500, 3)
    assert_clean(db)


def test_a_late_run_over_a_long_backlog_is_the_same_as_a_punctual_one(db, frozen):
    _population(db, frozen)
    due = _remainders(db)
    report = run_expiry(db, RUN_AT + timedelta(days=3 * 365), batch_size=6)
    assert report.points == sum(due.values()) and _expired(db) == due
    with db.unit_of_work(readonly=True) as session:
        dated = session.execute(
            select(Entry.occurred_at, Lot.expires_at)
            .join(Lot, Lot.id == Entry.lot_id)
            .where(Entry.kind == "expire")
        ).all()
    # Each expiry is dated at its lot's own instant, not when the late job ran.
    assert all(occurred == expires for occurred, expires in dated)
    assert_clean(db)


# --- concurrent tills (row locks across connections) ----------------------------------------

EXPIRES = datetime(2027, 3, 2, 15, 0, tzinfo=UTC)  # 2027-03-03 00:00 in Seoul


def _waiting_on_a_lock(db: Database, timeout: float = 10.0) -> bool:
    """True once some connection of this database waits on a row lock."""
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while datetime.now(UTC) < deadline:
        with db.engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if waiting:
            return True
        threading.Event().wait(0.05)
    return False


def _till_holding_the_lock(db: Database, work) -> tuple[threading.Thread, threading.Event]:
    """Run `work(session)` in a transaction that stays open until the returned event is set."""
    started, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def till() -> None:
        try:
            with db.unit_of_work() as session:
                work(session)
                started.set()
                release.wait(20)
        except BaseException as exc:  # pragma: no cover - reported by the test
            failures.append(exc)
            started.set()

    thread = threading.Thread(target=till)
    thread.failures = failures  # type: ignore[attr-defined]
    thread.start()
    assert started.wait(20) and not failures, failures
    return thread, release


def _expiry_in_background(db: Database, at: datetime) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        try:
            result["report"] = run_expiry(db, at, batch_size=10)
        except BaseException as exc:  # pragma: no cover - reported by the test
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


@pytest.mark.postgresql_only
def test_expiry_waits_for_a_till_spending_from_the_lot_and_expires_only_what_is_left(db, frozen):
    with db.unit_of_work() as session:
        prog = make_program(session, now=frozen)
        mid = make_member(session, now=frozen, program=prog).id
        other = make_member(session, now=frozen, program=prog).id
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        adjust(session, prog, mid, 2000, now=frozen)  # expires at EXPIRES
        adjust(session, prog, other, 400, now=frozen)

    # The last valid second: the till spends 1,000 from the lot and holds the account's lock.
    till, release = _till_holding_the_lock(
        db,
        lambda s: buy(
            s,
            program(s, "bakery"),
            mid,
            10_000,
            ext="t1",
            spend=1000,
            now=EXPIRES - timedelta(seconds=1),
        ),
    )
    expiry, result = _expiry_in_background(db, EXPIRES)
    try:
        assert _waiting_on_a_lock(db), "the expiry job did not wait for the till's lock"
        assert expiry.is_alive()
    finally:
        release.set()
        till.join(20)
        expiry.join(60)
    assert "error" not in result, result
    report = result["report"]
    # 1,000 left in the member's lot (not the 2,000 the job saw before the lock) and the other
    # member's 400; the till's own new lot (90 points on the 9,000 KRW paid) is not due.
    assert (report.lots, report.points, report.accounts) == (2, 1400, 2)
    with db.unit_of_work(readonly=True) as session:
        acc = account(session, program(session, "bakery"), mid)
        assert (acc.expired, acc.redeemed, acc.available) == (1000, 1000, 90)
    assert_clean(db)


@pytest.mark.postgresql_only
def test_a_till_that_expires_the_lot_itself_is_not_expired_twice(db, frozen):
    with db.unit_of_work() as session:
        prog = make_program(session, now=frozen)
        mid = make_member(session, now=frozen, program=prog).id
    with db.unit_of_work() as session:
        adjust(session, program(session, "bakery"), mid, 1000, now=frozen)

    # A sale just after the expiry instant settles the overdue lot in its own transaction (and
    # earns a new lot) while the nightly job runs.
    late_sale = EXPIRES + timedelta(seconds=1)
    till, release = _till_holding_the_lock(
        db, lambda s: buy(s, program(s, "bakery"), mid, 5000, ext="t2", now=late_sale)
    )
    expiry, result = _expiry_in_background(db, late_sale)
    try:
        assert _waiting_on_a_lock(db), "the expiry job did not wait for the till's lock"
    finally:
        release.set()
        till.join(20)
        expiry.join(60)
    assert "error" not in result, result
    assert (result["report"].lots, result["report"].points) == (0, 0)
    with db.unit_of_work(readonly=True) as session:
        acc = account(session, program(session, "bakery"), mid)
        assert (acc.expired, acc.available, acc.earned) == (1000, 50, 50)
        assert (
            session.scalar(select(func.count()).select_from(Entry).where(Entry.kind == "expire"))
            == 1
        )
    assert_clean(db)
