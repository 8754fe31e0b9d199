"""The sign-up settings page and the member page's invitation button, over HTTP: who sees and
who changes, errors at the field (422, nothing saved), the audit rows naming the user."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from patron.audit.models import AuditRecord
from patron.portal import service, signup
from patron.programs.models import Program
from tests.admin.helpers import STAFF, sign_in

URL = "/admin/program/bakery/signup"


@pytest.fixture
def web(app, staff, seeded):
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def sent(monkeypatch) -> list[service.CodeMessage]:
    out: list[service.CodeMessage] = []
    monkeypatch.setattr("patron.admin.views.members.send_code", out.append)
    return out


def form(token: str, **changes: str) -> dict[str, str]:
    data = {
        "csrf_token": token,
        "enabled": "1",
        "field_email": "required",
        "field_phone": "optional",
        "field_birthday": "off",
        "verify_with": "email",
        "consent_email": "1",
        "terms_url": "https://example.com/terms",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v != "-"}


def stored(db) -> signup.SignupSettings:
    with db.unit_of_work(readonly=True) as s:
        program = s.scalars(select(Program).where(Program.code == "bakery")).one()
        return signup.get(s, program)


def test_a_marketer_opens_sign_up_and_it_is_audited(web, db):
    token = sign_in(web, STAFF["marketer"][0])
    page = web.get(URL)
    assert page.status_code == 200 and "Sign-up on the member page" in page.text
    r = web.post(URL, data=form(token), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("/signup?done=saved")
    saved = stored(db)
    assert saved.enabled and saved.fields.phone == "optional" and saved.consents.email
    assert not saved.consents.sms and saved.terms_url == "https://example.com/terms"
    page = web.get(r.headers["location"])
    assert "Sign-up settings saved." in page.text and "/m/bakery/join" in page.text
    assert "program.signup.updated" in page.text  # the changes table
    with db.unit_of_work(readonly=True) as s:
        actors = s.scalars(
            select(AuditRecord.actor).where(AuditRecord.action == "program.signup.updated")
        ).all()
    assert len(actors) == 1 and actors[0].startswith("user:")
    assert web.get("/m/bakery/join").status_code == 200
    # Switching it off again closes the form.
    r = web.post(URL, data=form(token, enabled="-"), follow_redirects=False)
    assert r.status_code == 303 and not stored(db).enabled
    assert web.get("/m/bakery/join").status_code == 404


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"field_email": "off", "field_phone": "off"}, "field_email", "e-mail or a phone"),
        ({"field_email": "optional"}, "verify_with", "must require it"),
        ({"terms_url": "http://example.com"}, "terms_url", "https://"),
        ({"field_birthday": "sometimes"}, "field_birthday", ""),
    ],
)
def test_wrong_settings_are_marked_at_their_field(web, db, changes, field, says):
    token = sign_in(web, STAFF["owner"][0])
    r = web.post(URL, data=form(token, **changes))
    assert r.status_code == 422
    assert f'id="f-{field}-error"' in r.text and says in r.text
    assert stored(db) == signup.SignupSettings()


def test_a_viewer_sees_read_only_and_support_not_at_all(web, db):
    token = sign_in(web, STAFF["viewer"][0])
    page = web.get(URL)
    assert page.status_code == 200 and "Save sign-up settings" not in page.text
    assert web.post(URL, data=form(token), follow_redirects=False).status_code == 403
    web.post("/admin/sign-out", data={"csrf_token": token})
    sign_in(web, STAFF["support"][0])
    assert web.get(URL).status_code == 403
    assert stored(db) == signup.SignupSettings()


def test_the_invitation_button_sends_once_an_hour(web, db, seeded, sent):
    token = sign_in(web, STAFF["support"][0])
    detail = f"/admin/members/{seeded.member_id}?program=bakery"
    page = web.get(detail)
    assert "Send invitation" in page.text
    url = f"/admin/members/{seeded.member_id}/invite"
    r = web.post(url, data={"csrf_token": token, "program": "bakery"}, follow_redirects=False)
    assert r.status_code == 303 and "done=invited" in r.headers["location"]
    assert len(sent) == 1 and sent[0].to == "minji@example.com"
    assert "/m/bakery/" in sent[0].body and "회원 페이지" in sent[0].subject
    assert "The invitation is on its way." in web.get(r.headers["location"]).text
    again = web.post(url, data={"csrf_token": token, "program": "bakery"})
    assert again.status_code == 429 and "less than an hour ago" in again.text
    assert len(sent) == 1
    with db.unit_of_work(readonly=True) as s:
        actors = s.scalars(
            select(AuditRecord.actor).where(AuditRecord.action == "member.invited")
        ).all()
    assert len(actors) == 1 and actors[0].startswith("user:")
    # Without the CSRF token nothing is sent.
    other = f"/admin/members/{seeded.other_id}/invite"
    assert web.post(other, data={"program": "bakery"}).status_code == 403 and len(sent) == 1


def test_a_viewer_has_no_invitation_button(web, seeded, sent):
    token = sign_in(web, STAFF["viewer"][0])
    assert "Send invitation" not in web.get(f"/admin/members/{seeded.member_id}").text
    url = f"/admin/members/{seeded.member_id}/invite"
    r = web.post(url, data={"csrf_token": token, "program": "bakery"}, follow_redirects=False)
    assert r.status_code == 403 and sent == []
