"""Marketing consent: recorded with who, when, channel and how; withdrawn by the unsubscribe link
(signed, per member) and by an SMS STOP reply; over the API with scopes and clear errors."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from patron import clock
from patron.audit.service import CLI
from patron.members import consent
from patron.members.models import ConsentRecord, Member
from tests.conftest import auth
from tests.factories import make_member, make_program


@pytest.fixture
def member(db, frozen):
    with db.unit_of_work() as s:
        program = make_program(s, now=frozen)
        m = make_member(
            s,
            now=frozen,
            program=program,
            name="김민지",
            email="minji@example.com",
            phone="010-1234-5678",
            language="ko",
            marketing_consent=True,
        )
        return m.id


def test_enrollment_consent_applies_until_a_record_says_otherwise(db, member, frozen):
    with db.unit_of_work() as s:
        m = s.get(Member, member)
        assert consent.current_all(s, m) == {"email": True, "sms": True}
        consent.change(s, m, ["sms"], granted=False, source="admin", actor=CLI, now=frozen)
        assert consent.current_all(s, m) == {"email": True, "sms": False}
        assert m.marketing_consent is True  # e-mail still granted
        consent.change(s, m, ["email"], granted=False, source="api", actor=CLI, now=frozen)
        assert m.marketing_consent is False
        rows = consent.history(s, member)  # newest first, after the enrollment's pair
        assert [(r.channel, r.granted, r.source) for r in rows] == [
            ("email", False, "api"),
            ("sms", False, "admin"),
            ("sms", True, "enrollment"),
            ("email", True, "enrollment"),
        ]


def test_consent_api_records_and_lists_history(client, keys, db, member):
    pos, reader = auth(keys["pos"]), auth(keys["read"])
    r = client.post(
        f"/api/v1/members/{member}/consents",
        json={"granted": False, "channels": ["email"], "note": "asked at the till"},
        headers=pos,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["consent"] == {"email": False, "sms": True}
    assert body["history"][0]["note"] == "asked at the till"
    assert body["history"][0]["actor"].startswith("api_key:")
    got = client.get(f"/api/v1/members/{member}/consents", headers=reader).json()
    assert got == body
    # a read key cannot change consent; bad input is a clear 4xx
    assert (
        client.post(
            f"/api/v1/members/{member}/consents", json={"granted": True}, headers=reader
        ).status_code
        == 403
    )
    bad = client.post(
        f"/api/v1/members/{member}/consents",
        json={"granted": True, "channels": ["fax"]},
        headers=pos,
    )
    assert bad.status_code == 422 and bad.json()["error"] == "validation_error"
    twice = client.post(
        f"/api/v1/members/{member}/consents",
        json={"granted": True, "channels": ["sms", "sms"]},
        headers=pos,
    )
    assert twice.status_code == 422
    missing = client.get("/api/v1/members/999999/consents", headers=reader)
    assert missing.status_code == 404


def test_unsubscribe_link_asks_then_withdraws_email_consent(client, db, member, frozen):
    with db.unit_of_work() as s:
        token = consent.unsubscribe_token(s, member, "email", now=frozen)
    page = client.get(f"/u/{token}")
    assert page.status_code == 200
    assert "minji@example.com" in page.text and "수신 거부" in page.text  # her language
    with db.unit_of_work(readonly=True) as s:
        assert consent.current(s, s.get(Member, member), "email") is True  # GET changes nothing
    done = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "완료" in done.text
    with db.unit_of_work(readonly=True) as s:
        m = s.get(Member, member)
        assert consent.current(s, m, "email") is False
        assert consent.current(s, m, "sms") is True
        assert consent.history(s, member)[0].source == "unsubscribe_link"
    # again: nothing new recorded
    client.post(f"/u/{token}")
    with db.unit_of_work(readonly=True) as s:
        assert len(consent.history(s, member)) == 3  # the enrollment's two, the link's one


@pytest.mark.parametrize(
    "token",
    [
        "1.email.AAAAAAAAAAAAAAAAAAAAAA",
        "1.fax.abc",
        "x.email.abc",
        "1.email.",
        "garbage",
        "1.email.short",
    ],
)
def test_forged_or_broken_unsubscribe_links_are_refused(client, db, member, token):
    # a tag made for member 1 does not work for another member either
    assert client.get(f"/u/{token}").status_code == 404
    assert client.post(f"/u/{token}").status_code == 404


def test_a_tag_for_one_member_does_not_unsubscribe_another(client, db, member, frozen):
    with db.unit_of_work() as s:
        program = s.get(Member, member)
        other = make_member(s, now=frozen, email="other@example.com", marketing_consent=True)
        token = consent.unsubscribe_token(s, member, "email", now=frozen)
        other_id = other.id
        assert program is not None
    forged = f"{other_id}." + token.split(".", 1)[1]
    assert client.post(f"/u/{forged}").status_code == 404
    with db.unit_of_work(readonly=True) as s:
        assert consent.current(s, s.get(Member, other_id), "email") is True


@pytest.mark.parametrize("word", ["STOP", " stop ", "수신거부", "退订", "TD"])
def test_sms_stop_reply_withdraws_sms_consent(client, keys, db, member, word):
    pos = auth(keys["pos"])
    r = client.post(
        "/api/v1/programs/bakery/sms/replies",
        json={"from": "+82 10-1234-5678", "body": word},
        headers=pos,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"action": "unsubscribed", "member_id": member}
    with db.unit_of_work(readonly=True) as s:
        m = s.get(Member, member)
        assert consent.current_all(s, m) == {"email": True, "sms": False}
        assert consent.history(s, member)[0].source == "sms_keyword"


def test_sms_replies_that_are_not_stop_words_change_nothing(client, keys, db, member):
    pos = auth(keys["pos"])
    for body, sender in (
        ("thanks!", "010-1234-5678"),
        ("STOP", "010-9999-0000"),
        ("STOP", "not a phone"),
    ):
        r = client.post(
            "/api/v1/programs/bakery/sms/replies", json={"from": sender, "body": body}, headers=pos
        )
        assert r.status_code == 200 and r.json()["action"] == "ignored"
    with db.unit_of_work(readonly=True) as s:
        assert {r.source for r in consent.history(s, member)} == {"enrollment"}
    assert client.post(
        "/api/v1/programs/nope/sms/replies", json={"from": "010", "body": "x"}, headers=pos
    ).status_code in (404, 422)
    assert clock.now() is not None


def test_the_profile_flag_writes_consent_history(client, keys, db, frozen):
    """Enrolling with consent and PATCHing the flag both leave records (how and when), and the
    flag wins over an older per-channel withdrawal."""
    headers = auth(keys["admin"])
    with db.unit_of_work() as session:
        make_program(session, now=frozen)
    made = client.post(
        "/api/v1/members",
        params={"program": "bakery"},
        json={"name": "Flag", "email": "flag@example.com", "marketing_consent": True},
        headers=headers,
    )
    assert made.status_code == 201, made.text
    member_id = made.json()["id"]

    def records() -> list[tuple[str, bool, str]]:
        with db.unit_of_work(readonly=True) as session:
            rows = session.scalars(
                select(ConsentRecord)
                .where(ConsentRecord.member_id == member_id)
                .order_by(ConsentRecord.id)
            )
            return [(r.channel, r.granted, r.source) for r in rows]

    assert records() == [("email", True, "enrollment"), ("sms", True, "enrollment")]
    off = client.patch(
        f"/api/v1/members/{member_id}", json={"marketing_consent": False}, headers=headers
    )
    assert off.status_code == 200, off.text
    assert off.json()["marketing_consent"] is False
    assert records()[2:] == [("email", False, "api"), ("sms", False, "api")]
    # Saying the same again writes nothing new.
    client.patch(f"/api/v1/members/{member_id}", json={"marketing_consent": False}, headers=headers)
    assert len(records()) == 4
    on = client.patch(
        f"/api/v1/members/{member_id}", json={"marketing_consent": True}, headers=headers
    )
    assert on.json()["marketing_consent"] is True
    with db.unit_of_work(readonly=True) as session:
        member = session.get(Member, member_id)
        assert member is not None
        assert consent.current_all(session, member) == {"email": True, "sms": True}
    bad = client.patch(
        f"/api/v1/members/{member_id}", json={"marketing_consent": None}, headers=headers
    )
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_marketing_consent"
