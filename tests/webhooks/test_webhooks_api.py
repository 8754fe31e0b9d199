"""Webhook endpoints through the HTTP API and the service, on SQLite and PostgreSQL: register,
list (no secrets), change, rotate (both secrets verify meanwhile), remove, scopes, bad input,
which endpoints an event goes to, the delivery log and replay."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook, WebhookVerificationError

from patron import clock
from patron.audit.models import AuditRecord
from patron.audit.service import CLI
from patron.config import get_settings
from patron.errors import Conflict
from patron.events.models import Delivery, DeliveryAttempt, DomainEvent
from patron.events.outbox import emit
from patron.programs.service import get_program
from patron.webhooks import sender, service
from patron.webhooks.models import WebhookEndpoint
from tests.conftest import auth
from tests.factories import BAKERY, SHANGHAI, make_program
from tests.support.http_receiver import Receiver, start_receiver

BASE = "/api/v1/programs/bakery/webhooks"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on loopback (tests.support.http_receiver)."""
    got, server = start_receiver()
    yield got
    server.shutdown()
    server.server_close()


@pytest.fixture
def admin(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["admin"])


@pytest.fixture
def pos(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["pos"])


@pytest.fixture
def reader(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["read"])


@pytest.fixture
def bakery(client, admin) -> dict[str, Any]:
    response = client.post("/api/v1/programs", json=BAKERY, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The loopback receiver is a private address: allow it, as a developer would."""
    monkeypatch.setenv("PATRON_WEBHOOK_ALLOW_PRIVATE", "true")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def refuse_private(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("PATRON_WEBHOOK_ALLOW_PRIVATE", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def create(client, headers, url: str, event_types=("points.earned",), **extra) -> dict[str, Any]:
    response = client.post(
        BASE, json={"url": url, "event_types": list(event_types), **extra}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()


def stored(db, endpoint_id: int) -> WebhookEndpoint:
    with db.unit_of_work(readonly=True) as s:
        row = s.get(WebhookEndpoint, endpoint_id)
        assert row is not None
        s.expunge(row)
        return row


def signed_post(db, endpoint_id: int, receiver, *, kind="points.earned", event_id=1):
    """Post one event's body the way the delivery runner does, and return what arrived."""
    event = DomainEvent(
        id=event_id,
        program_id=1,
        member_id=7,
        kind=kind,
        payload={"points": 258, "member_id": 7},
        at=datetime.now(UTC),
    )
    body = service.event_body(event, "bakery")
    result = sender.post(
        stored(db, endpoint_id),
        message_id=f"evt_{event_id}",
        body=body,
        now=datetime.now(UTC),
        settings=get_settings(),
    )
    assert result.ok, result
    return receiver.requests[-1]


def audit_rows(db, prefix: str) -> list[AuditRecord]:
    with db.unit_of_work(readonly=True) as s:
        stmt = select(AuditRecord).where(AuditRecord.action.startswith(prefix))
        rows = list(s.scalars(stmt.order_by(AuditRecord.id)))
        s.expunge_all()
        return rows


# --- create, list, get --------------------------------------------------------------------


def test_create_returns_the_secret_once_and_a_real_post_verifies_with_it(
    db, client, admin, bakery, allow_private, receiver
):
    made = create(
        client,
        admin,
        receiver.url + "/crm",
        ["points.earned", "tier.changed"],
        description="CRM sync",
    )
    secret = made["secret"]
    assert secret.startswith("whsec_")
    assert made["secret_hint"] == secret[:10] + "…"
    assert made["event_types"] == ["points.earned", "tier.changed"]
    assert made["active"] is True and made["description"] == "CRM sync"
    assert made["url"] == receiver.url + "/crm"

    got = signed_post(db, made["id"], receiver)
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload["id"] == "evt_1" and payload["type"] == "points.earned"
    assert payload["program"] == "bakery" and payload["data"]["points"] == 258

    listed = client.get(BASE, headers=admin)
    assert listed.status_code == 200
    (item,) = listed.json()
    assert "secret" not in item and secret not in listed.text
    assert item["secret_hint"] == made["secret_hint"]
    one = client.get(f"{BASE}/{made['id']}", headers=admin)
    assert one.status_code == 200 and secret not in one.text

    # Audited, without the secret.
    (created,) = audit_rows(db, "webhooks.created")
    assert created.subject_id == str(made["id"]) and created.actor.startswith("api_key")
    assert secret not in json.dumps(created.after)
    assert created.after["secret"] == made["secret_hint"]


def test_event_types_are_checked_and_star_means_all(db, client, admin, bakery, allow_private):
    unknown = client.post(
        BASE, json={"url": "http://127.0.0.1:9/", "event_types": ["points.earnd"]}, headers=admin
    )
    assert (unknown.status_code, unknown.json()["error"]) == (422, "unknown_event_type")
    empty = client.post(BASE, json={"url": "http://127.0.0.1:9/", "event_types": []}, headers=admin)
    assert empty.status_code == 422
    star = create(client, admin, "http://127.0.0.1:9/", ["points.earned", "*", "points.earned"])
    assert star["event_types"] == ["*"]
    twice = create(client, admin, "http://127.0.0.1:9/", ["tier.changed", "tier.changed"])
    assert twice["event_types"] == ["tier.changed"]
    assert audit_rows(db, "webhooks.created")[0].after["event_types"] == ["*"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.0.0.8/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "ftp://example.com/",
        "http://user:pw@93.184.216.34/",
        "https:///nohost",
    ],
)
def test_ssrf_targets_are_refused_by_the_api(db, client, admin, bakery, refuse_private, url):
    response = client.post(BASE, json={"url": url, "event_types": ["*"]}, headers=admin)
    assert (response.status_code, response.json()["error"]) == (422, "invalid_url")
    with db.unit_of_work(readonly=True) as s:
        assert s.scalars(select(WebhookEndpoint)).first() is None


