"""Members over HTTP: phone spellings, duplicates, look-ups, lists, blocking and history."""

from __future__ import annotations

import pytest

from tests.api.helpers import enroll
from tests.factories import SHANGHAI


@pytest.fixture
def kim(client, pos, bakery):
    return enroll(
        client,
        pos,
        name="Kim Minji",
        phone="010-1234-5678",
        email="Kim@Example.com",
        cards=[{"number": "CARD-0001"}],
    )


def test_enroll_returns_the_member(client, kim, frozen):
    assert kim["name"] == "Kim Minji"
    assert kim["phone"] == "+821012345678"
    assert kim["email"] == "kim@example.com"
    assert kim["programs"] == ["bakery"]
    assert kim["status"] == "active"
    assert kim["language"] == "en"
    assert [(c["number"], c["kind"], c["status"]) for c in kim["cards"]] == [
        ("CARD-0001", "physical", "active")
    ]


@pytest.mark.parametrize(
    "spelling",
    ["010-1234-5678", "01012345678", "+82 10-1234-5678", "+821012345678", "(010) 1234 5678"],
)
def test_every_spelling_of_a_phone_finds_the_member(client, pos, kim, spelling):
    response = client.get("/api/v1/members/lookup", params={"phone": spelling}, headers=pos)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == kim["id"]


@pytest.mark.parametrize("spelling", ["01012345678", "+82 10-1234-5678"])
def test_the_same_phone_spelled_differently_is_a_duplicate(client, pos, kim, spelling):
    response = client.post("/api/v1/members", json={"name": "Lee", "phone": spelling}, headers=pos)
    assert response.status_code == 409
    assert response.json() == {
        "error": "duplicate_phone",
        "detail": f"phone +821012345678 belongs to member {kim['id']}",
    }


def test_duplicate_email_is_409_case_insensitive(client, pos, kim):
    response = client.post(
        "/api/v1/members", json={"name": "Lee", "email": "KIM@example.COM"}, headers=pos
    )
    assert response.status_code == 409
    assert response.json()["error"] == "duplicate_email"


def test_duplicate_card_is_409_and_nothing_is_created(client, pos, reader, kim):
    response = client.post(
        "/api/v1/members",
        headers=pos,
        json={"name": "Lee", "phone": "010-9999-0000", "cards": [{"number": "CARD-0001"}]},
    )
    assert response.status_code == 409
    assert response.json() == {
        "error": "duplicate_card",
        "detail": f"card CARD-0001 is already issued to member {kim['id']}",
    }
    # The whole request rolled back: the phone is still free.
    listed = client.get("/api/v1/members", params={"phone": "01099990000"}, headers=reader)
    assert listed.json() == {"items": [], "next_cursor": None}

    added = client.post(
        f"/api/v1/members/{kim['id']}/cards", json={"number": "CARD-0001"}, headers=pos
    )
    assert added.status_code == 409
    assert added.json()["error"] == "duplicate_card"


def test_same_card_twice_in_one_request_is_422(client, pos, bakery):
    response = client.post(
        "/api/v1/members",
        headers=pos,
        json={"name": "Lee", "cards": [{"number": "C-1111"}, {"number": "C-1111"}]},
    )
    assert response.status_code == 422
    assert response.json()["error"] == "duplicate_card"


@pytest.mark.parametrize("phone", ["12345", "010-1234", "not a phone", "+1 000 000 0000"])
def test_invalid_phone_is_422(client, pos, bakery, phone):
    response = client.post("/api/v1/members", json={"name": "Lee", "phone": phone}, headers=pos)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_phone"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": ""}, "name"),
        ({"name": "Lee", "email": "not-an-email"}, "email"),
        ({"name": "Lee", "birthday": "1990-02-30"}, "birthday"),
        ({"name": "Lee", "gender": "robot"}, "gender"),
        ({"name": "Lee", "cards": [{"number": "a b"}]}, "cards.0.number"),
        ({"name": "Lee", "nickname": "L"}, "nickname"),
    ],
)
def test_invalid_member_fields_are_named(client, pos, bakery, body, field):
    response = client.post("/api/v1/members", json=body, headers=pos)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert response.json()["detail"].startswith(f"{field}: "), response.json()["detail"]


def test_enroll_in_unknown_program_is_404(client, pos, bakery):
    response = client.post("/api/v1/members", json={"name": "Lee", "program": "ghost"}, headers=pos)
    assert response.status_code == 404
    assert response.json()["error"] == "program_not_found"


