"""Non-purchase events over HTTP: limits per member and period, errors, explanations, races."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from patron import clock
from patron.audit.service import CLI
from patron.check import run_check
from patron.db.engine import Database
from patron.earning import events
from patron.errors import Conflict
from patron.ledger.models import Entry
from patron.members.schemas import MemberRef
from patron.programs.service import get_program
from patron.rules import publishing
from patron.rules import service as rules
from patron.rules.events import EventRequest
from patron.rules.models import EventClaim
from tests.api import conftest as api_fixtures
from tests.api.helpers import enroll
from tests.factories import make_member, make_program

# The API tests' fixtures: headers per scope and the bakery program.
admin, pos, reader, bakery = (
    api_fixtures.admin,
    api_fixtures.pos,
    api_fixtures.reader,
    api_fixtures.bakery,
)
P = "/api/v1/programs/bakery"
BASE = {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"}
EVENT_RULES: dict[str, Any] = {
    "rules": [
        BASE,
        {
            "id": "welcome",
            "name": "Welcome gift",
            "kind": "event",
            "event": "signup",
            "points": 1000,
            "limit": "once",
        },
        {
            "id": "birthday",
            "kind": "event",
            "event": "birthday",
            "points": 2000,
            "limit": "per_year",
        },
        {"id": "review", "kind": "event", "event": "review", "points": 100, "limit": "unlimited"},
        {
            "id": "newsletter",
            "kind": "event",
            "event": "newsletter",
            "points": 300,
            "enabled": False,
        },
        {
            "id": "summer-survey",
            "kind": "event",
            "event": "survey",
            "points": 50,
            "ends": "2026-02-28",
        },
    ]
}


@pytest.fixture
def kim(frozen, client, admin, pos, bakery) -> dict[str, Any]:
    response = client.put(f"{P}/rules", json=EVENT_RULES, headers=admin)
    assert response.status_code == 200, response.text
    return enroll(client, pos, name="Kim Minji", phone="010-1234-5678", language="ko")


def event(client, headers, name: str, member: dict[str, Any] | None = None, **extra: Any):
    body = {"member": member or {"phone": "010-1234-5678"}, "event": name, **extra}
    return client.post(f"{P}/events", json=body, headers=headers)


def _error(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


def test_signup_is_credited_once(client, pos, reader, kim):
    first = event(client, pos, "signup", store="mapo")
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["member_id"], body["event"], body["rule"], body["points"], body["period_key"]) == (
        kim["id"],
        "signup",
        "welcome",
        1000,
        "event:signup",
    )
    entry = body["entry"]
    assert (entry["kind"], entry["points"], entry["reason"], entry["store"]) == (
        "earn",
        1000,
        "event signup",
        "mapo",
    )
    assert entry["rule_version"] == 2
    assert [(s["rule"], s["applied"], s["added"]) for s in entry["breakdown"]] == [
        ("welcome", True, 1000)
    ]
    # Expiry by the program's policy: 12 months, to the end of the local day.
    assert entry["details"]["expires_at"] == "2027-03-02T15:00:00+00:00"
    assert body["totals"]["balance"] == 1000 and body["totals"]["earned"] == 1000

    again = event(client, pos, "signup")
    assert _error(again) == (409, "event_limit_reached")
    assert "once" in again.json()["detail"]
    account = client.get(f"{P}/members/{kim['id']}/account", headers=reader).json()
    assert account["totals"]["balance"] == 1000


def test_birthday_is_credited_once_a_year(client, pos, reader, kim):
    clock.freeze(datetime(2026, 5, 10, 3, 0, tzinfo=UTC))
    first = event(client, pos, "birthday")
    assert first.status_code == 201, first.text
    assert first.json()["period_key"] == "event:birthday:2026"
    clock.freeze(datetime(2026, 12, 31, 14, 0, tzinfo=UTC))  # 23:00 on 31 December in Seoul
    assert _error(event(client, pos, "birthday")) == (409, "event_limit_reached")
    clock.freeze(datetime(2026, 12, 31, 15, 0, tzinfo=UTC))  # midnight: 2027 in Seoul
    next_year = event(client, pos, "birthday")
    assert next_year.status_code == 201, next_year.text
    assert next_year.json()["period_key"] == "event:birthday:2027"
    assert next_year.json()["totals"]["balance"] == 4000
    # occurred_at decides the period: a late record of a 2026 birthday is still refused.
    late = event(client, pos, "birthday", occurred_at="2026-06-01T12:00:00+09:00")
    assert _error(late) == (409, "event_limit_reached")


def test_unlimited_events_and_errors(client, admin, pos, reader, kim):
    assert [event(client, pos, "review").status_code for _ in range(3)] == [201, 201, 201]
    assert _error(event(client, pos, "unknown")) == (422, "unknown_event")
    assert _error(event(client, pos, "newsletter")) == (422, "unknown_event")  # disabled rule
    not_now = event(client, pos, "survey")
    assert _error(not_now) == (409, "event_not_eligible")
    assert "ended 2026-02-28" in not_now.json()["detail"]
    assert _error(event(client, pos, "review", store="gangnam")) == (422, "store_not_found")
    assert _error(event(client, pos, "review", occurred_at="2026-03-03T12:00:00+09:00")) == (
        422,
        "occurred_at_in_future",
    )
    assert _error(event(client, pos, "Bad Name!")) == (422, "validation_error")
    assert _error(event(client, pos, "review", occurred_at="2026-03-01T12:00:00")) == (
        422,
        "validation_error",
    )  # not timezone-aware
    assert _error(event(client, pos, "review", member={"phone": "010-9999-9999"})) == (
        404,
        "member_not_found",
    )
    assert event(client, reader, "review").status_code == 403

    blocked = client.post(
        f"/api/v1/members/{kim['id']}/block", json={"reason": "fraud check"}, headers=admin
    )
    assert blocked.status_code == 200, blocked.text
    assert _error(event(client, pos, "signup")) == (409, "member_blocked")
    account = client.get(f"{P}/members/{kim['id']}/account", headers=reader).json()
    assert account["totals"]["balance"] == 300
    assert client.get("/api/v1/check", headers=admin).json()["ok"] is True


def test_an_idempotency_key_replays_the_first_answer(client, pos, kim):
    headers = {**pos, "Idempotency-Key": "review-1"}
    first = event(client, headers, "review")
    again = event(client, headers, "review")
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert again.json()["totals"]["balance"] == 100


def test_an_event_entry_is_explained_in_three_languages(client, pos, reader, kim):
    entry_id = event(client, pos, "signup").json()["entry"]["id"]
    url = f"{P}/entries/{entry_id}/explanation"
    ko = client.get(url, headers=reader).json()  # Kim's language
    assert (ko["language"], ko["kind"], ko["points"], ko["rule_version"]) == ("ko", "earn", 1000, 2)
    assert ko["lines"] == ["Welcome gift: +1,000", "합계: 1,000포인트"]
    en = client.get(url, params={"language": "en"}, headers=reader).json()
    assert en["lines"] == ["Welcome gift: +1,000", "Total: 1,000 points"]
    assert en["text"] == "Welcome gift: +1,000; Total: 1,000 points"
    zh = client.get(url, params={"language": "zh"}, headers=reader).json()
    assert zh["lines"] == ["Welcome gift:+1,000", "合计:1,000 积分"]


@pytest.mark.postgresql_only
def test_concurrent_signups_credit_once(db: Database, frozen):
    """Twenty tills record one member's sign-up at once: the account lock lets one through."""
    with db.unit_of_work() as session:
        program = make_program(session, now=frozen)
        publishing.publish(session, program, rules.validate_doc(EVENT_RULES), actor=CLI, now=frozen)
        member_id = make_member(session, now=frozen, program=program).id
    barrier = threading.Barrier(20, timeout=30)

    def signup() -> Any:
        try:
            with db.unit_of_work() as session:
                return events.record_event(
                    session,
                    get_program(session, "bakery"),
                    EventRequest(member=MemberRef(id=member_id), event="signup"),
                    actor=CLI,
                    now=frozen,
                ).points
        except Conflict as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=20, initializer=barrier.wait) as pool:
        outcomes = list(pool.map(lambda _: signup(), range(20)))
    assert sorted(outcomes, key=str) == [1000] + ["event_limit_reached"] * 19
    with db.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(EventClaim)) == 1
        assert session.scalar(select(func.sum(Entry.points))) == 1000
        assert run_check(session).ok
