"""The privacy pages of the admin UI over HTTP: consent per purpose, export, holds, erasure,
the erasure-request queue and consent text versions, with each role's reach."""

from __future__ import annotations

import io
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from patron import clock
from patron.audit.models import AuditRecord
from patron.audit.service import Actor
from patron.members.models import ConsentRecord, Member
from patron.portal import privacy as portal
from patron.privacy.models import ConsentText
from patron.programs.service import get_program
from tests.admin.helpers import STAFF, sign_in


@pytest.fixture
def web(app, staff, seeded):
    with TestClient(app) as test_client:
        yield test_client


def as_role(client: TestClient, role: str) -> str:
    return sign_in(client, STAFF[role][0])


def page(seeded) -> str:
    return f"/admin/members/{seeded.member_id}/privacy"


def test_the_member_page_loads_the_privacy_card(web, seeded):
    as_role(web, "support")
    detail = web.get(f"/admin/members/{seeded.member_id}")
    assert f'hx-get="/admin/members/{seeded.member_id}/privacy' in detail.text
    card = web.get(page(seeded), headers={"HX-Request": "true"})
    assert card.status_code == 200
    assert 'data-purpose="profiling"' in card.text and "<html" not in card.text
    assert "Erase personal data" not in card.text  # support may not erase


def test_staff_record_consent_per_purpose_with_the_current_version(web, db, seeded):
    token = as_role(web, "owner")
    versions = web.post(
        "/admin/privacy/consent-texts",
        data={"csrf_token": token, "program": "bakery", "purpose": "profiling",
              "version": "2026-12", "summary": "offers picked from purchases"},
        follow_redirects=False,
    )  # fmt: skip
    assert versions.status_code == 303, versions.text
    answer = web.post(
        f"{page(seeded)}/consents",
        data={"csrf_token": token, "program": "bakery", "purpose_profiling": "1",
              "granted": "1", "note": "asked at the counter"},
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    shown = web.get(answer.headers["location"])
    assert "2026-12" in shown.text and "Consent recorded." in shown.text
    with db.unit_of_work(readonly=True) as s:
        row = s.scalars(select(ConsentRecord).where(ConsentRecord.channel == "profiling")).one()
        assert (row.granted, row.version, row.source, row.actor.startswith("user:")) == (
            True, "2026-12", "admin", True
        )  # fmt: skip
    refused = web.post(
        f"{page(seeded)}/consents",
        data={"csrf_token": token, "program": "bakery", "granted": "1"},
        follow_redirects=False,
    )
    assert refused.status_code == 422
    assert "Choose at least one purpose" in refused.text


def test_consent_text_versions_need_program_manage_and_a_sane_version(web, db, seeded):
    token = as_role(web, "support")
    denied = web.post(
        "/admin/privacy/consent-texts",
        data={"csrf_token": token, "program": "bakery", "purpose": "profiling", "version": "1"},
        follow_redirects=False,
    )
    assert denied.status_code == 403
    web.cookies.clear()
    token = as_role(web, "owner")
    bad = web.post(
        "/admin/privacy/consent-texts",
        data={"csrf_token": token, "program": "bakery", "purpose": "profiling", "version": ""},
        follow_redirects=False,
    )
    assert bad.status_code == 422
    odd = web.post(
        "/admin/privacy/consent-texts",
        data={"csrf_token": token, "program": "bakery", "purpose": "astrology", "version": "1"},
        follow_redirects=False,
    )
    assert odd.status_code == 422
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(ConsentText.id)) is None


def test_support_exports_the_zip_and_the_download_is_audited(web, db, seeded):
    as_role(web, "support")
    answer = web.get(f"{page(seeded)}/export?program=bakery")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(answer.content)).namelist()
    assert "programs/bakery.json" in names
    with db.unit_of_work(readonly=True) as s:
        row = s.scalars(select(AuditRecord).where(AuditRecord.action == "privacy.exported")).one()
        assert row.actor.startswith("user:") and row.after is not None
        assert row.after["source"] == "admin"


