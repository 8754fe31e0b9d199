"""The outbox as a feed over HTTP: filters, cursor pages, scopes, clear errors."""

from __future__ import annotations

from datetime import timedelta

from patron.events import outbox
from tests.conftest import auth
from tests.factories import make_member, make_program


def _events(db, frozen):
    with db.unit_of_work() as s:
        program = make_program(s, now=frozen)
        a = make_member(s, now=frozen, program=program)
        b = make_member(s, now=frozen, program=program)
        for i in range(5):
            outbox.emit(
                s,
                kind="points.adjusted" if i % 2 else "points.expiring",
                program_id=program.id,
                member_id=(a if i < 3 else b).id,
                payload={"points": i},
                at=frozen + timedelta(minutes=i),
            )
        return a.id, b.id


def test_events_feed_filters_and_pages(client, keys, db, frozen):
    a, b = _events(db, frozen)
    reader = auth(keys["read"])
    base = "/api/v1/programs/bakery/events"
    everything = client.get(base, headers=reader).json()
    mine = [e for e in everything["items"] if e["type"] in ("points.adjusted", "points.expiring")]
    assert [e["data"]["points"] for e in mine] == [0, 1, 2, 3, 4]
    assert all(e["id"].startswith("evt_") for e in mine)
    first = client.get(base, params={"limit": 2, "type": "points.expiring"}, headers=reader).json()
    assert [e["data"]["points"] for e in first["items"]] == [0, 2]
    rest = client.get(
        base,
        params={"limit": 2, "type": "points.expiring", "cursor": first["next_cursor"]},
        headers=reader,
    ).json()
    assert [e["data"]["points"] for e in rest["items"]] == [4] and rest["next_cursor"] is None
    of_b = client.get(base, params={"member_id": b, "type": "points.adjusted"}, headers=reader)
    assert [e["data"]["points"] for e in of_b.json()["items"]] == [3]
    since = (frozen + timedelta(minutes=3)).isoformat()
    late = client.get(base, params={"since": since, "type": "points.adjusted"}, headers=reader)
    assert [e["data"]["points"] for e in late.json()["items"]] == [3]
    assert a != b


def test_events_feed_errors(client, keys, db, frozen):
    _events(db, frozen)
    reader, pos = auth(keys["read"]), auth(keys["pos"])
    base = "/api/v1/programs/bakery/events"
    assert client.get(base, params={"type": "points.nope"}, headers=reader).json()["error"] == (
        "unknown_event_type"
    )
    assert client.get(base, params={"cursor": "zzz"}, headers=reader).status_code == 422
    assert (
        client.get(base, params={"since": "2026-01-01T00:00:00"}, headers=reader).status_code == 422
    )
    assert client.get(base, headers=pos).status_code == 403
    assert client.get(base).status_code == 401
    assert client.get("/api/v1/programs/nope/events", headers=reader).status_code == 404
    deliveries = "/api/v1/programs/bakery/deliveries"
    admin = auth(keys["admin"])
    assert client.get(deliveries, headers=reader).status_code == 403  # addresses, URLs: admin only
    assert client.get(deliveries, params={"status": "lost"}, headers=admin).status_code == 422
    assert client.get(deliveries + "/999", headers=admin).status_code == 404
    assert client.post(deliveries + "/999/replay", headers=admin).status_code == 404
    assert client.post(deliveries + "/999/replay", headers=reader).status_code == 403
