"""The outbox writers: every ledger entry has exactly one event, written by the same
transaction, whichever writer wrote the entry (a sale at the till or in a batch, refund, adjustment,
custom event, expiry job); nothing rolled back or replayed leaves an event behind; `patron
check` proves it and notices when it stops being true.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import case, func, select, text

from patron.audit.service import CLI
from patron.check import run_check
from patron.db.engine import Database
from patron.earning import events as rule_events
from patron.errors import InsufficientPoints, PatronError
from patron.events.kinds import ENTRY_EVENTS
from patron.events.models import DomainEvent
from patron.events.outbox import entry_payload, entry_payload_sql, iso_utc
from patron.ledger.jobs import run_expiry
from patron.ledger.models import Account, Entry, Lot
from patron.members.schemas import MemberRef
from patron.programs.models import Program, Store
from patron.rules import publishing
from patron.rules import service as rules
from patron.rules.events import EventRequest
from patron.sales import batch, purchases
from patron.sales.schemas import PurchaseRequest
from tests.factories import make_member, make_program
from tests.ledger._helpers import adjust, buy, program, refund

RULES: dict[str, Any] = {
    "rules": [
        {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"},
        {"id": "welcome", "kind": "event", "event": "signup", "points": 1000, "limit": "once"},
    ]
}
# Points earned on 2 March 2026 (Seoul) are valid through 2 March 2027, local time.
EXPIRY = "2027-03-02T15:00:00+00:00"


@pytest.fixture
def shop(db: Database, frozen: datetime) -> dict[str, int]:
    """The bakery (stores mapo and yeonnam, a signup gift); kim and lee enrolled, newcomer in
    no program yet."""
    with db.unit_of_work() as session:
        prog = make_program(
            session,
            now=frozen,
            stores=("mapo", "yeonnam"),
            redemption={"min_points": 10, "step": 10, "max_share": "1"},
        )
        publishing.publish(session, prog, rules.validate_doc(RULES), actor=CLI, now=frozen)
        return {
            "kim": make_member(session, now=frozen, program=prog).id,
            "lee": make_member(session, now=frozen, program=prog).id,
            "newcomer": make_member(session, now=frozen).id,
        }


def _sale(ext: str, member_id: int, amount: str, **fields: Any) -> PurchaseRequest:
    return PurchaseRequest.model_validate(
        {"external_id": ext, "member": {"id": member_id}, "amount": amount, **fields}
    )


def _events(db: Database, *kinds: str) -> list[DomainEvent]:
    with db.unit_of_work(readonly=True) as session:
        stmt = select(DomainEvent).order_by(DomainEvent.id)
        if kinds:
            stmt = stmt.where(DomainEvent.kind.in_(kinds))
        rows = list(session.scalars(stmt))
        session.expunge_all()
        return rows


def _count(db: Database, model: type[Any]) -> int:
    with db.unit_of_work(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _reported(db: Database, entry_id: int) -> DomainEvent:
    """The one event of `entry_id`, checked against the entry it reports."""
    with db.unit_of_work(readonly=True) as session:
        found = list(session.scalars(select(DomainEvent).where(DomainEvent.entry_id == entry_id)))
        assert len(found) == 1, found
        event = found[0]
        entry = session.get(Entry, entry_id)
        assert entry is not None
        account = session.get(Account, entry.account_id)
        prog = session.get(Program, entry.program_id)
        assert account is not None and prog is not None
        assert event.kind == ENTRY_EVENTS[entry.kind]
        assert (event.program_id, event.member_id) == (entry.program_id, account.member_id)
        assert event.at == entry.created_at
        assert event.dispatched is False
        assert event.payload["entry_id"] == entry.id
        assert event.payload["entry_kind"] == entry.kind
        assert event.payload["points"] == entry.points
        assert event.payload["program"] == prog.code
        assert event.payload["member_id"] == account.member_id
        assert event.payload["occurred_at"] == iso_utc(entry.occurred_at)
        assert event.payload["reason"] == entry.reason
        assert event.payload["order"] == entry.external_ref
        assert event.payload["channel"] == entry.channel
        session.expunge_all()
        return event


def _assert_check(db: Database) -> None:
    with db.unit_of_work(readonly=True) as session:
        report = run_check(session)
    assert report.ok, report.violations


# --- enrolment -------------------------------------------------------------------------------


def test_joining_a_program_writes_member_enrolled_with_ids_only(db, shop, frozen):
    enrolled = _events(db, "member.enrolled")
    assert [(e.member_id, e.payload) for e in enrolled] == [
        (shop["kim"], {"program": "bakery", "member_id": shop["kim"]}),
        (shop["lee"], {"program": "bakery", "member_id": shop["lee"]}),
    ]
    assert all(e.at == frozen and e.entry_id is None for e in enrolled)
    # A first sale opens the newcomer's account: they join, once; later sales add nothing.
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        buy(session, prog, shop["newcomer"], 13000, ext="N-1", now=frozen)
        buy(session, prog, shop["newcomer"], 13000, ext="N-2", now=frozen)
    enrolled = _events(db, "member.enrolled")
    assert [e.member_id for e in enrolled] == [shop["kim"], shop["lee"], shop["newcomer"]]
    _assert_check(db)


# --- each writer -----------------------------------------------------------------------------


def test_an_earn_writes_its_event_with_its_entry(db, shop, frozen):
    with db.unit_of_work() as session:
        answer = purchases.purchase_by_code(
            session,
            "bakery",
            _sale("S-1", shop["kim"], "13000", store="yeonnam", channel="online"),
            actor=CLI,
            now=frozen,
        )
    [entry] = answer["entries"]
    event = _reported(db, entry["id"])
    assert event.payload == {
        "program": "bakery",
        "member_id": shop["kim"],
        "entry_id": entry["id"],
        "entry_kind": "earn",
        "points": 130,
        "occurred_at": "2026-03-02T03:00:00+00:00",
        "reason": "purchase S-1",
        "order": "S-1",
        "store": "yeonnam",
        "channel": "online",
        "expires_at": EXPIRY,
    }
    assert event.kind == "points.earned" and event.member_id == shop["kim"]
    # A sale that earns nothing has no entry, so no event.
    with db.unit_of_work() as session:
        zero = purchases.purchase_by_code(
            session, "bakery", _sale("S-0", shop["kim"], "500"), actor=CLI, now=frozen
        )
    assert zero["entries"] == []
    assert len(_events(db, "points.earned")) == 1
    _assert_check(db)


def test_a_sale_that_spends_reports_spending_and_earning(db, shop, frozen):
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        adjust(session, prog, shop["kim"], 2000, now=frozen)
        answer = buy(session, prog, shop["kim"], 20000, ext="SPEND", spend=1000, now=frozen)
    redeem, earn = answer["entries"]
    spent = _reported(db, redeem["id"])
    assert spent.kind == "points.redeemed"
    assert spent.payload["points"] == -1000
    assert spent.payload["order"] == "SPEND"
    assert spent.payload["store"] is None
    assert spent.payload["expires_at"] is None
    earned = _reported(db, earn["id"])
    assert (earned.kind, earned.payload["points"]) == ("points.earned", earn["points"])
    assert earned.payload["expires_at"] == EXPIRY
    assert spent.id < earned.id  # in the order the entries were written
    _assert_check(db)


def test_a_batch_writes_one_event_per_earning_sale(db, shop, frozen):
    sales = [
        _sale("B-1", shop["kim"], "13000", store="mapo"),
        _sale("B-2", shop["lee"], "25800"),
        _sale("B-3", shop["kim"], "500"),  # earns nothing: no entry, no event
        _sale("B-4", shop["lee"], "1000", store="nowhere"),  # refused: nothing written
        _sale("B-5", shop["newcomer"], "5000"),  # first sale: the account opens (enrolment)
        _sale("B-6", shop["kim"], "9000", store="yeonnam"),
    ]
    first = batch.ingest(db, "bakery", sales, actor=CLI, now=frozen, chunk_size=4)
    assert (first.created, first.errors) == (5, 1)
    with db.unit_of_work(readonly=True) as session:
        earns = session.execute(
            select(Entry.id, Entry.external_ref).where(Entry.kind == "earn").order_by(Entry.id)
        ).all()
    assert [order for _id, order in earns] == ["B-1", "B-2", "B-5", "B-6"]
    stores = [_reported(db, entry_id).payload["store"] for entry_id, _order in earns]
    assert stores == ["mapo", None, None, "yeonnam"]
    assert [e.entry_id for e in _events(db, "points.earned")] == [i for i, _o in earns]
    assert _events(db, "member.enrolled")[-1].member_id == shop["newcomer"]
    # The same batch again is replayed: no new event.
    events_before = _count(db, DomainEvent)
    again = batch.ingest(db, "bakery", sales, actor=CLI, now=frozen, chunk_size=2)
    assert again.replayed == 5
    assert _count(db, DomainEvent) == events_before
    _assert_check(db)


def test_a_refund_reports_the_points_taken_back_and_given_back(db, shop, frozen):
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        adjust(session, prog, shop["kim"], 2000, now=frozen)
        sale = buy(session, prog, shop["kim"], 20000, ext="R-1", spend=1000, now=frozen)
        answer = refund(session, prog, "R-1", refund_id="r1", full=True, now=frozen)
    assert len(answer["entries"]) == 2
    for entry in answer["entries"]:
        event = _reported(db, entry["id"])
        assert event.kind == "points.refunded"
        assert event.payload["order"] == "R-1"
        assert event.payload["entry_kind"] == "reverse"
        assert event.payload["expires_at"] is None
    # The points spent come back; the points earned go.
    assert sorted(e["points"] for e in answer["entries"]) == [-sale["points_earned"], 1000]
    _assert_check(db)


def test_adjustments_report_their_reason_and_the_new_lots_expiry(db, shop, frozen):
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        added = adjust(session, prog, shop["lee"], 500, now=frozen)
        taken = adjust(session, prog, shop["lee"], -200, now=frozen)
    plus, minus = _reported(db, added.entry.id), _reported(db, taken.entry.id)
    assert (plus.kind, plus.payload["points"], plus.payload["reason"]) == (
        "points.adjusted",
        500,
        "test adjustment",
    )
    assert plus.payload["expires_at"] == EXPIRY
    assert (minus.payload["points"], minus.payload["expires_at"]) == (-200, None)
    _assert_check(db)


def test_a_custom_event_reports_its_points(db, shop, frozen):
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        out = rule_events.record_event(
            session,
            prog,
            EventRequest(
                member=MemberRef(id=shop["newcomer"]), event="signup", store="mapo", channel="app"
            ),
            actor=CLI,
            now=frozen,
        )
    event = _reported(db, out.entry.id)
    assert (event.kind, event.member_id) == ("points.earned", shop["newcomer"])
    assert event.payload["points"] == 1000
    assert event.payload["reason"] == "event signup"
    assert (event.payload["store"], event.payload["channel"], event.payload["order"]) == (
        "mapo",
        "app",
        None,
    )
    assert event.payload["expires_at"] == EXPIRY
    # The event opened the newcomer's account: they joined the program too.
    assert _events(db, "member.enrolled")[-1].member_id == shop["newcomer"]
    _assert_check(db)


def test_the_expiry_job_reports_each_expired_lot_as_the_orm_would(db, shop, frozen):
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        buy(session, prog, shop["kim"], 13000, ext="E-1", now=frozen)
        buy(session, prog, shop["kim"], 25800, ext="E-2", now=frozen + timedelta(days=40))
        buy(session, prog, shop["lee"], 9000, ext="E-3", now=frozen)
        buy(session, prog, shop["newcomer"], 7000, ext="E-4", now=frozen)
    later = frozen + timedelta(days=420)
    # lee's lot expires through the ORM (a sale settles it first), the others through the job.
    with db.unit_of_work() as session:
        buy(session, program(session, "bakery"), shop["lee"], 1000, ext="E-5", now=later)
    report = run_expiry(db, later, batch_size=2)
    assert report.lots == 3
    with db.unit_of_work(readonly=True) as session:
        expired = list(
            session.scalars(select(Entry).where(Entry.kind == "expire").order_by(Entry.id))
        )
        members = {
            e.id: session.scalar(select(Account.member_id).where(Account.id == e.account_id))
            for e in expired
        }
        session.expunge_all()
    assert len(expired) == 4
    by_job = [e for e in expired if e.actor == "system" and members[e.id] != shop["lee"]]
    assert len(by_job) == 3
    for entry in expired:
        event = _reported(db, entry.id)
        assert event.kind == "points.expired"
        assert event.at == later
        # The job's payload is built by the database; it must equal the Python one.
        assert event.payload == entry_payload(
            program="bakery",
            member_id=members[entry.id],
            entry_id=entry.id,
            entry_kind="expire",
            points=entry.points,
            occurred_at=entry.occurred_at,
            reason="points expired",
        )
    kim_first = next(e for e in expired if members[e.id] == shop["kim"])
    assert _reported(db, kim_first.id).payload["occurred_at"] == EXPIRY
    assert _reported(db, kim_first.id).payload["points"] == -130
    # Nothing left to expire: a second run writes no event.
    events_before = _count(db, DomainEvent)
    assert run_expiry(db, later).lots == 0
    assert _count(db, DomainEvent) == events_before
    _assert_check(db)


def test_the_sql_payload_equals_the_python_payload_for_every_entry(db, shop, frozen):
    """entry_payload_sql over the stored rows gives what the writers stored, for every kind of
    entry, with microseconds and offsets other than UTC in the instants."""
    odd = frozen + timedelta(days=1, microseconds=123456)
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        adjust(session, prog, shop["kim"], 2000, now=odd)
        buy(session, prog, shop["kim"], 20000, ext="Q-1", spend=1000, now=odd)
        buy(
            session,
            prog,
            shop["lee"],
            13000,
            ext="Q-2",
            now=odd,
            # Sent with Seoul's offset; reported in UTC.
            occurred_at=datetime(2026, 3, 3, 1, 30, 0, 500, tzinfo=UTC).astimezone(
                ZoneInfo("Asia/Seoul")
            ),
        )
        refund(session, prog, "Q-1", refund_id="q", amount=Decimal(5000), now=odd)
    run_expiry(db, frozen + timedelta(days=420))
    with db.unit_of_work(readonly=True) as session:
        dialect = session.get_bind().dialect.name
        credit = (Entry.kind.in_(["earn", "adjust"])) & (Entry.points > 0)
        built = entry_payload_sql(
            dialect,
            program=Program.code,
            member_id=Account.member_id,
            entry_id=Entry.id,
            entry_kind=Entry.kind,
            points=Entry.points,
            occurred_at=Entry.occurred_at,
            reason=Entry.reason,
            order=Entry.external_ref,
            store=Store.code,
            channel=Entry.channel,
            expires_at=case((credit, Lot.expires_at)),
        )
        rows = session.execute(
            select(Entry.id, built, DomainEvent.payload)
            .join(Account, Account.id == Entry.account_id)
            .join(Program, Program.id == Entry.program_id)
            .outerjoin(Store, Store.id == Entry.store_id)
            .outerjoin(Lot, Lot.id == Entry.lot_id)
            .join(DomainEvent, DomainEvent.entry_id == Entry.id)
            .order_by(Entry.id)
        ).all()
    kinds = set()
    for entry_id, from_sql, stored in rows:
        from_sql = from_sql if isinstance(from_sql, dict) else json.loads(from_sql)
        assert from_sql == stored, entry_id
        kinds.add(stored["entry_kind"])
    assert kinds == {"earn", "redeem", "reverse", "adjust", "expire"}
    assert any(".123456+00:00" in r[2]["occurred_at"] for r in rows)
    assert any(r[2]["occurred_at"] == "2026-03-03T01:30:00.000500+00:00" for r in rows)


# --- what must not write an event --------------------------------------------------------------


def test_a_refused_sale_writes_no_event(db, shop, frozen):
    events_before = _count(db, DomainEvent)
    with pytest.raises(InsufficientPoints), db.unit_of_work() as session:
        buy(
            session,
            program(session, "bakery"),
            shop["kim"],
            20000,
            ext="X-1",
            spend=5000,
            now=frozen,
        )
    with pytest.raises(PatronError), db.unit_of_work() as session:
        purchases.purchase_by_code(
            session,
            "bakery",
            _sale("X-2", shop["kim"], "1000", store="nowhere"),
            actor=CLI,
            now=frozen,
        )
    assert _count(db, DomainEvent) == events_before
    assert _count(db, Entry) == 0


def test_a_sale_rolled_back_after_its_write_leaves_no_event(db, shop, frozen):
    events_before = _count(db, DomainEvent)
    with pytest.raises(RuntimeError), db.unit_of_work() as session:
        answer = purchases.purchase_by_code(
            session, "bakery", _sale("X-3", shop["kim"], "13000"), actor=CLI, now=frozen
        )
        entry_id = answer["entries"][0]["id"]
        # Written, in this transaction …
        assert (
            session.scalar(
                select(func.count())
                .select_from(DomainEvent)
                .where(DomainEvent.entry_id == entry_id)
            )
            == 1
        )
        raise RuntimeError("the till lost power before the commit")
    # … and gone with it.
    assert _count(db, DomainEvent) == events_before
    assert _count(db, Entry) == 0
    # The same order sent again is recorded once, with its one event.
    with db.unit_of_work() as session:
        answer = purchases.purchase_by_code(
            session, "bakery", _sale("X-3", shop["kim"], "13000"), actor=CLI, now=frozen
        )
    _reported(db, answer["entries"][0]["id"])


def test_a_replayed_sale_writes_no_second_event(db, shop, frozen):
    sale = _sale("X-4", shop["kim"], "13000")
    answers = []
    for _ in range(3):
        with db.unit_of_work() as session:
            answers.append(
                purchases.purchase_by_code(session, "bakery", sale, actor=CLI, now=frozen)
            )
    assert answers[0] == answers[1] == answers[2]
    assert len(_events(db, "points.earned")) == 1
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        refund(session, prog, "X-4", refund_id="r", full=True, now=frozen)
        refund(session, prog, "X-4", refund_id="r", full=True, now=frozen)
    assert len(_events(db, "points.refunded")) == 1
    _assert_check(db)


# --- patron check -----------------------------------------------------------------------------


@pytest.fixture
def history(db: Database, shop: dict[str, int], frozen: datetime) -> Database:
    with db.unit_of_work() as session:
        prog = program(session, "bakery")
        adjust(session, prog, shop["kim"], 2000, now=frozen)
        buy(session, prog, shop["kim"], 20000, ext="H-1", spend=1000, now=frozen)
        refund(session, prog, "H-1", refund_id="h", full=True, now=frozen)
        buy(session, prog, shop["lee"], 13000, ext="H-2", now=frozen)
    run_expiry(db, frozen + timedelta(days=420))
    _assert_check(db)
    return db


NO_EVENT = "entry without exactly one outbox event"
WRONG_EVENT = "points event for no entry, or not matching its entry"
TAMPERING = [
    (
        "DELETE FROM domain_events WHERE id = "
        "(SELECT max(id) FROM domain_events WHERE kind = 'points.expired')",
        [NO_EVENT],
    ),
    (
        "INSERT INTO domain_events (program_id, member_id, entry_id, kind, payload, at, dispatched)"
        " SELECT program_id, member_id, entry_id, kind, payload, at, dispatched FROM domain_events"
        " WHERE id = (SELECT min(id) FROM domain_events WHERE kind = 'points.earned')",
        [NO_EVENT],
    ),
    (
        "UPDATE domain_events SET entry_id = entry_id + 1000 WHERE id = "
        "(SELECT min(id) FROM domain_events WHERE kind = 'points.redeemed')",
        [NO_EVENT, WRONG_EVENT],
    ),
    (
        "UPDATE domain_events SET kind = 'points.adjusted' WHERE id = "
        "(SELECT min(id) FROM domain_events WHERE kind = 'points.earned')",
        [WRONG_EVENT],
    ),
    (
        "UPDATE domain_events SET member_id = member_id + 1 WHERE id = "
        "(SELECT min(id) FROM domain_events WHERE kind = 'points.refunded')",
        [WRONG_EVENT],
    ),
]


@pytest.mark.parametrize(("sql", "labels"), TAMPERING, ids=[str(i) for i in range(len(TAMPERING))])
def test_check_finds_a_missing_extra_or_wrong_event(history, sql, labels):
    db = history
    with db.engine.begin() as conn:
        assert conn.execute(text(sql)).rowcount == 1
    with db.unit_of_work(readonly=True) as session:
        report = run_check(session)
    assert not report.ok
    for label in labels:
        assert any(label in v for v in report.violations), report.violations


def test_check_ignores_events_that_report_no_entry(history):
    """member.enrolled, tier.changed and the reminder jobs' events name no entry."""
    db = history
    assert _events(db, "member.enrolled")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO domain_events (program_id, member_id, kind, payload, at, dispatched)"
                " SELECT program_id, member_id, 'points.expiring', payload, at, dispatched"
                " FROM domain_events WHERE kind = 'member.enrolled'"
            )
        )
    _assert_check(db)
