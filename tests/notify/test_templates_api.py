"""Message templates over HTTP: list, read, replace, reset, preview; 404s for templates that do
not exist, 422 invalid_template for ones that would not render, scopes and idempotency."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from patron.audit.models import AuditRecord
from patron.events.kinds import EVENT_TYPES
from patron.notify.models import MessageTemplate
from tests.api.conftest import admin, bakery, pos, reader  # noqa: F401
from tests.api.helpers import enroll

BASE = "/api/v1/programs/bakery/templates"
KO_EXPIRING = f"{BASE}/points.expiring/email/ko"
SUBJECT = "[{{ program.name }}] {{ member.name }}님, 포인트 소멸 예정"
BODY = "{{ member.name }}님, {{ expiring_points|points }}P가 {{ expiring_date|date }}까지입니다."


@pytest.fixture
def kim(client, admin, bakery) -> dict[str, Any]:  # noqa: F811
    """김민지 (Korean) with a ₩125,000 sale: 1,250 points."""
    member = enroll(client, admin, name="김민지", phone="010-1234-5678", language="ko")
    sale = client.post(
        "/api/v1/programs/bakery/purchases",
        headers=admin,
        json={"external_id": "MAPO-0001", "member": {"id": member["id"]}, "amount": 125000},
    )
    assert sale.status_code == 201, sale.text
    return member


def stored(db) -> list[MessageTemplate]:
    with db.unit_of_work(readonly=True) as s:
        rows = list(s.scalars(select(MessageTemplate)))
        s.expunge_all()
        return rows


def test_list_every_template_marked_default(client, reader, bakery):  # noqa: F811
    answer = client.get(BASE, headers=reader)
    assert answer.status_code == 200
    listed = answer.json()
    assert len(listed) == len(EVENT_TYPES) * 2 * 3
    assert {(t["kind"], t["channel"], t["language"]) for t in listed} == {
        (k, c, lang) for k in EVENT_TYPES for c in ("email", "sms") for lang in ("ko", "zh", "en")
    }
    assert not any(t["custom"] for t in listed)
    sms = next(
        t
        for t in listed
        if (t["kind"], t["channel"], t["language"]) == ("points.earned", "sms", "zh")
    )
    assert sms["subject"] is None and sms["body"].startswith("【{{ program.name }}】")


def test_put_get_and_delete_a_template(client, db, admin, reader, bakery):  # noqa: F811
    default = client.get(KO_EXPIRING, headers=reader).json()
    assert default["custom"] is False and "까지 사용해 주세요" in default["subject"]

    put = client.put(KO_EXPIRING, json={"subject": SUBJECT, "body": BODY}, headers=admin)
    assert put.status_code == 200, put.text
    saved = put.json()
    assert saved["custom"] is True and saved["subject"] == SUBJECT and saved["body"] == BODY
    assert saved["updated_by"].startswith("api_key:")
    assert client.get(KO_EXPIRING, headers=reader).json() == saved
    customs = [t for t in client.get(BASE, headers=reader).json() if t["custom"]]
    assert [(t["kind"], t["channel"], t["language"]) for t in customs] == [
        ("points.expiring", "email", "ko")
    ]
    [row] = stored(db)
    assert (row.event_kind, row.channel, row.language, row.body) == (
        "points.expiring",
        "email",
        "ko",
        BODY,
    )
    with db.unit_of_work(readonly=True) as s:
        audit = s.scalars(
            select(AuditRecord).where(AuditRecord.action == "notifications.template_changed")
        ).one()
        assert audit.after == {"custom": True, "subject": SUBJECT, "body": BODY}

    deleted = client.delete(KO_EXPIRING, headers=admin)
    assert deleted.status_code == 200
    assert deleted.json() == default
    assert stored(db) == []
    # Deleting the default again changes nothing.
    assert client.delete(KO_EXPIRING, headers=admin).json() == default


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"subject": SUBJECT, "body": "안녕하세요\n{{ membr.name }}"},
            "body, line 2: membr is not a variable messages have",
        ),
        ({"subject": SUBJECT, "body": "{% if points %}\nmany"}, "body, line 2: "),
        ({"subject": "{{ member.name", "body": BODY}, "subject, line 1: "),
        ({"subject": SUBJECT, "body": "{{ ''.__class__ }}"}, "is unsafe"),
        ({"subject": SUBJECT, "body": "{% for c in 'ab' %}{% endfor %}"}, "{% for %}"),
        ({"subject": SUBJECT, "body": "  "}, "body: the message is empty"),
        ({"body": BODY}, "subject: an e-mail needs a subject"),
    ],
)
def test_a_broken_template_is_a_422_and_is_not_saved(client, db, admin, bakery, body, detail):  # noqa: F811
    answer = client.put(KO_EXPIRING, json=body, headers=admin)
    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid_template"
    assert detail in answer.json()["detail"]
    assert stored(db) == []


def test_an_sms_has_no_subject_and_a_length_limit(client, admin, bakery):  # noqa: F811
    url = f"{BASE}/points.earned/sms/en"
    with_subject = client.put(url, json={"subject": "Hi", "body": "x"}, headers=admin)
    assert with_subject.status_code == 422
    assert with_subject.json()["detail"] == "subject: an SMS has no subject"
    too_long = client.put(url, json={"body": "{{ member.name }} " + "x" * 990}, headers=admin)
    assert too_long.status_code == 422 and "at most 1,000" in too_long.json()["detail"]
    ok = client.put(url, json={"body": "+{{ points|points }}"}, headers=admin)
    assert ok.status_code == 200 and ok.json()["subject"] is None


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("points.nope/email/ko", "unknown_event_type"),
        ("points.earned/fax/ko", "unknown_channel"),
        ("points.earned/email/ja", "unknown_language"),
    ],
)
def test_templates_that_do_not_exist_are_404(client, admin, bakery, path, code):  # noqa: F811
    for method in ("GET", "PUT", "DELETE"):
        answer = client.request(
            method, f"{BASE}/{path}", json={"subject": "s", "body": "b"}, headers=admin
        )
        assert answer.status_code == 404, method
        assert answer.json()["error"] == code


def test_an_unknown_program_is_404(client, admin, bakery):  # noqa: F811
    answer = client.get("/api/v1/programs/nosuch/templates", headers=admin)
    assert answer.status_code == 404 and answer.json()["error"] == "program_not_found"


def test_a_malformed_body_is_422(client, admin, bakery):  # noqa: F811
    extra = client.put(KO_EXPIRING, json={"subject": "s", "body": "b", "x": 1}, headers=admin)
    assert extra.status_code == 422 and extra.json()["error"] == "validation_error"
    huge = client.put(KO_EXPIRING, json={"subject": "s", "body": "x" * 10_001}, headers=admin)
    assert huge.status_code == 422


def test_scopes_read_sees_admin_writes(client, db, admin, reader, pos, bakery):  # noqa: F811
    assert client.get(KO_EXPIRING, headers=reader).status_code == 200
    for method in ("PUT", "DELETE"):
        answer = client.request(
            method, KO_EXPIRING, json={"subject": SUBJECT, "body": BODY}, headers=reader
        )
        assert answer.status_code == 403 and answer.json()["error"] == "missing_scope"
    assert client.get(BASE, headers=pos).status_code == 403
    assert client.get(BASE).status_code == 401
    assert stored(db) == []


def test_put_with_an_idempotency_key_replays(client, db, admin, bakery):  # noqa: F811
    headers = {**admin, "Idempotency-Key": "tpl-1"}
    first = client.put(KO_EXPIRING, json={"subject": SUBJECT, "body": BODY}, headers=headers)
    again = client.put(KO_EXPIRING, json={"subject": SUBJECT, "body": BODY}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    other = client.put(KO_EXPIRING, json={"subject": SUBJECT, "body": "x"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict"
    assert [r.body for r in stored(db)] == [BODY]


def test_preview_for_a_real_member(client, admin, reader, kim):  # noqa: F811
    answer = client.post(
        f"{BASE}/preview",
        headers=reader,
        json={
            "kind": "points.earned",
            "channel": "email",
            "language": "ko",
            "member_id": kim["id"],
        },
    )
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert out["member_id"] == kim["id"] and out["member_name"] == "김민지"
    assert out["subject"] == "[Corner Bakery] 1,250포인트가 적립되었습니다"
    assert "결제 금액: ₩125,000" in out["body"] and "영수증 번호: MAPO-0001" in out["body"]
    assert out["characters"] == len(out["body"])
    typed = client.post(
        f"{BASE}/preview",
        headers=admin,
        json={
            "kind": "points.expiring",
            "channel": "sms",
            "language": "en",
            "body": "{{ member.name }}: {{ balance|points }} points",
            "member_id": kim["id"],
        },
    )
    assert typed.json()["body"] == "김민지: 1,250 points"


def test_preview_for_a_sample_member_and_the_saved_template(client, admin, bakery):  # noqa: F811
    client.put(KO_EXPIRING, json={"subject": SUBJECT, "body": BODY}, headers=admin)
    answer = client.post(
        f"{BASE}/preview",
        headers=admin,
        json={"kind": "points.expiring", "channel": "email", "language": "ko"},
    )
    out = answer.json()
    assert out["member_id"] is None and out["member_name"] == "김민지"  # the Korean sample
    assert out["subject"] == "[Corner Bakery] 김민지님, 포인트 소멸 예정"
    assert out["body"] == "김민지님, 1,250P가 2027년 1월 15일까지입니다."


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"kind": "points.nope", "channel": "email", "language": "ko"}, 422, "unknown_event_type"),
        ({"kind": "points.earned", "channel": "fax", "language": "ko"}, 422, "unknown_channel"),
        ({"kind": "points.earned", "channel": "sms", "language": "fr"}, 422, "unknown_language"),
        (
            {"kind": "points.earned", "channel": "sms", "language": "ko", "body": "{{ x }}"},
            422,
            "invalid_template",
        ),
        (
            {"kind": "points.earned", "channel": "sms", "language": "ko", "member_id": 999999},
            404,
            "member_not_found",
        ),
        (
            {"kind": "points.earned", "channel": "sms", "language": "ko", "member_id": 0},
            422,
            "validation_error",
        ),
    ],
)
def test_preview_errors(client, admin, kim, body, status, code):  # noqa: F811
    answer = client.post(f"{BASE}/preview", headers=admin, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == code


def test_the_errors_are_declared_in_openapi(client):
    paths = client.get("/openapi.json").json()["paths"]
    put = paths["/api/v1/programs/{code}/templates/{kind}/{channel}/{language}"]["put"]
    assert {"401", "403", "404", "409", "422"} <= set(put["responses"])
    for code in ("unknown_event_type", "unknown_channel", "unknown_language", "program_not_found"):
        assert code in put["responses"]["404"]["description"]
    assert "invalid_template" in put["responses"]["422"]["description"]
    preview = paths["/api/v1/programs/{code}/templates/preview"]["post"]
    assert "member_not_found" in preview["responses"]["404"]["description"]
    for code in ("invalid_template", "unknown_event_type", "unknown_channel", "unknown_language"):
        assert code in preview["responses"]["422"]["description"]