def test_a_public_address_is_accepted_with_the_checks_on(client, admin, bakery, refuse_private):
    made = create(client, admin, "https://93.184.216.34/hooks", ["*"])
    assert made["url"] == "https://93.184.216.34/hooks"


def test_unknown_program_and_endpoint_are_404(client, admin, bakery, allow_private):
    missing = client.get("/api/v1/programs/nope/webhooks", headers=admin)
    assert (missing.status_code, missing.json()["error"]) == (404, "program_not_found")
    none = client.get(f"{BASE}/999", headers=admin)
    assert (none.status_code, none.json()["error"]) == (404, "webhook_not_found")


def test_an_endpoint_of_another_program_is_not_found(db, client, admin, bakery, allow_private):
    assert client.post("/api/v1/programs", json=SHANGHAI, headers=admin).status_code == 201
    theirs = client.post(
        "/api/v1/programs/shanghai/webhooks",
        json={"url": "http://127.0.0.1:9/", "event_types": ["*"]},
        headers=admin,
    ).json()
    assert client.get(f"{BASE}/{theirs['id']}", headers=admin).status_code == 404
    assert client.delete(f"{BASE}/{theirs['id']}", headers=admin).status_code == 404
    assert client.get(BASE, headers=admin).json() == []


# --- scopes ---------------------------------------------------------------------------------


def test_only_admin_keys_reach_webhooks(client, admin, pos, reader, bakery, allow_private):
    made = create(client, admin, "http://127.0.0.1:9/", ["*"])
    calls = [
        ("post", BASE, {"url": "http://127.0.0.1:9/", "event_types": ["*"]}),
        ("get", BASE, None),
        ("get", f"{BASE}/{made['id']}", None),
        ("patch", f"{BASE}/{made['id']}", {"active": False}),
        ("delete", f"{BASE}/{made['id']}", None),
        ("post", f"{BASE}/{made['id']}/rotate-secret", {}),
        ("post", f"{BASE}/{made['id']}/test", None),
        ("get", f"{BASE}/{made['id']}/deliveries", None),
    ]
    for headers in (pos, reader):
        for method, path, body in calls:
            kwargs = {"json": body} if body is not None else {}
            response = client.request(method.upper(), path, headers=headers, **kwargs)
            assert (response.status_code, response.json()["error"]) == (403, "missing_scope"), (
                method,
                path,
            )
    assert client.get(BASE).status_code == 401
    # Still there and unchanged.
    assert client.get(f"{BASE}/{made['id']}", headers=admin).json()["active"] is True


# --- change, rotate, delete -----------------------------------------------------------------


