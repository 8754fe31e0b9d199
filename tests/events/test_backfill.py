"""Migration 0008: a database whose entries predate the outbox gets one delivered event per
entry, the same payload the writers give, and `patron check` holds afterwards."""

from __future__ import annotations

from alembic import command
from sqlalchemy import delete, select

from patron.check import run_check
from patron.db.migrate import alembic_config, upgrade
from patron.events.models import DomainEvent
from tests.factories import make_member, make_program
from tests.ledger._helpers import adjust, buy, refund


def test_entries_without_events_get_one_each(db, frozen):
    with db.unit_of_work() as session:
        program = make_program(session, now=frozen)
        member = make_member(session, now=frozen, program=program)
        buy(session, program, member.id, 12_000, ext="o-1", now=frozen)
        adjust(session, program, member.id, 2_000, now=frozen)
        buy(session, program, member.id, 5_000, ext="o-2", now=frozen, spend=1_000)
        refund(session, program, "o-2", refund_id="r-1", full=True, now=frozen)
    with db.unit_of_work(readonly=True) as session:
        written = {
            e.entry_id: (e.kind, e.member_id, e.payload)
            for e in session.scalars(select(DomainEvent).where(DomainEvent.entry_id.is_not(None)))
        }
    assert {kind for kind, _m, _p in written.values()} >= {
        "points.earned",
        "points.redeemed",
        "points.refunded",
        "points.adjusted",
    }
    with db.unit_of_work() as session:
        session.execute(delete(DomainEvent).where(DomainEvent.entry_id.is_not(None)))
    with db.unit_of_work(readonly=True) as session:
        assert not run_check(session).ok

    url = db.engine.url.render_as_string(hide_password=False)
    command.downgrade(alembic_config(url), "0007")
    upgrade(url)
    upgrade(url)  # twice: nothing more

    with db.unit_of_work(readonly=True) as session:
        assert run_check(session).ok
        events = list(session.scalars(select(DomainEvent).where(DomainEvent.entry_id.is_not(None))))
        assert all(e.dispatched for e in events)
        backfilled = {e.entry_id: (e.kind, e.member_id, e.payload) for e in events}
    for entry_id, (kind, member_id, payload) in written.items():
        assert backfilled[entry_id] == (kind, member_id, payload), entry_id
    assert backfilled.keys() == written.keys()