def test_lookup_by_card_and_id(client, pos, kim):
    by_card = client.get("/api/v1/members/lookup", params={"card": "CARD-0001"}, headers=pos)
    assert by_card.status_code == 200
    assert by_card.json() == kim
    by_id = client.get("/api/v1/members/lookup", params={"id": kim["id"]}, headers=pos)
    assert by_id.json() == kim
    assert client.get(f"/api/v1/members/{kim['id']}", headers=pos).json() == kim
    by_email = client.get(
        "/api/v1/members/lookup", params={"email": " KIM@example.com"}, headers=pos
    )
    assert by_email.json() == kim


def test_lookup_misses_and_bad_queries(client, pos, admin, kim):
    missing = client.get("/api/v1/members/lookup", params={"card": "NOPE-1"}, headers=pos)
    assert missing.status_code == 404
    assert missing.json() == {"error": "member_not_found", "detail": "no member has card 'NOPE-1'"}
    for params in ({}, {"card": "CARD-0001", "phone": "01012345678"}):
        response = client.get("/api/v1/members/lookup", params=params, headers=pos)
        assert response.status_code == 422
        assert response.json() == {
            "error": "invalid_lookup",
            "detail": "give exactly one of card, phone, email or id",
        }
    assert client.get("/api/v1/members/999", headers=pos).json()["error"] == "member_not_found"

    lost = client.patch("/api/v1/cards/CARD-0001", json={"status": "lost"}, headers=admin)
    assert lost.status_code == 200 and lost.json()["status"] == "lost"
    response = client.get("/api/v1/members/lookup", params={"card": "CARD-0001"}, headers=pos)
    assert response.status_code == 409
    assert response.json() == {"error": "card_not_active", "detail": "card CARD-0001 is lost"}


def test_list_filters(client, pos, reader, admin, bakery):
    client.post("/api/v1/programs", json=SHANGHAI, headers=admin)
    a = enroll(
        client,
        pos,
        name="Park Jisoo",
        phone="010-1111-2222",
        email="park@example.com",
        cards=[{"number": "P-0001"}],
    )
    b = enroll(client, pos, name="Jisoo Lee", email="lee@example.com")
    c = enroll(client, pos, name="Wang Fang", program="shanghai")
    client.post(f"/api/v1/members/{b['id']}/block", json={"reason": "chargeback"}, headers=admin)

    def ids(**params):
        response = client.get("/api/v1/members", params=params, headers=reader)
        assert response.status_code == 200, response.text
        return [m["id"] for m in response.json()["items"]]

    assert ids() == [a["id"], b["id"], c["id"]]
    assert ids(program="bakery") == [a["id"], b["id"]]
    assert ids(program="shanghai") == [c["id"]]
    assert ids(q="jisoo") == [a["id"], b["id"]]
    assert ids(q="JISOO", status="active") == [a["id"]]
    assert ids(status="blocked") == [b["id"]]
    assert ids(phone="+82 10 1111 2222") == [a["id"]]
    assert ids(email="LEE@example.com") == [b["id"]]
    assert ids(card="P-0001") == [a["id"]]
    assert ids(q="%") == []  # LIKE wildcards are literal
    assert ids(q="nobody") == []


def test_cursor_pagination_walks_every_member_once(client, pos, reader, bakery):
    made = [enroll(client, pos, name=f"Member {n:02d}")["id"] for n in range(11)]
    seen: list[int] = []
    pages = 0
    cursor = None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/members", params=params, headers=reader).json()
        pages += 1
        assert len(page["items"]) <= 4
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == made
    assert len(set(seen)) == 11


def test_exact_page_boundary_has_no_empty_last_page(client, pos, reader, bakery):
    for n in range(4):
        enroll(client, pos, name=f"M{n}")
    page = client.get("/api/v1/members", params={"limit": 4}, headers=reader).json()
    assert len(page["items"]) == 4
    assert page["next_cursor"] is None


def test_bad_cursor_is_422(client, reader, bakery):
    response = client.get("/api/v1/members", params={"cursor": "!!!"}, headers=reader)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_cursor"