def test_patch_changes_only_what_is_given_and_is_audited(db, client, admin, bakery, allow_private):
    made = create(client, admin, "http://127.0.0.1:9/a", ["points.earned"], description="one")
    changed = client.patch(
        f"{BASE}/{made['id']}",
        json={"event_types": ["tier.changed"], "active": False},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["event_types"] == ["tier.changed"] and body["active"] is False
    assert body["url"] == "http://127.0.0.1:9/a" and body["description"] == "one"
    (row,) = audit_rows(db, "webhooks.updated")
    assert row.before == {"event_types": ["points.earned"], "active": True}
    assert row.after == {"event_types": ["tier.changed"], "active": False}

    bad = client.patch(f"{BASE}/{made['id']}", json={"url": "gopher://x/"}, headers=admin)
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_url")
    unknown = client.patch(f"{BASE}/{made['id']}", json={"event_types": ["x.y"]}, headers=admin)
    assert (unknown.status_code, unknown.json()["error"]) == (422, "unknown_event_type")
    extra = client.patch(f"{BASE}/{made['id']}", json={"secret": "whsec_x"}, headers=admin)
    assert extra.status_code == 422
    # Nothing more was written by the refused calls, and a no-op is not audited.
    assert client.patch(f"{BASE}/{made['id']}", json={}, headers=admin).status_code == 200
    assert len(audit_rows(db, "webhooks.updated")) == 1


def test_rotation_signs_with_both_secrets_until_the_grace_period_ends(
    db, client, admin, bakery, allow_private, receiver
):
    made = create(client, admin, receiver.url, ["*"])
    old = made["secret"]
    rotated = client.post(
        f"{BASE}/{made['id']}/rotate-secret", json={"keep_previous_hours": 24}, headers=admin
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    until = datetime.fromisoformat(rotated.json()["previous_secret_until"])
    assert timedelta(hours=23, minutes=59) < until - datetime.now(UTC) <= timedelta(hours=24)

    got = signed_post(db, made["id"], receiver, event_id=5)
    assert Webhook(new).verify(got.body, got.headers)["id"] == "evt_5"
    assert Webhook(old).verify(got.body, got.headers)["id"] == "evt_5"

    # The list shows the new hint; the audit record holds hints only.
    assert client.get(BASE, headers=admin).json()[0]["secret_hint"] == new[:10] + "…"
    (row,) = audit_rows(db, "webhooks.secret_rotated")
    assert old not in json.dumps([row.before, row.after]) and new not in json.dumps(row.after)

    # Rotating with no grace period: the previous secret stops signing at once.
    again = client.post(
        f"{BASE}/{made['id']}/rotate-secret", json={"keep_previous_hours": 0}, headers=admin
    ).json()
    assert again["previous_secret_until"] is None
    got = signed_post(db, made["id"], receiver, event_id=6)
    Webhook(again["secret"]).verify(got.body, got.headers)
    for stale in (new, old):
        with pytest.raises(WebhookVerificationError):
            Webhook(stale).verify(got.body, got.headers)


def test_rotation_without_a_body_keeps_the_previous_secret_a_day(
    client, admin, bakery, allow_private
):
    made = create(client, admin, "http://127.0.0.1:9/", ["*"])
    rotated = client.post(f"{BASE}/{made['id']}/rotate-secret", headers=admin)
    assert rotated.status_code == 200 and rotated.json()["previous_secret_until"] is not None
    too_long = client.post(
        f"{BASE}/{made['id']}/rotate-secret", json={"keep_previous_hours": 1000}, headers=admin
    )
    assert too_long.status_code == 422


def test_delete_keeps_the_log_and_cancels_what_still_waits(
    db, client, admin, bakery, allow_private
):
    made = create(client, admin, "http://127.0.0.1:9/", ["*"])
    now = clock.now()
    with db.unit_of_work() as s:
        for status in ("delivered", "pending", "retry", "dead"):
            s.add(_delivery(made["id"], status=status, now=now))
    deleted = client.delete(f"{BASE}/{made['id']}", headers=admin)
    assert deleted.status_code == 204
    assert client.get(f"{BASE}/{made['id']}", headers=admin).status_code == 404
    with db.unit_of_work(readonly=True) as s:
        statuses = [d.status for d in s.scalars(select(Delivery).order_by(Delivery.id))]
    assert statuses == ["delivered", "cancelled", "cancelled", "dead"]
    (row,) = audit_rows(db, "webhooks.deleted")
    assert row.after == {"cancelled_deliveries": 2} and row.before["url"] == made["url"]


# --- matching and the body ------------------------------------------------------------------


def test_matching_finds_active_endpoints_that_want_the_kind(
    db, client, admin, bakery, allow_private
):
    earned = create(client, admin, "http://127.0.0.1:9/earned", ["points.earned"])
    everything = create(client, admin, "http://127.0.0.1:9/all", ["*"])
    paused = create(client, admin, "http://127.0.0.1:9/paused", ["points.earned"])
    client.patch(f"{BASE}/{paused['id']}", json={"active": False}, headers=admin)
    assert client.post("/api/v1/programs", json=SHANGHAI, headers=admin).status_code == 201
    client.post(
        "/api/v1/programs/shanghai/webhooks",
        json={"url": "http://127.0.0.1:9/other", "event_types": ["*"]},
        headers=admin,
    )
    with db.unit_of_work(readonly=True) as s:
        program_id = get_program(s, "bakery").id
        assert [e.id for e in service.matching(s, program_id, "points.earned")] == [
            earned["id"],
            everything["id"],
        ]
        assert [e.id for e in service.matching(s, program_id, "tier.changed")] == [everything["id"]]


def test_the_event_body_has_the_documented_shape(db, frozen):
    with db.unit_of_work() as s:
        event = emit(
            s,
            kind="tier.changed",
            program_id=1,
            member_id=3,
            payload={"from": "basic", "to": "silver", "name": "김민지"},
            at=frozen,
        )
        s.flush()
        body = service.event_body(event, "bakery")
        event_id = event.id
    assert json.loads(body) == {
        "id": f"evt_{event_id}",
        "type": "tier.changed",
        "timestamp": "2026-03-02T03:00:00Z",
        "program": "bakery",
        "data": {"from": "basic", "to": "silver", "name": "김민지"},
    }
    assert "김민지" in body  # UTF-8, not \\u escapes


# --- the delivery log and replay ------------------------------------------------------------


def _delivery(endpoint_id: int, *, status: str, now: datetime, attempts: int = 0) -> Delivery:
    return Delivery(
        event_id=None,
        program_id=1,
        member_id=None,
        event_kind="points.earned",
        channel="webhook",
        endpoint_id=endpoint_id,
        queue_key=f"webhook:{endpoint_id}:1",
        recipient="http://127.0.0.1:9/",
        body="{}",
        status=status,
        attempts=attempts,
        next_attempt_at=now,
        created_at=now,
    )


def test_the_log_is_newest_first_paginated_and_carries_every_try(
    db, client, admin, bakery, allow_private
):
    made = create(client, admin, "http://127.0.0.1:9/", ["*"])
    other = create(client, admin, "http://127.0.0.1:9/other", ["*"])
    now = clock.now()
    with db.unit_of_work() as s:
        ids = []
        for n in range(5):
            d = _delivery(made["id"], status="dead" if n == 1 else "delivered", now=now, attempts=2)
            s.add(d)
            s.flush()
            ids.append(d.id)
            s.add(
                DeliveryAttempt(
                    delivery_id=d.id,
                    at=now,
                    ok=False,
                    status_code=500,
                    duration_ms=31,
                    error="answered 500",
                    response="down",
                )
            )
            s.add(
                DeliveryAttempt(
                    delivery_id=d.id,
                    at=now + timedelta(seconds=10),
                    ok=n != 1,
                    status_code=200 if n != 1 else 503,
                    duration_ms=12,
                    error=None,
                    response="ok",
                )
            )
        s.add(_delivery(other["id"], status="delivered", now=now))
    first = client.get(f"{BASE}/{made['id']}/deliveries?limit=3", headers=admin)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [d["id"] for d in page["items"]] == ids[::-1][:3]
    assert page["next_cursor"]
    tries = page["items"][0]["log"]
    assert [(a["status_code"], a["duration_ms"], a["error"]) for a in tries] == [
        (500, 31, "answered 500"),
        (200, 12, None),
    ]
    rest = client.get(
        f"{BASE}/{made['id']}/deliveries",
        params={"limit": 3, "cursor": page["next_cursor"]},
        headers=admin,
    ).json()
    assert [d["id"] for d in rest["items"]] == ids[::-1][3:] and rest["next_cursor"] is None
    dead = client.get(f"{BASE}/{made['id']}/deliveries?status=dead", headers=admin).json()
    assert [d["id"] for d in dead["items"]] == [ids[1]]
    bad = client.get(f"{BASE}/{made['id']}/deliveries?cursor=bm9wZQ==", headers=admin)
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_cursor")


def test_replay_sends_a_dead_delivery_again_and_keeps_its_log(db, frozen):
    """replay_delivery is the delivery log's replay (patron.events.service.replay) for a
    delivery known by id alone: pending, due now, its tries still in the log."""
    with db.unit_of_work() as s:
        program = make_program(s, now=frozen)
        dead = _delivery(1, status="dead", now=frozen - timedelta(hours=3), attempts=8)
        waiting = _delivery(1, status="pending", now=frozen)
        for row in (dead, waiting):
            row.program_id = program.id
        s.add_all([dead, waiting])
        s.flush()
        s.add(
            DeliveryAttempt(
                delivery_id=dead.id,
                at=frozen,
                ok=False,
                status_code=503,
                duration_ms=9,
                error="answered 503",
                response="down",
            )
        )
        dead_id, waiting_id = dead.id, waiting.id
    with db.unit_of_work() as s:
        replayed = service.replay_delivery(s, dead_id, actor=CLI, now=frozen)
        assert (replayed.status, replayed.next_attempt_at) == ("pending", frozen)
    with db.unit_of_work() as s, pytest.raises(Conflict):
        service.replay_delivery(s, waiting_id, actor=CLI, now=frozen)
    with db.unit_of_work() as s, pytest.raises(service.DeliveryNotFound):
        service.replay_delivery(s, 10**9, actor=CLI, now=frozen)
    with db.unit_of_work(readonly=True) as s:
        log = list(s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == dead_id)))
        assert [a.status_code for a in log] == [503]
    (row,) = audit_rows(db, "deliveries.replayed")
    assert row.subject_id == str(dead_id) and row.before["status"] == "dead"
    assert row.actor == "cli"


