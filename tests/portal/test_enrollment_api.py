"""The sign-up settings and member invitations over the HTTP API: scopes, validation errors in
the one error shape, the audit rows, and one invitation per member an hour."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from patron.audit.models import AuditRecord
from patron.portal import service
from tests.conftest import auth
from tests.portal.conftest import A_EMAIL

URL = "/api/v1/programs/bakery/enrollment"
GOOD: dict[str, Any] = {
    "enabled": True,
    "fields": {"email": "required", "phone": "optional", "birthday": "off"},
    "verify_with": "email",
    "consents": {"email": True, "sms": False},
    "terms_url": "https://example.com/terms",
}


@pytest.fixture
def sent(monkeypatch) -> list[service.CodeMessage]:
    out: list[service.CodeMessage] = []
    monkeypatch.setattr("patron.portal.enrollment_api.send_code", out.append)
    return out


def invitation_url(member_id: int, program: str = "bakery") -> str:
    return f"/api/v1/programs/{program}/members/{member_id}/invitation"


def test_settings_default_to_off_and_are_saved_and_audited(client, db, keys, portal):
    r = client.get(URL, headers=auth(keys["read"]))
    assert r.status_code == 200 and r.json()["enabled"] is False
    r = client.put(URL, json=GOOD, headers=auth(keys["admin"]))
    assert r.status_code == 200, r.text
    assert r.json() == GOOD
    assert client.get(URL, headers=auth(keys["read"])).json() == GOOD
    assert client.get("/m/bakery/join").status_code == 200
    with db.unit_of_work(readonly=True) as s:
        afters = s.scalars(
            select(AuditRecord.after).where(AuditRecord.action == "program.signup.updated")
        ).all()
    assert len(afters) == 1 and afters[0] is not None and afters[0]["enabled"] is True


def test_settings_need_the_right_scope(client, keys, portal):
    assert client.get(URL).status_code == 401
    assert client.get(URL, headers=auth(keys["pos"])).status_code == 403
    r = client.put(URL, json=GOOD, headers=auth(keys["read"]))
    assert r.status_code == 403 and r.json()["error"] == "missing_scope"
    r = client.get("/api/v1/programs/nowhere/enrollment", headers=auth(keys["read"]))
    assert r.status_code == 404 and r.json()["error"] == "program_not_found"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"fields": {"email": "off", "phone": "off"}}, "e-mail or a phone"),
        ({"fields": {"email": "optional"}}, "must be required"),
        ({"terms_url": "http://example.com"}, "https"),
        ({"terms_url": "javascript:alert(1)"}, "https"),
        ({"fields": {"email": "sometimes"}}, "fields.email"),
        ({"consents": {"push": True}}, "consents.push"),
        ({"verify_with": "fax"}, "verify_with"),
    ],
)
def test_invalid_settings_answer_422_in_the_error_shape(client, keys, portal, change, says):
    r = client.put(URL, json={**GOOD, **change}, headers=auth(keys["admin"]))
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "validation_error" and says in body["detail"]
    assert client.get(URL, headers=auth(keys["read"])).json()["enabled"] is False


def test_an_invitation_goes_once_an_hour_in_her_language(client, db, keys, portal, sent):
    r = client.post(invitation_url(portal.a), headers=auth(keys["pos"]))
    assert r.status_code == 202, r.text
    assert r.json() == {
        "member_id": portal.a,
        "channel": "email",
        "url": "http://127.0.0.1:8000/m/bakery/",
    }
    assert len(sent) == 1 and sent[0].to == A_EMAIL and sent[0].channel == "email"
    assert "http://127.0.0.1:8000/m/bakery/" in sent[0].body and "김민지" in sent[0].body
    assert "회원 페이지" in sent[0].subject  # she reads Korean
    again = client.post(invitation_url(portal.a), headers=auth(keys["pos"]))
    assert again.status_code == 429
    assert again.json()["error"] == "rate_limited" and len(sent) == 1
    # Another member is not held back by the first one's invitation.
    assert client.post(invitation_url(portal.b), headers=auth(keys["pos"])).status_code == 202
    with db.unit_of_work(readonly=True) as s:
        ids = s.scalars(
            select(AuditRecord.subject_id).where(AuditRecord.action == "member.invited")
        ).all()
    assert sorted(int(i) for i in ids) == sorted([portal.a, portal.b])


def test_an_invitation_replayed_with_its_key_sends_nothing_twice(client, keys, portal, sent):
    headers = {**auth(keys["pos"]), "Idempotency-Key": "invite-a-1"}
    first = client.post(invitation_url(portal.a), headers=headers)
    second = client.post(invitation_url(portal.a), headers=headers)
    assert first.status_code == second.status_code == 202
    assert second.headers.get("Idempotent-Replayed") == "true" and len(sent) == 1


def test_invitations_need_pos_and_a_member_of_the_program(client, keys, portal, sent):
    assert client.post(invitation_url(portal.a)).status_code == 401
    r = client.post(invitation_url(portal.a), headers=auth(keys["read"]))
    assert r.status_code == 403
    r = client.post(invitation_url(999_999), headers=auth(keys["pos"]))
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = client.post(invitation_url(portal.a, "nowhere"), headers=auth(keys["pos"]))
    assert r.status_code == 404
    r = client.post(invitation_url(0), headers=auth(keys["pos"]))
    assert r.status_code == 422
    assert sent == []