def test_blocked_member_cannot_buy_until_unblocked(client, pos, admin, kim):
    blocked = client.post(
        f"/api/v1/members/{kim['id']}/block", json={"reason": "fraud review"}, headers=admin
    )
    assert blocked.status_code == 200
    assert blocked.json()["status"] == "blocked"
    sale = {"external_id": "B-1", "member": {"card": "CARD-0001"}, "amount": 10000}
    response = client.post("/api/v1/programs/bakery/purchases", json=sale, headers=pos)
    assert response.status_code == 409
    assert response.json() == {
        "error": "member_blocked",
        "detail": f"member {kim['id']} is blocked and cannot earn or redeem",
    }
    quote = client.post(
        "/api/v1/programs/bakery/quote",
        headers=pos,
        json={"member": {"card": "CARD-0001"}, "amount": 10000},
    )
    assert quote.status_code == 409 and quote.json()["error"] == "member_blocked"

    unblocked = client.post(
        f"/api/v1/members/{kim['id']}/unblock", json={"reason": "cleared"}, headers=admin
    )
    assert unblocked.json()["status"] == "active"
    response = client.post("/api/v1/programs/bakery/purchases", json=sale, headers=pos)
    assert response.status_code == 201
    assert response.json()["points_earned"] == 100


def test_block_needs_a_reason(client, admin, kim):
    response = client.post(f"/api/v1/members/{kim['id']}/block", json={}, headers=admin)
    assert response.status_code == 422
    assert response.json() == {"error": "validation_error", "detail": "reason: Field required"}


def test_changes_history_shows_before_and_after(client, admin, reader, kim, frozen):
    response = client.patch(
        f"/api/v1/members/{kim['id']}",
        headers=admin,
        json={
            "name": "Kim Min-ji",
            "phone": "+82 10 5555 6666",
            "email": "minji@example.com",
            "language": "ko",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["phone"] == "+821055556666"
    client.post(f"/api/v1/members/{kim['id']}/block", json={"reason": "lost wallet"}, headers=admin)

    changes = client.get(f"/api/v1/members/{kim['id']}/changes", headers=reader).json()
    assert [c["action"] for c in changes] == [
        "member.blocked",
        "member.updated",
        "member.enrolled",
        "member.created",
    ]
    blocked, updated = changes[0], changes[1]
    assert updated["before"] == {
        "name": "Kim Minji",
        "phone": "+821012345678",
        "email": "kim@example.com",
        "language": "en",
    }
    assert updated["after"] == {
        "name": "Kim Min-ji",
        "phone": "+821055556666",
        "email": "minji@example.com",
        "language": "ko",
    }
    assert updated["actor"].startswith("api_key:")
    assert updated["at"] == "2026-03-02T03:00:00Z"
    assert blocked["before"] == {"status": "active"}
    assert blocked["after"] == {"status": "blocked", "reason": "lost wallet"}


def test_update_to_someone_elses_phone_is_409(client, pos, admin, kim):
    lee = enroll(client, pos, name="Lee", phone="010-2222-3333")
    response = client.patch(
        f"/api/v1/members/{lee['id']}", json={"phone": "01012345678"}, headers=admin
    )
    assert response.status_code == 409
    assert response.json()["error"] == "duplicate_phone"
    # Setting one's own number again is not a conflict.
    same = client.patch(
        f"/api/v1/members/{kim['id']}", json={"phone": "010 1234 5678"}, headers=admin
    )
    assert same.status_code == 200


def test_null_language_is_422_not_500(client, admin, kim):
    response = client.patch(f"/api/v1/members/{kim['id']}", json={"language": None}, headers=admin)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_language"


def test_second_enrollment_and_already_enrolled(client, pos, admin, kim):
    client.post("/api/v1/programs", json=SHANGHAI, headers=admin)
    url = f"/api/v1/members/{kim['id']}/programs"
    response = client.post(url, json={"program": "shanghai"}, headers=pos)
    assert response.status_code == 201
    assert response.json()["programs"] == ["bakery", "shanghai"]
    again = client.post(url, json={"program": "bakery"}, headers=pos)
    assert again.status_code == 409
    assert again.json() == {
        "error": "already_enrolled",
        "detail": f"member {kim['id']} is already in program bakery",
    }


def test_idempotent_member_creation(client, pos, reader, bakery):
    headers = {**pos, "Idempotency-Key": "enroll-42"}
    body = {"name": "Choi", "phone": "010-4242-4242", "program": "bakery"}
    first = client.post("/api/v1/members", json=body, headers=headers)
    again = client.post("/api/v1/members", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    changed = client.post("/api/v1/members", json={**body, "name": "Choi B"}, headers=headers)
    assert changed.status_code == 409
    assert changed.json()["error"] == "idempotency_conflict"
    assert len(client.get("/api/v1/members", headers=reader).json()["items"]) == 1