# --- the test send (patron.delivery.ping, through the runner's deliver_one) -----------------


def test_the_test_send_posts_a_signed_webhook_test_and_reports_the_try(
    db, client, admin, bakery, allow_private, receiver
):
    made = create(client, admin, receiver.url + "/hook", ["points.earned"])
    sent = client.post(f"{BASE}/{made['id']}/test", headers=admin)
    assert sent.status_code == 200, sent.text
    result = sent.json()
    assert result["status"] == "delivered"
    assert result["attempt"]["ok"] is True and result["attempt"]["status_code"] == 200
    assert result["attempt"]["response"] == "ok" and result["attempt"]["duration_ms"] >= 0
    (got,) = receiver.requests
    payload = Webhook(made["secret"]).verify(got.body, got.headers)
    assert payload["type"] == "webhook.test" and payload["program"] == "bakery"
    assert payload["id"] == got.headers["webhook-id"] == f"msg_{result['delivery_id']}"
    assert payload["data"]["endpoint_id"] == made["id"]
    # In the endpoint's log, and audited.
    log = client.get(f"{BASE}/{made['id']}/deliveries", headers=admin).json()["items"]
    assert [(d["id"], d["event_type"], d["status"]) for d in log] == [
        (result["delivery_id"], "webhook.test", "delivered")
    ]
    (row,) = audit_rows(db, "webhooks.test_sent")
    assert row.after == {"delivery_id": result["delivery_id"]}


def test_a_failing_test_send_says_why(db, client, admin, bakery, allow_private, receiver):
    made = create(client, admin, receiver.url, ["*"])
    receiver.answer((500, "boom"), (400, "bad signature"))
    first = client.post(f"{BASE}/{made['id']}/test", headers=admin).json()
    assert first["status"] == "retry"
    assert (first["attempt"]["status_code"], first["attempt"]["error"]) == (500, "answered 500")
    second = client.post(f"{BASE}/{made['id']}/test", headers=admin).json()
    assert second["status"] == "dead"  # a 400 is not worth another try
    assert second["attempt"]["response"] == "bad signature"
    assert len(receiver.requests) == 2


def test_a_paused_endpoint_is_not_test_sent(client, admin, bakery, allow_private, receiver):
    made = create(client, admin, receiver.url, ["*"])
    client.patch(f"{BASE}/{made['id']}", json={"active": False}, headers=admin)
    refused = client.post(f"{BASE}/{made['id']}/test", headers=admin)
    assert (refused.status_code, refused.json()["error"]) == (409, "webhook_inactive")
    assert client.post(f"{BASE}/999/test", headers=admin).status_code == 404
    assert receiver.requests == []
