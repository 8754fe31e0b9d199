"""The scheduled notification jobs on SQLite and PostgreSQL: who gets which reminder, once."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from patron import clock
from patron.audit.service import CLI
from patron.db.engine import Database
from patron.db.job_runs import JobRun
from patron.earning import events as rule_events
from patron.events.models import DomainEvent
from patron.ledger.jobs import run_expiry
from patron.ledger.models import Account, Entry, Lot
from patron.members import service as members
from patron.members.models import Member
from patron.members.schemas import MemberRef, MemberUpdate
from patron.notify import jobs
from patron.notify import settings as notify_settings
from patron.notify.models import ReminderMark
from patron.notify.settings import NotifySettings
from patron.rules import publishing
from patron.rules.events import EventRequest
from tests.conftest import PG_URL
from tests.factories import make_member, make_program
from tests.ledger._helpers import adjust, assert_clean, buy, program, refund

SEOUL = ZoneInfo("Asia/Seoul")


def seoul(*args: int) -> datetime:
    """A Seoul wall-clock time as a UTC instant."""
    return datetime(*args, tzinfo=SEOUL).astimezone(UTC)  # type: ignore[misc]


def events_of(db: Database, kind: str) -> list[dict[str, Any]]:
    with db.unit_of_work(readonly=True) as session:
        rows = session.scalars(
            select(DomainEvent).where(DomainEvent.kind == kind).order_by(DomainEvent.id)
        ).all()
        return [{**row.payload, "_member": row.member_id, "_at": row.at} for row in rows]


def count(db: Database, model: Any) -> int:
    with db.unit_of_work(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


JOB_EVENTS = ("points.expiring", "member.birthday", "points.statement")


def job_events(db: Database) -> int:
    """Events the jobs wrote (the ledger writes its own, points.earned and the like)."""
    with db.unit_of_work(readonly=True) as session:
        return int(
            session.scalar(select(func.count()).where(DomainEvent.kind.in_(JOB_EVENTS))) or 0
        )


def nothing_written(db: Database) -> bool:
    return job_events(db) == count(db, ReminderMark) == count(db, JobRun) == 0


def set_notify(db: Database, now: datetime, **values: Any) -> None:
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        notify_settings.save(session, prog, NotifySettings(**values), actor=CLI, now=now)


def block(db: Database, member_id: int, now: datetime) -> None:
    with db.unit_of_work() as session:
        member = session.get(Member, member_id)
        assert member is not None
        members.set_status(session, member, "blocked", reason="test", actor=CLI, now=now)


class _Stopped(Exception):
    """A run killed between two chunks."""


def _stop_at(chunks: int):
    def stop(report: jobs.JobReport) -> None:
        if report.chunks == chunks:
            raise _Stopped

    return stop


# --- expiring-points reminders ----------------------------------------------------------------

# The run: 2 March 2026, 12:00 in Seoul; the window (30 days) ends with 1 April, local.
RUN = seoul(2026, 3, 2, 12, 0)


@pytest.fixture
def expiring(db: Database) -> dict[str, int]:
    """Members with lots earned a year ago: each lot expires at the local midnight after its
    last day, 12 months on (earned 10 March 2025 -> gone at 00:00 on 11 March 2026, Seoul)."""
    clock.freeze(RUN)
    ids: dict[str, int] = {}
    with db.unit_of_work() as session:
        prog = make_program(session, now=RUN)
        for name in ("kim", "lee", "park", "choi", "blocked"):
            ids[name] = make_member(session, now=RUN, program=prog, name=name).id
        plan = [
            # kim: two lots on one expiry day (one reminder, their sum), another day, and one
            # outside the window
            ("kim", seoul(2025, 3, 10, 9, 0), 10_000),
            ("kim", seoul(2025, 3, 10, 18, 0), 25_000),
            ("kim", seoul(2025, 3, 20, 12, 0), 5_000),
            ("kim", seoul(2025, 6, 1, 12, 0), 70_000),
            # lee: the local-day edge: earned 31 March 2025 -> expires 00:00 on 1 April 2026,
            # Seoul (31 March 15:00 UTC), the window's last day; earned 1 April -> 2 April: out
            ("lee", seoul(2025, 3, 31, 23, 30), 12_000),
            ("lee", seoul(2025, 4, 1, 0, 30), 30_000),
            # park: already expired (1 March 2026 local) -> nothing
            ("park", seoul(2025, 2, 28, 12, 0), 8_000),
            # choi: spent it all -> nothing
            ("choi", seoul(2025, 3, 15, 12, 0), 100_000),
            ("blocked", seoul(2025, 3, 12, 12, 0), 40_000),
        ]
        for n, (who, at, amount) in enumerate(plan):
            buy(session, prog, ids[who], amount, ext=f"old-{n}", now=RUN, occurred_at=at)
        buy(session, prog, ids["choi"], 1000, ext="spend", now=RUN, spend=1000)
    block(db, ids["blocked"], RUN)
    return ids


def test_one_reminder_per_member_and_local_expiry_day(db: Database, expiring):
    report = jobs.run_expiring(db, "bakery", now=RUN)

    kim, lee = expiring["kim"], expiring["lee"]
    got = {(e["_member"], e["expiry_date"]): e for e in events_of(db, "points.expiring")}
    assert sorted(got) == [(kim, "2026-03-11"), (kim, "2026-03-21"), (lee, "2026-04-01")]
    # Two lots on 11 March: one reminder with their sum; the balance is what the member has.
    first = got[(kim, "2026-03-11")]
    assert first == {
        "program": "bakery",
        "member_id": kim,
        "points": 100 + 250,
        "expires_at": "2026-03-10T15:00:00+00:00",
        "expiry_date": "2026-03-11",
        "balance": 100 + 250 + 50 + 700,
        "_member": kim,
        "_at": RUN,
    }
    assert got[(kim, "2026-03-21")]["points"] == 50
    # 00:00 on 1 April in Seoul is 31 March in UTC, and still the window's last (local) day.
    edge = got[(lee, "2026-04-01")]
    assert (edge["points"], edge["expires_at"]) == (120, "2026-03-31T15:00:00+00:00")

    assert (report.considered, report.events, report.skipped) == (2, 3, 0)
    assert report.points == 100 + 250 + 50 + 120 and not report.already_done
    with db.unit_of_work(readonly=True) as session:
        marks = session.execute(
            select(ReminderMark.member_id, ReminderMark.kind, ReminderMark.key).order_by(
                ReminderMark.member_id, ReminderMark.key
            )
        ).all()
        run = session.execute(select(JobRun.job, JobRun.key, JobRun.status, JobRun.counts)).one()
    assert [tuple(m) for m in marks] == [
        (kim, "expiring", "2026-03-11"),
        (kim, "expiring", "2026-03-21"),
        (lee, "expiring", "2026-04-01"),
    ]
    assert (run.job, run.key, run.status, run.counts["events"]) == (
        "expiring",
        "2026-03-02",
        "done",
        3,
    )
    assert_clean(db)


def test_the_window_follows_the_setting(db: Database, expiring):
    set_notify(db, RUN, expiring_days_before=10)
    jobs.run_expiring(db, "bakery", now=RUN)
    # 12 March is the last local day: only the lots expiring on 11 March.
    dates = [e["expiry_date"] for e in events_of(db, "points.expiring")]
    assert dates == ["2026-03-11"]


def test_running_again_the_same_day_or_later_never_reminds_twice(db: Database, expiring):
    jobs.run_expiring(db, "bakery", now=RUN)
    again = jobs.run_expiring(db, "bakery", now=RUN + timedelta(hours=3))
    assert again.already_done and again.events == 3 and again.chunks >= 1
    assert job_events(db) == 3

    # The next day: a new run; the days already reminded are skipped, and 2 April, which
    # has come into the window, gets its reminder.
    next_day = jobs.run_expiring(db, "bakery", now=RUN + timedelta(days=1))
    assert (next_day.events, next_day.skipped, next_day.already_done) == (1, 3, False)
    new = events_of(db, "points.expiring")[3:]
    assert [(e["_member"], e["expiry_date"], e["points"]) for e in new] == [
        (expiring["lee"], "2026-04-02", 300)
    ]

    # New points expiring on a day already reminded do not bring a second reminder.
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        kim = expiring["kim"]
        buy(session, prog, kim, 9000, ext="more", now=RUN, occurred_at=seoul(2025, 3, 10, 20, 0))
    assert jobs.run_expiring(db, "bakery", now=RUN + timedelta(days=1, hours=1)).already_done
    day3 = jobs.run_expiring(db, "bakery", now=RUN + timedelta(days=2))
    assert (day3.events, day3.skipped) == (0, 4)
    assert job_events(db) == count(db, ReminderMark) == 4


def test_an_interrupted_run_resumes_after_its_last_chunk(db: Database, expiring):
    with pytest.raises(_Stopped):
        jobs.run_expiring(db, "bakery", now=RUN, batch_size=1, progress=_stop_at(1))
    # The first account (kim) was committed with its run row; nothing after it.
    assert {e["_member"] for e in events_of(db, "points.expiring")} == {expiring["kim"]}
    with db.unit_of_work(readonly=True) as session:
        run = session.execute(select(JobRun.status, JobRun.cursor, JobRun.counts)).one()
        first_account = session.scalar(
            select(Account.id).where(Account.member_id == expiring["kim"])
        )
    assert (run.status, run.cursor, run.counts["chunks"]) == ("running", first_account, 1)

    resumed = jobs.run_expiring(db, "bakery", now=RUN + timedelta(minutes=5), batch_size=1)
    payloads = events_of(db, "points.expiring")
    assert len(payloads) == 3 and len({(e["_member"], e["expiry_date"]) for e in payloads}) == 3
    # The counts cover the whole run: 5 accounts, one chunk each.
    assert (resumed.events, resumed.considered, resumed.chunks) == (3, 2, 5)
    assert jobs.run_expiring(db, "bakery", now=RUN, batch_size=1).already_done
    assert job_events(db) == 3


def test_blocked_members_and_pending_points_get_no_reminder(db: Database, expiring):
    jobs.run_expiring(db, "bakery", now=RUN)
    assert expiring["blocked"] not in {e["_member"] for e in events_of(db, "points.expiring")}

    # Pending points are not the member's yet: no reminder for them.
    with db.unit_of_work() as session:
        lot_id = session.scalar(
            select(Lot.id)
            .join(Account, Account.id == Lot.account_id)
            .where(Account.member_id == expiring["lee"], Lot.remaining == 300)
        )
        session.execute(
            text("UPDATE lots SET pending = :yes WHERE id = :id"), {"yes": True, "id": lot_id}
        )
    jobs.run_expiring(db, "bakery", now=RUN + timedelta(days=2))
    assert [e["expiry_date"] for e in events_of(db, "points.expiring")][3:] == []


def test_dry_run_writes_nothing_and_counts_what_a_run_writes(db: Database, expiring):
    preview = jobs.run_expiring(db, "bakery", now=RUN, dry_run=True, batch_size=2)
    assert nothing_written(db)
    assert preview.dry_run and (preview.events, preview.considered, preview.chunks) == (3, 2, 3)
    real = jobs.run_expiring(db, "bakery", now=RUN, batch_size=2)
    assert (real.events, real.points) == (preview.events, preview.points)
    after = jobs.run_expiring(db, "bakery", now=RUN + timedelta(days=1), dry_run=True)
    # The next day: 2 April enters the window; the rest was reminded.
    assert (after.events, after.skipped) == (1, 3)


@pytest.mark.postgresql_only
def test_a_run_held_by_another_worker_is_skipped_not_doubled(db: Database, expiring):
    with pytest.raises(_Stopped):
        jobs.run_expiring(db, "bakery", now=RUN, batch_size=1, progress=_stop_at(2))
    holder = db.engine.connect()
    try:
        holder.execute(text("BEGIN"))
        holder.execute(text("SELECT id FROM job_runs FOR UPDATE"))
        busy = jobs.run_expiring(db, "bakery", now=RUN, batch_size=1, skip_if_busy=True)
        assert busy.busy and busy.events == 0
    finally:
        holder.rollback()
        holder.close()
    done = jobs.run_expiring(db, "bakery", now=RUN, batch_size=1, skip_if_busy=True)
    assert done.events == 3 and job_events(db) == 3


def test_concurrent_runners_share_the_run_without_doubling(db: Database, expiring):
    errors: list[BaseException] = []
    reports: list[jobs.JobReport] = []

    def work() -> None:
        try:
            reports.append(jobs.run_expiring(db, "bakery", now=RUN, batch_size=1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert job_events(db) == count(db, ReminderMark) == 3
    assert all(r.events == 3 for r in reports)


# --- birthdays --------------------------------------------------------------------------------

BIRTHDAY_RULE = {
    "id": "bday",
    "kind": "event",
    "event": "birthday",
    "points": 500,
    "limit": "per_year",
}


def _birthday_program(db: Database, now: datetime, *, rule: bool = True) -> dict[str, int]:
    clock.freeze(now)
    with db.unit_of_work() as session:
        prog = make_program(session, now=now)
        if rule:
            publishing.add_rule(session, prog, dict(BIRTHDAY_RULE), actor=CLI, now=now)
        people = {
            "today": date(1990, 3, 2),
            "tomorrow": date(1985, 3, 3),
            "leap": date(2000, 2, 29),
            "feb28": date(1999, 2, 28),
            "blocked": date(1970, 3, 2),
            "none": None,
        }
        ids = {
            name: make_member(session, now=now, program=prog, name=name, birthday=born).id
            for name, born in people.items()
        }
        # Born today but not in this program: no account, no greeting.
        make_member(session, now=now, name="elsewhere", birthday=date(1990, 3, 2))
    block(db, ids["blocked"], now)
    return ids


def _points(db: Database, member_id: int) -> int:
    with db.unit_of_work(readonly=True) as session:
        return int(
            session.scalar(select(Account.available).where(Account.member_id == member_id)) or 0
        )


def test_birthday_points_and_greeting_once_a_year(db: Database):
    # 00:30 on 2 March in Seoul is still 1 March in UTC: the program's day decides.
    now = seoul(2026, 3, 2, 0, 30)
    ids = _birthday_program(db, now)
    report = jobs.run_birthdays(db, "bakery", now=now)
    assert (report.considered, report.events, report.points, report.key) == (
        1,
        1,
        500,
        "2026-03-02",
    )
    greeted = events_of(db, "member.birthday")
    assert greeted == [
        {
            "program": "bakery",
            "member_id": ids["today"],
            "year": 2026,
            "points": 500,
            "_member": ids["today"],
            "_at": now,
        }
    ]
    assert _points(db, ids["today"]) == 500
    with db.unit_of_work(readonly=True) as session:
        entry = session.execute(
            select(Entry.points, Entry.reason, Entry.actor).where(Entry.kind == "earn")
        ).one()
    assert tuple(entry) == (500, "event birthday", "system")

    # Again the same day: done. The next day: tomorrow's member only.
    assert jobs.run_birthdays(db, "bakery", now=now + timedelta(hours=5)).already_done
    next_day = jobs.run_birthdays(db, "bakery", now=now + timedelta(days=1))
    assert (next_day.events, next_day.points) == (1, 500)
    assert [e["_member"] for e in events_of(db, "member.birthday")] == [
        ids["today"],
        ids["tomorrow"],
    ]

    # A member who moves their birthday to a later day of the same year is not greeted (or
    # credited) twice that year.
    later = now + timedelta(days=10)
    with db.unit_of_work() as session:
        member = session.get(Member, ids["today"])
        assert member is not None
        members.update_member(
            session,
            member,
            MemberUpdate(name="today", birthday=date(1990, 3, 12)),
            program=None,
            actor=CLI,
            now=later,
        )
    moved = jobs.run_birthdays(db, "bakery", now=later)
    assert (moved.considered, moved.events, moved.skipped, moved.points) == (1, 0, 1, 0)
    assert _points(db, ids["today"]) == 500
    assert len(events_of(db, "member.birthday")) == 2

    # Next year: greeted and credited again.
    next_year = jobs.run_birthdays(db, "bakery", now=seoul(2027, 3, 12, 10, 0))
    assert (next_year.events, next_year.points) == (1, 500)
    with db.unit_of_work(readonly=True) as session:
        credits = session.scalars(
            select(Entry.points)
            .join(Account, Account.id == Entry.account_id)
            .where(Account.member_id == ids["today"], Entry.kind == "earn")
        ).all()
    assert credits == [500, 500]
    assert_clean(db)


def test_birthday_greeting_without_points_when_the_rule_refuses_or_is_missing(db: Database):
    now = seoul(2026, 3, 2, 10, 0)
    ids = _birthday_program(db, now)
    # The member claimed this year's birthday points through the API already.
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        rule_events.record_event(
            session,
            prog,
            EventRequest(member=MemberRef(id=ids["today"]), event="birthday"),
            actor=CLI,
            now=now,
        )
    report = jobs.run_birthdays(db, "bakery", now=now)
    assert (report.events, report.points) == (1, 0)
    assert events_of(db, "member.birthday")[0]["points"] == 0
    assert _points(db, ids["today"]) == 500  # the API's credit, not a second one


def test_birthday_without_a_rule_is_a_greeting_only(db: Database):
    now = seoul(2026, 3, 2, 10, 0)
    ids = _birthday_program(db, now, rule=False)
    report = jobs.run_birthdays(db, "bakery", now=now)
    assert (report.events, report.points) == (1, 0)
    assert [e["member_id"] for e in events_of(db, "member.birthday")] == [ids["today"]]
    assert count(db, Entry) == 0


def test_29_february_birthdays(db: Database):
    now = seoul(2026, 3, 2, 10, 0)
    ids = _birthday_program(db, now)
    # 2027 is not a leap year: 29 February birthdays are on the 28th, with the 28th's.
    jobs.run_birthdays(db, "bakery", now=seoul(2027, 2, 28, 10, 0))
    assert sorted(e["_member"] for e in events_of(db, "member.birthday")) == sorted(
        [ids["leap"], ids["feb28"]]
    )
    assert {e["year"] for e in events_of(db, "member.birthday")} == {2027}
    # 2028 is: the 28th is the 28th's only, the 29th the leap-day member's.
    feb28 = jobs.run_birthdays(db, "bakery", now=seoul(2028, 2, 28, 10, 0))
    feb29 = jobs.run_birthdays(db, "bakery", now=seoul(2028, 2, 29, 10, 0))
    mar1 = jobs.run_birthdays(db, "bakery", now=seoul(2028, 3, 1, 10, 0))
    assert (feb28.events, feb29.events, mar1.events) == (1, 1, 0)
    assert [e["_member"] for e in events_of(db, "member.birthday")][2:] == [
        ids["feb28"],
        ids["leap"],
    ]


def test_an_interrupted_birthday_run_resumes_without_crediting_twice(db: Database):
    now = seoul(2026, 3, 2, 10, 0)
    ids = _birthday_program(db, now)
    with pytest.raises(_Stopped):
        jobs.run_birthdays(db, "bakery", now=now, batch_size=1, progress=_stop_at(1))
    assert [e["_member"] for e in events_of(db, "member.birthday")] == [ids["today"]]
    resumed = jobs.run_birthdays(db, "bakery", now=now, batch_size=1)
    assert (resumed.events, resumed.points, resumed.chunks) == (1, 500, 6)
    assert [e["_member"] for e in events_of(db, "member.birthday")] == [ids["today"]]
    assert _points(db, ids["today"]) == 500


def test_birthday_dry_run_writes_nothing(db: Database):
    now = seoul(2026, 3, 2, 10, 0)
    ids = _birthday_program(db, now)
    preview = jobs.run_birthdays(db, "bakery", now=now, dry_run=True)
    assert (preview.events, preview.considered) == (1, 1)
    assert nothing_written(db) and count(db, Entry) == 0 and _points(db, ids["today"]) == 0


# --- monthly statements -----------------------------------------------------------------------


def _counters(db: Database, member_id: int) -> dict[str, int]:
    with db.unit_of_work(readonly=True) as session:
        account = session.scalars(select(Account).where(Account.member_id == member_id)).one()
        return {
            "earned": account.earned,
            "redeemed": account.redeemed,
            "expired": account.expired,
            "adjusted": account.adjusted,
        }


def _at(db: Database, when: datetime, fn) -> Any:
    clock.freeze(when)
    with db.unit_of_work() as session:
        return fn(session, program(session, "bakery"))


def test_statement_sums_equal_the_ledger_for_the_local_month(db: Database):
    start = seoul(2026, 1, 20, 12, 0)
    clock.freeze(start)
    with db.unit_of_work() as session:
        prog = make_program(session, now=start)
        ids = {
            name: make_member(session, now=start, program=prog, name=name).id
            for name in ("active", "idle_rich", "idle_empty", "blocked")
        }
        # A lot from last year that expires during February (gone at 00:00 on 11 Feb, Seoul).
        buy(
            session,
            prog,
            ids["active"],
            60_000,
            ext="old",
            now=start,
            occurred_at=seoul(2025, 2, 10, 12, 0),
        )
        buy(session, prog, ids["idle_rich"], 30_000, ext="idle", now=start)
        buy(session, prog, ids["blocked"], 30_000, ext="blk", now=start)
    block(db, ids["blocked"], start)
    m = ids["active"]
    # 23:30 on 31 January in Seoul: January, not February.
    _at(
        db,
        seoul(2026, 1, 31, 23, 30),
        lambda s, p: buy(s, p, m, 10_000, ext="jan", now=clock.now()),
    )
    before = _counters(db, m)
    _at(
        db, seoul(2026, 2, 5, 12, 0), lambda s, p: buy(s, p, m, 200_000, ext="big", now=clock.now())
    )
    clock.freeze(seoul(2026, 2, 12, 12, 0))
    run_expiry(db, clock.now())
    _at(
        db,
        seoul(2026, 2, 15, 12, 0),
        lambda s, p: buy(s, p, m, 20_000, ext="spend", now=clock.now(), spend=1000),
    )
    _at(
        db,
        seoul(2026, 2, 20, 12, 0),
        lambda s, p: refund(s, p, "big", refund_id="r1", now=clock.now(), amount=100_000),
    )
    _at(
        db,
        seoul(2026, 2, 22, 12, 0),
        lambda s, p: refund(s, p, "spend", refund_id="r2", now=clock.now(), amount=10_000),
    )
    _at(db, seoul(2026, 2, 25, 12, 0), lambda s, p: adjust(s, p, m, 300, now=clock.now()))
    # 23:30 on 28 February in Seoul is February; 00:30 on 1 March is not.
    _at(
        db,
        seoul(2026, 2, 28, 23, 30),
        lambda s, p: buy(s, p, m, 10_000, ext="last", now=clock.now()),
    )
    after = _counters(db, m)
    _at(
        db,
        seoul(2026, 3, 1, 0, 30),
        lambda s, p: buy(s, p, m, 10_000, ext="march", now=clock.now()),
    )

    now = seoul(2026, 3, 2, 10, 0)
    clock.freeze(now)
    report = jobs.run_statements(db, "bakery", now=now)
    assert (report.key, report.considered, report.events) == ("2026-02", 2, 2)
    got = {e["_member"]: e for e in events_of(db, "points.statement")}
    assert set(got) == {m, ids["idle_rich"]}

    statement = got[m]
    expected = {k: after[k] - before[k] for k in after}
    assert {k: statement[k] for k in expected} == expected
    # Every kind moved this month, so the check is not vacuous.
    assert all(expected.values()) and expected["expired"] == 600
    with db.unit_of_work(readonly=True) as session:
        account_id, available = session.execute(
            select(Account.id, Account.available).where(Account.member_id == m)
        ).one()
        lots = session.execute(
            select(Lot.expires_at, Lot.remaining).where(
                Lot.account_id == account_id, Lot.remaining > 0, Lot.expires_at > now
            )
        ).all()
    days: dict[str, int] = {}
    for expires_at, remaining in lots:
        day = expires_at.astimezone(SEOUL).date().isoformat()
        days[day] = days.get(day, 0) + remaining
    first_day = min(days)
    assert statement["month"] == "2026-02" and statement["balance"] == available
    assert (statement["expiring_date"], statement["expiring_points"]) == (
        first_day,
        days[first_day],
    )

    idle = got[ids["idle_rich"]]
    assert (idle["earned"], idle["redeemed"], idle["expired"], idle["balance"]) == (0, 0, 0, 300)
    assert idle["expiring_date"] == "2027-01-21"

    # Once per month: again, or later in the month, nothing new.
    assert jobs.run_statements(db, "bakery", now=now).already_done
    later = jobs.run_statements(db, "bakery", now=now + timedelta(days=1))
    assert later.already_done and job_events(db) == 2
    assert_clean(db)


def test_statement_dry_run_writes_nothing(db: Database):
    start = seoul(2026, 2, 10, 12, 0)
    clock.freeze(start)
    with db.unit_of_work() as session:
        prog = make_program(session, now=start)
        member = make_member(session, now=start, program=prog)
        buy(session, prog, member.id, 10_000, ext="feb", now=start)
    now = seoul(2026, 3, 1, 10, 0)
    preview = jobs.run_statements(db, "bakery", now=now, dry_run=True)
    assert (preview.events, preview.key) == (1, "2026-02") and nothing_written(db)


# --- run_due: the worker's schedule -----------------------------------------------------------


def _due_setup(db: Database, now: datetime) -> dict[str, int]:
    ids = _birthday_program(db, now)
    set_notify(db, now, statement_day=2)
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        buy(
            session,
            prog,
            ids["none"],
            10_000,
            ext="exp",
            now=now,
            occurred_at=seoul(2025, 3, 10, 12, 0),
        )
    return ids


def _jobs(reports: list[jobs.JobReport]) -> list[tuple[str, str]]:
    return sorted((r.job, r.key) for r in reports)


def test_run_due_runs_after_jobs_hour_once_a_day(db: Database):
    ids = _due_setup(db, seoul(2026, 3, 2, 9, 0))
    assert jobs.run_due(db, now=seoul(2026, 3, 2, 9, 59)) == []
    assert count(db, JobRun) == 0

    first = jobs.run_due(db, now=seoul(2026, 3, 2, 10, 0))
    assert _jobs(first) == [
        ("birthday", "2026-03-02"),
        ("expiring", "2026-03-02"),
        ("statement", "2026-02"),
    ]
    assert [e["_member"] for e in events_of(db, "member.birthday")] == [ids["today"]]
    assert [e["_member"] for e in events_of(db, "points.expiring")] == [ids["none"]]
    # Statements run last: the birthday points just credited make a balance too.
    statements = {e["_member"] for e in events_of(db, "points.statement")}
    assert statements == {ids["none"], ids["today"]}
    assert jobs.run_due(db, now=seoul(2026, 3, 2, 10, 1)) == []
    assert jobs.run_due(db, now=seoul(2026, 3, 2, 23, 59)) == []

    # The next day: before the hour nothing; then the daily jobs, not the statement.
    assert jobs.run_due(db, now=seoul(2026, 3, 3, 9, 0)) == []
    second = jobs.run_due(db, now=seoul(2026, 3, 3, 10, 30))
    assert _jobs(second) == [("birthday", "2026-03-03"), ("expiring", "2026-03-03")]
    assert [e["_member"] for e in events_of(db, "member.birthday")] == [
        ids["today"],
        ids["tomorrow"],
    ]
    assert len(events_of(db, "points.expiring")) == 1
    assert jobs.run_due(db, now=seoul(2026, 3, 3, 11, 0)) == []


def test_run_due_follows_each_programs_hour(db: Database):
    now = seoul(2026, 3, 2, 9, 0)
    _due_setup(db, now)
    set_notify(db, now, statement_day=2, jobs_hour=6)
    assert _jobs(jobs.run_due(db, now=seoul(2026, 3, 2, 6, 0)))[0] == ("birthday", "2026-03-02")


def test_run_due_catches_up_missed_birthdays_and_statements(db: Database):
    ids = _due_setup(db, seoul(2026, 3, 2, 9, 0))
    jobs.run_due(db, now=seoul(2026, 3, 2, 10, 0))
    # The worker was down on 3 March: on the 4th, at the hour, the 3rd's birthdays go out too.
    assert jobs.run_due(db, now=seoul(2026, 3, 4, 8, 0)) == []
    caught = jobs.run_due(db, now=seoul(2026, 3, 4, 10, 0))
    assert _jobs(caught) == [
        ("birthday", "2026-03-03"),
        ("birthday", "2026-03-04"),
        ("expiring", "2026-03-04"),
    ]
    greeted = events_of(db, "member.birthday")
    assert [e["_member"] for e in greeted] == [ids["today"], ids["tomorrow"]]
    assert greeted[-1]["points"] == 500 and greeted[-1]["year"] == 2026
    with db.unit_of_work(readonly=True) as session:
        occurred = session.scalars(
            select(Entry.occurred_at)
            .join(Account, Account.id == Entry.account_id)
            .where(Account.member_id == ids["tomorrow"], Entry.kind == "earn")
        ).one()
    # Credited on its own day (noon, local), which decides the rule's year and the expiry.
    assert occurred == seoul(2026, 3, 3, 12, 0)

    # A statement day missed by the worker runs up to a week late, once.
    set_notify(db, seoul(2026, 3, 4, 8, 0), statement_day=3)
    with db.unit_of_work() as session:
        session.execute(text("DELETE FROM job_runs WHERE job = 'statement'"))
        session.execute(text("DELETE FROM reminder_marks WHERE kind = 'statement'"))
    late = jobs.run_due(db, now=seoul(2026, 3, 9, 10, 0))
    assert ("statement", "2026-02") in _jobs(late)
    assert ("statement", "2026-02") not in _jobs(jobs.run_due(db, now=seoul(2026, 3, 9, 11, 0)))
    too_late = jobs.run_due(db, now=seoul(2026, 4, 10, 10, 0))
    assert "statement" not in {job for job, _ in _jobs(too_late)}


def test_a_new_installation_does_not_greet_past_days(db: Database):
    _due_setup(db, seoul(2026, 3, 2, 9, 0))
    reports = jobs.run_due(db, now=seoul(2026, 3, 5, 10, 0))
    assert [key for job, key in _jobs(reports) if job == "birthday"] == ["2026-03-05"]


def test_two_workers_calling_run_due_at_once_write_each_event_once(db: Database):
    ids = _due_setup(db, seoul(2026, 3, 2, 9, 0))
    now = seoul(2026, 3, 2, 10, 0)
    results: list[list[jobs.JobReport]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(jobs.run_due(db, now=now))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [e["_member"] for e in events_of(db, "member.birthday")] == [ids["today"]]
    assert len(events_of(db, "points.expiring")) == 1
    # The birthday points may land before or after the other worker's statement run: either
    # way, one statement per member.
    statements = [e["_member"] for e in events_of(db, "points.statement")]
    assert ids["none"] in statements and len(statements) == len(set(statements))
    assert _points(db, ids["today"]) == 500  # credited once
    with db.unit_of_work(readonly=True) as session:
        statuses = session.scalars(select(JobRun.status)).all()
    assert sorted(statuses) == ["done", "done", "done"]


# --- the benchmark, at a tiny size, so it cannot rot ------------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_benchmark_runs_and_is_correct(
    dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if dialect == "postgresql" and not PG_URL:
        pytest.skip("PostgreSQL not configured (set PATRON_TEST_DATABASE_URL)")
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "notify_jobs.py"
    spec = importlib.util.spec_from_file_location("patron_bench_notify_jobs", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if dialect == "postgresql":
        admin = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        monkeypatch.setattr(module.bench, "PG_ADMIN_URL", admin)
    out = tmp_path / "notify_jobs.json"
    module.main(["--members", "300", "--dbs", dialect, "--batch-size", "40", "--json", str(out)])
    result = json.loads(out.read_text(encoding="utf-8"))["expiring"][dialect]
    assert result["correct"] is True, result
    assert result["events"] == result["baseline_rows"] == 100 and result["chunks"] == 8
    assert result["figure"] > 0 and result["baseline"] > 0 and result["ratio"] > 0