REACH = [
    ("viewer", "GET", "/export", 403),
    ("viewer", "GET", "", 200),
    ("viewer", "POST", "/consents", 403),
    ("marketer", "GET", "/export", 403),
    ("marketer", "POST", "/erase", 403),
    ("support", "POST", "/holds", 403),
    ("support", "POST", "/erase", 403),
]


@pytest.mark.sqlite_only
def test_each_role_reaches_only_what_it_may(web, seeded):
    for role, method, path, status in REACH:
        web.cookies.clear()
        token = as_role(web, role)
        url = page(seeded) + path
        if method == "GET":
            answer = web.get(url)
        else:
            answer = web.post(url, data={"csrf_token": token, "reason": "x", "confirm": "1"},
                              follow_redirects=False)  # fmt: skip
        assert answer.status_code == status, (role, method, path)
    web.cookies.clear()
    as_role(web, "viewer")
    viewer_page = web.get(page(seeded)).text
    assert "Download data" not in viewer_page and "Place a legal hold" not in viewer_page


def test_owner_holds_then_erasure_is_refused_then_released_and_erased(web, db, seeded):
    token = as_role(web, "owner")
    no_reason = web.post(f"{page(seeded)}/holds", data={"csrf_token": token, "reason": " "},
                         follow_redirects=False)  # fmt: skip
    assert no_reason.status_code == 422 and "Give a reason" in no_reason.text
    placed = web.post(f"{page(seeded)}/holds", data={"csrf_token": token, "reason": "dispute"},
                      follow_redirects=False)  # fmt: skip
    assert placed.status_code == 303
    refused = web.post(
        f"{page(seeded)}/erase", data={"csrf_token": token, "confirm": "1"}, follow_redirects=False
    )
    assert refused.status_code == 409 and "legal hold" in refused.text
    unconfirmed = web.post(f"{page(seeded)}/erase", data={"csrf_token": token},
                           follow_redirects=False)  # fmt: skip
    assert unconfirmed.status_code == 422
    with db.unit_of_work(readonly=True) as s:
        member = s.get(Member, seeded.member_id)
        assert member is not None and member.status == "active"
        from patron.privacy.models import LegalHold

        hold_id = s.scalars(select(LegalHold.id)).one()
    released = web.post(f"{page(seeded)}/holds/{hold_id}/release",
                        data={"csrf_token": token, "reason": "settled"}, follow_redirects=False)  # fmt: skip
    assert released.status_code == 303
    erased = web.post(f"{page(seeded)}/erase", data={"csrf_token": token, "confirm": "1",
                      "reason": "asked by phone"}, follow_redirects=False)  # fmt: skip
    assert erased.status_code == 303
    shown = web.get(erased.headers["location"])
    assert "personal data was erased" in shown.text
    with db.unit_of_work(readonly=True) as s:
        member = s.get(Member, seeded.member_id)
        assert member is not None and (member.status, member.phone) == ("erased", None)
    detail = web.get(f"/admin/members/{seeded.member_id}")
    assert detail.status_code == 200 and "김민지" not in detail.text


def test_the_queue_lists_her_request_and_the_owner_carries_it_out(web, db, seeded):
    with db.unit_of_work() as s:
        member = s.get(Member, seeded.other_id)
        assert member is not None
        request, _ = portal.request_erasure(
            s, get_program(s, "bakery"), member, reason="leaving", now=clock.now(),
            actor=Actor("member", str(member.id)),
        )  # fmt: skip
        request_id = request.id
    token = as_role(web, "owner")
    queue = web.get("/admin/privacy")
    assert queue.status_code == 200 and f'data-request="{request_id}"' in queue.text
    assert 'href="/admin/privacy"' in web.get("/admin/").text  # in the nav
    done = web.post(f"/admin/privacy/requests/{request_id}/erase",
                    data={"csrf_token": token, "confirm": "1"}, follow_redirects=False)  # fmt: skip
    assert done.status_code == 303
    assert "No open erasure requests." in web.get(done.headers["location"]).text
    missing = web.post("/admin/privacy/requests/999999/erase",
                       data={"csrf_token": token, "confirm": "1"}, follow_redirects=False)  # fmt: skip
    assert missing.status_code == 404
