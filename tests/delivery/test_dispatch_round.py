"""A dispatch round reads its events as rows and marks them with one UPDATE (decision 0032):
the deliveries are those of the ORM-loaded events before, the oldest events go first and a
round takes at most its limit."""

from __future__ import annotations

import json

from sqlalchemy import event, select

from patron.delivery import dispatch
from patron.events.models import Delivery, DomainEvent
from tests.delivery.test_runner import _emit, _members


def test_a_round_marks_its_events_with_one_update_and_fans_each_out(
    db, client, pos, endpoint, settings, frozen
):
    members = _members(client, pos, 2)
    dispatch.dispatch_pending(db, now=frozen, settings=settings)  # the enrollment events
    ids = _emit(db, members, 3, at=frozen)
    updates: list[tuple[str, bool]] = []

    def seen(_conn, _cursor, statement, _params, _context, executemany):
        if statement.lstrip().upper().startswith("UPDATE DOMAIN_EVENTS"):
            updates.append((statement, executemany))

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        first = dispatch.dispatch_pending(db, now=frozen, settings=settings, limit=4)
        second = dispatch.dispatch_pending(db, now=frozen, settings=settings)
        third = dispatch.dispatch_pending(db, now=frozen, settings=settings)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert (first.events, second.events, third.events) == (4, 2, 0)
    assert (first.webhooks, second.webhooks) == (4, 2)
    # one statement a round, not one per event (nor an executemany of them)
    assert len(updates) == 2 and not any(many for _s, many in updates)
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(DomainEvent.id).where(DomainEvent.dispatched.is_(False))) is None
        rows = s.execute(
            select(
                Delivery.event_id,
                Delivery.member_id,
                Delivery.body,
                Delivery.channel,
                Delivery.status,
                Delivery.queue_key,
            )
            .where(Delivery.event_id.in_(ids), Delivery.channel == "webhook")
            .order_by(Delivery.id)
        ).all()
    # oldest first: the first round took the first four events (each also has the member's
    # message: points.adjusted sends one)
    assert [r.event_id for r in rows] == ids
    for row, event_id in zip(rows, ids, strict=True):
        body = json.loads(row.body)
        assert body["id"] == f"evt_{event_id}" and body["type"] == "points.adjusted"
        assert body["program"] == "bakery" and body["data"]["member_id"] == row.member_id
        assert row.channel == "webhook" and row.status == "pending"
        assert row.queue_key == f"webhook:{endpoint['id']}:{row.member_id}"


def test_a_round_reads_its_members_in_one_query_not_one_per_message(
    db, client, pos, bakery, settings, frozen
):
    """points.adjusted sends each member a message: a round of 12 events for 6 members reads
    the members once (it read one member per event, most of a round's time under earn load)."""
    members = _members(client, pos, 6)
    dispatch.dispatch_pending(db, now=frozen, settings=settings)  # the enrollment events
    _emit(db, members, 2, at=frozen)
    member_reads: list[str] = []

    def seen(_conn, _cursor, statement, _params, _context, _executemany):
        if "FROM members" in statement:
            member_reads.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        done = dispatch.dispatch_pending(db, now=frozen, settings=settings)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert done.events == 12 and done.messages + done.skipped == 12
    assert len(member_reads) == 1, member_reads
    with db.unit_of_work(readonly=True) as s:
        got = s.execute(
            select(Delivery.member_id).where(Delivery.channel != "webhook", Delivery.event_id > 0)
        ).all()
    assert sorted({m for (m,) in got}) >= sorted(members)
