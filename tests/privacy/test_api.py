"""Consent per purpose, the DSR export, erasure and legal holds over HTTP."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
from sqlalchemy import select

from patron import clock
from patron.audit.models import AuditRecord
from patron.audit.service import CLI
from patron.auth.service import create_key
from patron.events.models import DomainEvent
from patron.members.models import Card, Member
from patron.privacy.models import LegalHold
from tests.conftest import auth

PHONE = "010-1234-5678"


@pytest.fixture
def kim(client, bakery, pos) -> dict[str, Any]:
    answer = client.post(
        "/api/v1/members",
        json={"name": "김민지", "phone": PHONE, "email": "minji@example.com", "program": "bakery",
              "birthday": "1990-05-01", "cards": [{"number": "BKR100000"}],
              "attributes": {"favourite": "croissant"}, "marketing_consent": True},
        headers=pos,
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    sale = client.post(
        "/api/v1/programs/bakery/purchases",
        json={"external_id": "A-1", "member": {"phone": PHONE}, "amount": 25800},
        headers=pos,
    )
    assert sale.status_code in (200, 201), sale.text
    return answer.json()


def privacy_key(db, **reach: Any) -> dict[str, str]:
    with db.unit_of_work() as session:
        _row, key = create_key(
            session, name="dpo", scopes=["privacy"], actor=CLI, now=clock.now(), **reach
        )
    return auth(key)


def base(kim: dict[str, Any]) -> str:
    return f"/api/v1/programs/bakery/members/{kim['id']}/privacy"


# --- consents ---------------------------------------------------------------------------------


def test_consent_per_purpose_with_text_version_and_withdrawal(client, db, kim, admin, pos):
    put = client.put(
        "/api/v1/programs/bakery/consent-texts/profiling",
        json={"version": "2026-12", "summary": "We use your purchases to pick offers"},
        headers=admin,
    )
    assert put.status_code == 200, put.text
    assert {t["purpose"]: t["version"] for t in put.json()}["profiling"] == "2026-12"
    grant = client.post(
        f"{base(kim)}/consents",
        json={"purposes": ["profiling", "marketing_sms"], "granted": True, "source": "till"},
        headers=pos,
    )
    assert grant.status_code == 200, grant.text
    current = grant.json()["current"]
    assert current["profiling"] == {
        "granted": True, "at": current["profiling"]["at"], "source": "till", "version": "2026-12"
    }  # fmt: skip
    assert current["marketing_sms"]["version"] is None  # no text version set for it yet
    withdraw = client.post(
        f"{base(kim)}/consents",
        json={"purposes": ["profiling"], "granted": False, "source": "portal", "version": "v1"},
        headers=pos,
    )
    body = withdraw.json()
    assert body["current"]["profiling"]["granted"] is False
    assert body["current"]["profiling"]["version"] == "v1"
    assert [(h["purpose"], h["granted"]) for h in body["history"][:3]] == [
        ("profiling", False), ("marketing_sms", True), ("profiling", True)
    ]  # fmt: skip
    # The existing marketing readers keep working: the channel view has no profiling row.
    channels = client.get(f"/api/v1/members/{kim['id']}/consents", headers=pos).json()
    assert channels["consent"] == {"email": True, "sms": True}


BAD_CONSENTS = [
    {"purposes": [], "granted": True},
    {"purposes": ["astrology"], "granted": True},
    {"purposes": ["profiling"], "granted": True, "source": "carrier pigeon"},
    {"purposes": ["profiling"], "granted": "maybe"},
    {"purposes": ["profiling"], "granted": True, "version": "x" * 41},
    {"purposes": ["profiling"], "granted": True, "extra": 1},
    [],
]


@pytest.mark.sqlite_only
def test_bad_consent_input_is_a_422_and_writes_nothing(client, db, kim, pos):
    for body in BAD_CONSENTS:
        answer = client.post(f"{base(kim)}/consents", json=body, headers=pos)
        assert answer.status_code == 422, (body, answer.text)
    with db.unit_of_work(readonly=True) as s:
        from patron.members.models import ConsentRecord

        assert not s.scalars(
            select(ConsentRecord).where(ConsentRecord.channel == "profiling")
        ).all()


def test_reading_consents_needs_a_key_and_a_member_of_the_program(client, kim, reader):
    assert client.get(f"{base(kim)}/consents").status_code == 401
    assert client.get(f"{base(kim)}/consents", headers=reader).status_code == 200
    missing = client.get("/api/v1/programs/bakery/members/999999/privacy/consents", headers=reader)
    assert missing.status_code == 404


# --- export -----------------------------------------------------------------------------------


def test_export_is_a_zip_of_json_files_and_is_audited(client, db, kim, admin):
    answer = client.get(f"{base(kim)}/export", headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    names = set(archive.namelist())
    assert {"manifest.json", "profile.json", "cards.json", "programs/bakery.json",
            "consents.json", "privacy_requests.json", "legal_holds.json", "audit.json"} <= names  # fmt: skip
    profile = json.loads(archive.read("profile.json"))
    assert profile["phone"] == "+821012345678" and profile["name"] == "김민지"
    bakery = json.loads(archive.read("programs/bakery.json"))
    assert bakery["purchases"][0]["order"] == "A-1"
    audit = json.loads(archive.read("audit.json"))
    assert "member.created" in [a["action"] for a in audit]
    requests = json.loads(archive.read("privacy_requests.json"))
    assert requests[-1]["kind"] == "export" and requests[-1]["source"] == "api"
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(AuditRecord.id).where(AuditRecord.action == "privacy.exported"))


@pytest.mark.sqlite_only
def test_export_is_declared_as_a_zip_in_openapi(client):
    spec = client.get("/openapi.json").json()
    route = spec["paths"]["/api/v1/programs/{code}/members/{member_id}/privacy/export"]["get"]
    assert "application/zip" in route["responses"]["200"]["content"]


def test_export_erasure_and_holds_need_the_privacy_scope(client, db, kim, pos, reader):
    for headers in (pos, reader):
        assert client.get(f"{base(kim)}/export", headers=headers).status_code == 403
        erase = client.post(f"{base(kim)}/erasure", json={}, headers=headers)
        assert erase.status_code == 403
        hold = client.post(f"{base(kim)}/holds", json={"reason": "x"}, headers=headers)
        assert hold.status_code == 403
    dpo = privacy_key(db)
    assert client.get(f"{base(kim)}/export", headers=dpo).status_code == 200


def test_a_key_limited_to_another_program_cannot_reach_her(client, db, kim, admin):
    cafe = client.post("/api/v1/programs", json={**_bakery_like("cafe")}, headers=admin)
    assert cafe.status_code == 201, cafe.text
    other = privacy_key(db, programs=["cafe"])
    assert client.get(f"{base(kim)}/export", headers=other).status_code == 403
    in_cafe = "/api/v1/programs/cafe/members/{}/privacy/export".format(kim["id"])
    assert client.get(in_cafe, headers=other).status_code == 404


def _bakery_like(code: str) -> dict[str, Any]:
    from tests.factories import BAKERY

    return {**BAKERY, "code": code, "name": code.title()}


# --- erasure and holds ------------------------------------------------------------------------


def test_erasure_pseudonymises_and_old_contacts_no_longer_find_her(client, db, kim, admin, pos):
    answer = client.post(f"{base(kim)}/erasure", json={"reason": "her request by phone"},
                         headers=admin)  # fmt: skip
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["member_id"] == kim["id"] and report["cards"] == 1
    assert report["audit_redacted"] >= 2
    with db.unit_of_work(readonly=True) as s:
        member = s.get(Member, kim["id"])
        assert member is not None
        assert (member.status, member.phone, member.email, member.birthday) == (
            "erased", None, None, None
        )  # fmt: skip
        assert member.name == "(erased)" and member.attributes == {}
        card = s.scalars(select(Card).where(Card.member_id == kim["id"])).one()
        assert card.number.startswith("erased-") and len(card.number) == 39
        text = json.dumps([(r.before, r.after) for r in s.scalars(select(AuditRecord))],
                          ensure_ascii=False)  # fmt: skip
        assert "김민지" not in text and "minji@example.com" not in text and "1012345678" not in text
        event = s.scalars(select(DomainEvent).where(DomainEvent.kind == "member.erased")).one()
        assert event.payload["erasure_id"] == report["erasure_id"]
    for ref in ({"phone": PHONE}, {"card": "BKR100000"}, {"email": "minji@example.com"}):
        sale = client.post(
            "/api/v1/programs/bakery/purchases",
            json={"external_id": f"B-{len(ref)}{next(iter(ref))}", "member": ref, "amount": 1000},
            headers=pos,
        )
        assert sale.status_code == 404, sale.text
    again = client.post(
        "/api/v1/members",
        json={"name": "New Kim", "phone": PHONE, "program": "bakery"},
        headers=pos,
    )
    assert again.status_code == 201, again.text
    assert again.json()["id"] != kim["id"]
    consent = client.post(f"{base(kim)}/consents", json={"purposes": ["profiling"],
                          "granted": True}, headers=pos)  # fmt: skip
    assert (consent.status_code, consent.json()["error"]) == (409, "member_erased")
    twice = client.post(f"{base(kim)}/erasure", json={}, headers=admin)
    assert (twice.status_code, twice.json()["error"]) == (409, "member_erased")
    assert client.get("/api/v1/check", headers=admin).json()["ok"] is True


def test_a_legal_hold_blocks_erasure_and_writes_nothing(client, db, kim, admin):
    placed = client.post(f"{base(kim)}/holds", json={"reason": "chargeback dispute #77"},
                         headers=admin)  # fmt: skip
    assert placed.status_code == 201, placed.text
    with db.unit_of_work(readonly=True) as s:
        audit_before = s.scalar(select(AuditRecord.id).order_by(AuditRecord.id.desc()).limit(1))
    refused = client.post(f"{base(kim)}/erasure", json={"reason": "asked"}, headers=admin)
    assert refused.status_code == 409
    assert refused.json()["error"] == "legal_hold"
    with db.unit_of_work(readonly=True) as s:
        member = s.get(Member, kim["id"])
        assert member is not None and member.status == "active" and member.phone
        latest = s.scalar(select(AuditRecord.id).order_by(AuditRecord.id.desc()).limit(1))
        assert latest == audit_before
    hold_id = placed.json()["id"]
    no_reason = client.post(f"{base(kim)}/holds/{hold_id}/release", json={"reason": ""},
                            headers=admin)  # fmt: skip
    assert no_reason.status_code == 422
    released = client.post(f"{base(kim)}/holds/{hold_id}/release", json={"reason": "settled"},
                           headers=admin)  # fmt: skip
    assert released.status_code == 200 and released.json()["open"] is False
    again = client.post(f"{base(kim)}/holds/{hold_id}/release", json={"reason": "settled"},
                        headers=admin)  # fmt: skip
    assert again.status_code == 409
    listed = client.get(f"{base(kim)}/holds", headers=admin).json()
    assert [h["release_reason"] for h in listed] == ["settled"]
    assert client.post(f"{base(kim)}/erasure", json={}, headers=admin).status_code == 200
    with db.unit_of_work(readonly=True) as s:
        hold = s.get(LegalHold, hold_id)
        assert hold is not None and hold.reason == "chargeback dispute #77"


def test_erasure_carries_out_her_own_request(client, db, kim, admin):
    from patron.audit.service import Actor
    from patron.portal import privacy as portal
    from patron.programs.service import get_program

    with db.unit_of_work() as s:
        member = s.get(Member, kim["id"])
        assert member is not None
        request, _ = portal.request_erasure(
            s, get_program(s, "bakery"), member, reason="moving abroad",
            actor=Actor("member", str(member.id)), now=clock.now(),
        )  # fmt: skip
        request_id = request.id
    queue = client.get("/api/v1/programs/bakery/privacy/requests", headers=admin).json()
    assert [r["id"] for r in queue] == [request_id]
    wrong = client.post(f"{base(kim)}/erasure", json={"request_id": 424242}, headers=admin)
    assert (wrong.status_code, wrong.json()["error"]) == (404, "request_not_found")
    done = client.post(f"{base(kim)}/erasure", json={"request_id": request_id}, headers=admin)
    assert done.status_code == 200, done.text
    assert done.json()["erasure_id"] == request_id
    assert client.get("/api/v1/programs/bakery/privacy/requests", headers=admin).json() == []


BAD_PRIVACY = [
    ("erasure", {"reason": "x" * 501}),
    ("erasure", {"request_id": 0}),
    ("erasure", {"nope": True}),
    ("holds", {}),
    ("holds", {"reason": ""}),
    ("holds", {"reason": "x" * 501}),
]


@pytest.mark.sqlite_only
def test_bad_privacy_input_is_a_422_and_writes_nothing(client, db, kim, admin):
    for path, body in BAD_PRIVACY:
        answer = client.post(f"{base(kim)}/{path}", json=body, headers=admin)
        assert answer.status_code == 422, (path, body, answer.text)
    with db.unit_of_work(readonly=True) as s:
        member = s.get(Member, kim["id"])
        assert member is not None and member.status == "active"
        assert s.scalar(select(LegalHold.id)) is None


def test_unknown_member_hold_and_program_are_404(client, kim, admin):
    assert (
        client.post(
            "/api/v1/programs/bakery/members/999999/privacy/erasure", json={}, headers=admin
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"{base(kim)}/holds/999/release", json={"reason": "x"}, headers=admin
        ).status_code
        == 404
    )
    assert client.get("/api/v1/programs/nope/privacy/requests", headers=admin).status_code == 404
