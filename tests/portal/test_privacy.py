"""The privacy page through HTTP: her data export (hers only, and recorded), and the request to
close her account (recorded once, announced on the outbox, confirmed to her, withdrawable)."""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron import clock
from patron.audit.models import AuditRecord
from patron.audit.service import Actor
from patron.config import get_settings
from patron.coupons import codes
from patron.delivery import dispatch
from patron.events.models import Delivery, DomainEvent
from patron.members.models import ConsentRecord
from patron.portal import i18n, privacy, service
from patron.portal.account import lock_member
from patron.portal.models import PrivacyRequest
from tests.portal.conftest import A_EMAIL, B_EMAIL, bakery
from tests.portal.test_pages import BASE, sign_in


@pytest.fixture
def sent(monkeypatch) -> list[service.CodeMessage]:
    out: list[service.CodeMessage] = []
    for where in (
        "patron.portal.views.send_code",
        "patron.portal.account_views.send_code",
    ):
        monkeypatch.setattr(where, out.append)
    return out


def confirmations(db) -> list[Delivery]:
    """Run the delivery worker's fan-out once; the erasure confirmations it made."""
    dispatch.dispatch_pending(db, now=clock.now(), settings=get_settings())
    with db.unit_of_work(readonly=True) as s:
        rows = s.scalars(select(Delivery).where(Delivery.event_kind == privacy.ERASURE_EVENT)).all()
        for row in rows:
            s.expunge(row)
        return list(rows)


def requests_of(db, member_id: int, kind: str) -> list[tuple[str, str, str | None]]:
    with db.unit_of_work(readonly=True) as s:
        rows = s.execute(
            select(PrivacyRequest.status, PrivacyRequest.source, PrivacyRequest.reason)
            .where(PrivacyRequest.member_id == member_id, PrivacyRequest.kind == kind)
            .order_by(PrivacyRequest.id)
        )
        return [(status, source, reason) for status, source, reason in rows]


