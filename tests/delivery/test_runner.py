"""The delivery runner against a real loopback HTTP receiver: signed, ordered per member,
retried with backoff after an outage, dead-lettered, replayed, redelivered after a lost lease,
and shared by concurrent runners without sending anything twice."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import standardwebhooks
from sqlalchemy import select

from patron import clock
from patron.delivery import dispatch, runner
from patron.delivery.worker import DeliveryLoop
from patron.events import outbox
from patron.events.models import Delivery, DeliveryAttempt, DomainEvent
from patron.programs.models import Program
from tests.api.helpers import enroll


def _emit(db, member_ids, per_member, *, at):
    ids = []
    with db.unit_of_work() as s:
        program_id = s.scalar(select(Program.id).where(Program.code == "bakery"))
        for n in range(per_member):
            for m in member_ids:
                ev = outbox.emit(
                    s,
                    kind="points.adjusted",
                    program_id=program_id,
                    member_id=m,
                    payload={"program": "bakery", "member_id": m, "n": n},
                    at=at,
                )
                s.flush()
                ids.append(ev.id)
    return ids


def _members(client, pos, n):
    return [enroll(client, pos, name=f"M{i}", program="bakery")["id"] for i in range(n)]


def _received(receiver):
    return [(r.headers["webhook-id"], json.loads(r.body)) for r in receiver.requests]


def test_events_arrive_signed_once_each_in_order(
    db, client, pos, endpoint, http_receiver, settings
):
    # the real clock: an integrator's verification refuses timestamps more than 5 minutes off
    members = _members(client, pos, 2)
    loop = DeliveryLoop(db, settings=settings, jobs=False)
    loop.drain()  # the enrollment events
    http_receiver.requests.clear()
    ids = _emit(db, members, 3, at=clock.now())
    loop.drain()
    got = _received(http_receiver)
    assert sorted(i for i, _ in got) == sorted(f"evt_{i}" for i in ids)
    hook = standardwebhooks.Webhook(endpoint["secret"])
    for r in http_receiver.requests:
        body = hook.verify(r.body, {k.lower(): v for k, v in r.headers.items()})
        assert body["type"] == "points.adjusted" and body["program"] == "bakery"
    for m in members:
        seq = [b["data"]["n"] for _i, b in got if b["data"]["member_id"] == m]
        assert seq == [0, 1, 2]
    with db.unit_of_work(readonly=True) as s:
        assert set(s.scalars(select(Delivery.status).where(Delivery.channel == "webhook"))) == {
            "delivered"
        }
        assert s.scalar(select(DomainEvent.id).where(DomainEvent.dispatched.is_(False))) is None


def test_an_outage_is_retried_with_backoff_and_order_is_kept(
    db, client, pos, endpoint, http_receiver, settings, frozen
):
    members = _members(client, pos, 2)
    loop = DeliveryLoop(db, settings=settings, jobs=False)
    loop.drain()
    http_receiver.requests.clear()
    ids = _emit(db, members, 3, at=frozen)
    http_receiver.fail_next(2)  # the first two calls (one per member's first event) fail
    loop.drain()
    assert len(http_receiver.requests) == 2  # only each member's head was tried
    with db.unit_of_work(readonly=True) as s:
        heads = s.scalars(select(Delivery).where(Delivery.status == "retry")).all()
        assert len(heads) == 2
        for d in heads:
            wait = (d.next_attempt_at - frozen).total_seconds()
            assert 5 <= wait <= 10  # backoff 10 s with jitter over its upper half
    loop.drain()  # nothing is due yet: nothing sent
    assert len(http_receiver.requests) == 2
    clock.freeze(frozen + timedelta(seconds=11))
    loop.drain()
    got = _received(http_receiver)
    assert len(got) == 2 + len(ids)
    for m in members:
        seq = [b["data"]["n"] for _i, b in got[2:] if b["data"]["member_id"] == m]
        assert seq == [0, 1, 2]
    with db.unit_of_work(readonly=True) as s:
        tries = s.scalars(
            select(DeliveryAttempt.status_code)
            .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
            .where(Delivery.event_id.in_(ids), Delivery.channel == "webhook")
        ).all()
        assert tries.count(500) == 2 and tries.count(200) == len(ids)


def test_dead_letter_then_replay(db, client, pos, endpoint, http_receiver, settings, frozen, admin):
    (member,) = _members(client, pos, 1)
    loop = DeliveryLoop(db, settings=settings, jobs=False)
    loop.drain()
    http_receiver.requests.clear()
    (event_id,) = _emit(db, [member], 1, at=frozen)
    http_receiver.answer((400, "bad payload"))  # not retryable: dead at once
    loop.drain()
    with db.unit_of_work(readonly=True) as s:
        d = s.scalars(
            select(Delivery).where(Delivery.event_id == event_id, Delivery.channel == "webhook")
        ).one()
        assert d.status == "dead" and d.last_status_code == 400 and d.attempts == 1
        dead_id = d.id
    http_receiver.answer((200, "ok"))
    r = client.post(f"/api/v1/programs/bakery/deliveries/{dead_id}/replay", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "pending"
    again = client.post(f"/api/v1/programs/bakery/deliveries/{dead_id}/cancel", headers=admin)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    client.post(f"/api/v1/programs/bakery/deliveries/{dead_id}/replay", headers=admin)
    loop.drain()
    listed = client.get(
        "/api/v1/programs/bakery/deliveries", params={"member_id": member}, headers=admin
    ).json()["items"]
    mine = next(i for i in listed if i["id"] == dead_id)
    assert mine["status"] == "delivered"
    assert [a["status_code"] for a in mine["log"]] == [400, 200]
    refused = client.post(f"/api/v1/programs/bakery/deliveries/{dead_id}/cancel", headers=admin)
    assert refused.status_code == 409 and refused.json()["error"] == "delivery_not_cancellable"


def test_tries_run_out_into_a_dead_letter(
    db, client, pos, endpoint, http_receiver, settings, frozen
):
    (member,) = _members(client, pos, 1)
    loop = DeliveryLoop(db, settings=settings, jobs=False)
    loop.drain()
    http_receiver.requests.clear()
    _emit(db, [member], 2, at=frozen)
    http_receiver.answer((503, "down"))
    now = frozen
    for _ in range(settings.delivery_max_attempts):
        loop.drain()
        now += timedelta(seconds=settings.delivery_backoff_max_seconds + 1)
        clock.freeze(now)
    with db.unit_of_work(readonly=True) as s:
        first, second = s.scalars(
            select(Delivery)
            .where(Delivery.member_id == member, Delivery.channel == "webhook")
            .order_by(Delivery.id)
        ).all()[-2:]
        assert first.status == "dead" and first.attempts == settings.delivery_max_attempts
        # the dead letter no longer holds the member's next event back
        assert second.attempts >= 1


def test_a_lost_lease_is_sent_again(db, client, pos, endpoint, http_receiver, settings, frozen):
    (member,) = _members(client, pos, 1)
    DeliveryLoop(db, settings=settings, jobs=False).drain()
    http_receiver.requests.clear()
    (event_id,) = _emit(db, [member], 1, at=frozen)
    dispatch.dispatch_pending(db, now=frozen, settings=settings)
    claimed = runner.claim(db, now=frozen, settings=settings)
    assert len(claimed) == 1  # ... and the runner dies here, before sending
    assert runner.claim(db, now=frozen, settings=settings) == []  # leased: nobody else takes it
    clock.freeze(frozen + timedelta(seconds=settings.delivery_lease_seconds + 1))
    DeliveryLoop(db, settings=settings, jobs=False).drain()
    assert [r.headers["webhook-id"] for r in http_receiver.requests] == [f"evt_{event_id}"]


def test_concurrent_runners_send_each_delivery_once(
    db, client, pos, endpoint, http_receiver, settings, frozen
):
    members = _members(client, pos, 6)
    DeliveryLoop(db, settings=settings, jobs=False).drain()
    http_receiver.requests.clear()
    ids = _emit(db, members, 5, at=frozen)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            DeliveryLoop(db, settings=settings, jobs=False).drain(rounds=200)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    DeliveryLoop(db, settings=settings, jobs=False).drain()
    got = [r.headers["webhook-id"] for r in http_receiver.requests]
    assert sorted(got) == sorted(f"evt_{i}" for i in ids)  # each once, none lost
    for m in members:
        seq = [
            json.loads(r.body)["data"]["n"]
            for r in http_receiver.requests
            if json.loads(r.body)["data"]["member_id"] == m
        ]
        assert seq == [0, 1, 2, 3, 4]