def count(db, model, *where) -> int:
    with db.unit_of_work(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def message_row(member_id: int, channel: str, recipient: str, frozen, **fields) -> Delivery:
    return Delivery(
        member_id=member_id, event_kind="points.adjusted", channel=channel,
        queue_key=f"{channel}:{member_id}", recipient=recipient, purpose="transactional",
        language="ko", subject="포인트 조정", body="secret body", status="delivered",
        attempts=1, next_attempt_at=frozen, created_at=frozen, delivered_at=frozen, **fields,
    )  # fmt: skip


def erase(client: TestClient, token: str, **data: str):
    return client.post(
        f"{BASE}/privacy/erasure", data={"csrf_token": token, **data}, follow_redirects=False
    )


def test_the_export_has_her_data_and_never_anothers(app, db, client, portal, sent, frozen):
    with db.unit_of_work() as s:
        program_id = bakery(s).id
        s.add(message_row(portal.a, "email", A_EMAIL, frozen, program_id=program_id))
        s.add(message_row(portal.b, "email", B_EMAIL, frozen, program_id=program_id))
        s.add(message_row(portal.a, "webhook", "https://hooks.example.com/x", frozen,
                          program_id=program_id))  # fmt: skip
    with TestClient(app) as other:
        b_token = sign_in(other, sent, B_EMAIL)
        other.post(f"{BASE}/profile/consent", data={"csrf_token": b_token, "email": "on"})
        erase(other, b_token, understand="on", reason="B's own reason")
    token = sign_in(client, sent)
    client.post(f"{BASE}/profile/consent", data={"csrf_token": token, "email": "on"})
    r = client.get(f"{BASE}/privacy/export.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    disposition = r.headers["content-disposition"]
    assert disposition.startswith("attachment;") and ".json" in disposition
    text = r.content.decode()
    data = json.loads(text)
    assert data["format"] == privacy.EXPORT_FORMAT
    assert data["profile"]["id"] == portal.a and data["profile"]["name"] == "김민지"
    assert data["profile"]["email"] == A_EMAIL and "preferences" in data["profile"]
    assert [c["number"] for c in data["cards"]] == ["BKR100000"]
    assert data["account"]["totals"]["balance"] == 8_500
    assert sum(e["points"] for e in data["entries"]) == 8_500
    assert {e["kind"] for e in data["entries"]} == {"adjust", "redeem"}
    assert data["lots"] and data["redemptions"][0]["reward"] == "americano"
    assert [c["code"] for c in data["coupons"]] == [codes.display(portal.a_coupon)]
    assert all("offline_token" not in c for c in data["coupons"])
    first = data["consents"][0]
    assert (first["channel"], first["granted"], first["source"]) == ("email", True, "portal")
    assert data["sessions"] and all("token_hash" not in s for s in data["sessions"])
    assert all("csrf_token" not in s for s in data["sessions"])
    assert [(m["channel"], m["to"]) for m in data["messages"]] == [("email", A_EMAIL)]
    assert "secret body" not in text
    assert [r["kind"] for r in data["privacy_requests"]] == ["export"]
    # Nothing of B's: her e-mail, card, coupon, consent, session or request.
    for hers in (B_EMAIL, "BKR100001", portal.b_coupon, codes.display(portal.b_coupon),
                 "B's own reason", "Other", "hooks.example.com"):  # fmt: skip
        assert hers not in text, hers
    assert len(data["consents"]) == count(db, ConsentRecord, ConsentRecord.member_id == portal.a)


def test_the_export_is_recorded(db, client, portal, sent):
    sign_in(client, sent)
    assert client.get(f"{BASE}/privacy/export.json").status_code == 200
    assert requests_of(db, portal.a, "export") == [("done", "portal", None)]
    assert requests_of(db, portal.b, "export") == []
    assert count(db, AuditRecord, AuditRecord.action == "privacy.exported",
                 AuditRecord.subject_id == str(portal.a)) == 1  # fmt: skip


def test_the_privacy_page_explains_before_asking(client, portal, sent):
    sign_in(client, sent)
    page = client.get(f"{BASE}/privacy").text
    for key in ("privacy.erasure.points_lost", "privacy.erasure.kept_anonymised",
                "privacy.erasure.understand"):  # fmt: skip
        assert i18n.translate(key, "ko") in page
    assert i18n.translate("privacy.erasure.within_days", "ko", days=30) in page
    assert f'href="{BASE}/privacy/export.json"' in page
    assert 'name="understand"' in page and 'name="reason"' in page


def test_an_erasure_request_is_recorded_once_announced_confirmed_and_withdrawable(
    db, client, portal, sent
):
    token = sign_in(client, sent)
    before = len(sent)
    r = erase(client, token, reason="이사를 가요")
    assert r.status_code == 422  # "I understand" not ticked
    assert i18n.translate("privacy.erasure.must_confirm", "ko") in r.text
    assert requests_of(db, portal.a, "erasure") == []
    r = erase(client, token, understand="on", reason="이사를 가요")
    assert r.status_code == 303 and r.headers["location"] == f"{BASE}/privacy"
    assert requests_of(db, portal.a, "erasure") == [("requested", "portal", "이사를 가요")]
    with db.unit_of_work(readonly=True) as s:
        events = s.execute(
            select(DomainEvent.member_id, DomainEvent.payload).where(
                DomainEvent.kind == privacy.ERASURE_EVENT
            )
        ).all()
    assert len(events) == 1 and events[0][0] == portal.a
    assert events[0][1]["member_id"] == portal.a and events[0][1]["program"] == "bakery"
    assert "이사를 가요" not in json.dumps(events[0][1], ensure_ascii=False)
    assert count(db, AuditRecord, AuditRecord.action == "privacy.erasure_requested") == 1
    # Her confirmation is the event's member message, made by the delivery worker.
    [message] = confirmations(db)
    assert message.channel == "email" and message.recipient == A_EMAIL
    assert "탈퇴" in (message.subject or "") and "2026년 3월 2일" in message.body
    page = client.get(f"{BASE}/privacy").text
    assert i18n.translate("privacy.erasure.requested_on", "ko", date="2026년 3월 2일") in page
    assert 'name="understand"' not in page
    # Asking again while it is open: no second row, event or message.
    assert erase(client, token, understand="on").status_code == 303
    assert len(requests_of(db, portal.a, "erasure")) == 1
    assert count(db, DomainEvent, DomainEvent.kind == privacy.ERASURE_EVENT) == 1
    assert len(confirmations(db)) == 1
    assert len(sent) == before  # nothing sent outside the outbox
    # Withdrawn: cancelled, and she may ask again later.
    request_id = re.findall(r"/privacy/erasure/(\d+)/withdraw", page)[0]
    r = client.post(
        f"{BASE}/privacy/erasure/{request_id}/withdraw",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert requests_of(db, portal.a, "erasure") == [("cancelled", "portal", "이사를 가요")]
    assert count(db, AuditRecord, AuditRecord.action == "privacy.erasure_withdrawn") == 1
    assert 'name="understand"' in client.get(f"{BASE}/privacy").text
    r = client.post(f"{BASE}/privacy/erasure/{request_id}/withdraw", data={"csrf_token": token})
    assert r.status_code == 404  # already withdrawn


def test_the_confirmation_goes_by_her_preferred_channel(db, client, portal, sent):
    token = sign_in(client, sent)
    client.post(f"{BASE}/profile/preferences", data={"channel": "sms", "csrf_token": token})
    erase(client, token, understand="on")
    [message] = confirmations(db)
    assert message.channel == "sms" and message.recipient == "+821012345678"


def test_another_member_cannot_see_or_withdraw_her_request(app, db, client, portal, sent):
    token = sign_in(client, sent)
    erase(client, token, understand="on")
    page = client.get(f"{BASE}/privacy").text
    request_id = re.findall(r"/privacy/erasure/(\d+)/withdraw", page)[0]
    with TestClient(app) as other:
        b_token = sign_in(other, sent, B_EMAIL)
        b_page = other.get(f"{BASE}/privacy").text
        assert f"/privacy/erasure/{request_id}/withdraw" not in b_page
        assert 'name="understand"' in b_page
        r = other.post(
            f"{BASE}/privacy/erasure/{request_id}/withdraw", data={"csrf_token": b_token}
        )
        assert r.status_code == 404
        assert (
            other.post(
                f"{BASE}/privacy/erasure/99999999/withdraw", data={"csrf_token": b_token}
            ).status_code
            == 404
        )
        assert (
            other.post(
                f"{BASE}/privacy/erasure/abc/withdraw", data={"csrf_token": b_token}
            ).status_code
            == 404
        )
    assert requests_of(db, portal.a, "erasure") == [("requested", "portal", None)]
    assert requests_of(db, portal.b, "erasure") == []


def test_privacy_forms_need_the_csrf_token(db, client, portal, sent):
    sign_in(client, sent)
    r = client.post(f"{BASE}/privacy/erasure", data={"understand": "on"})
    assert r.status_code == 403
    r = client.post(f"{BASE}/privacy/erasure", data={"understand": "on", "csrf_token": "x" * 40})
    assert r.status_code == 403
    assert requests_of(db, portal.a, "erasure") == []
    assert count(db, DomainEvent, DomainEvent.kind == privacy.ERASURE_EVENT) == 0


def test_a_long_reason_is_cut_to_500_characters(db, client, portal, sent):
    token = sign_in(client, sent)
    erase(client, token, understand="on", reason="가" * 800)
    [(_status, _source, reason)] = requests_of(db, portal.a, "erasure")
    assert reason == "가" * 500


@pytest.mark.postgresql_only
def test_requests_sent_at_once_make_one_row(db, portal, frozen):
    """Eight browsers send the request at the same moment: the member's row lock lets one in."""
    barrier = threading.Barrier(8, timeout=30)

    def ask() -> bool:
        with db.unit_of_work() as s:
            member = lock_member(s, portal.a)
            _row, created = privacy.request_erasure(
                s, bakery(s), member, reason=None, actor=Actor("member", str(portal.a)),
                now=frozen,
            )  # fmt: skip
            return created

    with ThreadPoolExecutor(max_workers=8, initializer=barrier.wait) as pool:
        outcomes = list(pool.map(lambda _: ask(), range(8)))
    assert sorted(outcomes) == [False] * 7 + [True]
    assert requests_of(db, portal.a, "erasure") == [("requested", "portal", None)]
    assert count(db, DomainEvent, DomainEvent.kind == privacy.ERASURE_EVENT) == 1
