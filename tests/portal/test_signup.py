"""Joining on the member page through HTTP: settings off and on, the form's fields and errors,
the code, one new member with her consents, language and sign-up points, no enumeration,
rate limits and CSRF."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron import clock
from patron.audit.service import CLI
from patron.db.engine import Database
from patron.ledger.models import Account
from patron.members.models import ConsentRecord, Member
from patron.portal import service, signup
from patron.rules import publishing
from patron.rules.model import RuleSetDoc
from tests.portal.conftest import A_EMAIL, A_PHONE, bakery, code_from

BASE = "/m/bakery"
NEW_EMAIL = "new.member@example.com"


@pytest.fixture
def outbox(monkeypatch) -> list[service.CodeMessage]:
    sent: list[service.CodeMessage] = []
    monkeypatch.setattr("patron.portal.signup_views.send_code", sent.append)
    monkeypatch.setattr("patron.portal.views.send_code", sent.append)
    return sent


def configure(db: Database, **document: Any) -> None:
    settings = signup.SignupSettings.model_validate(
        {
            "enabled": True,
            "fields": {"email": "required", "phone": "optional", "birthday": "optional"},
            "consents": {"email": True, "sms": True},
            "terms_url": "https://example.com/terms",
            **document,
        }
    )
    with db.unit_of_work() as s:
        signup.save(s, bakery(s), settings, actor=CLI, now=clock.now())


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def join(client: TestClient, lang: str = "en", **fields: str):
    page = client.get(f"{BASE}/join?lang={lang}")
    assert page.status_code == 200, page.text
    data = {"csrf_token": csrf(page.text), "name": "박하늘", **fields}
    return client.post(f"{BASE}/join?lang={lang}", data=data)


def confirm(client: TestClient, page_html: str, contact: str, code: str):
    return client.post(
        f"{BASE}/join/code",
        data={"contact": contact, "code": code, "csrf_token": csrf(page_html)},
        follow_redirects=False,
    )


def count_members(db: Database, email: str) -> int:
    with db.unit_of_work(readonly=True) as s:
        return int(s.scalar(select(func.count()).where(Member.email == email)) or 0)


def test_sign_up_is_off_until_the_program_opens_it(client, db, portal):
    assert client.get(f"{BASE}/join").status_code == 404
    assert f'href="{BASE}/join"' not in client.get(f"{BASE}/sign-in").text
    page = client.get(f"{BASE}/sign-in")
    r = client.post(f"{BASE}/join", data={"csrf_token": csrf(page.text), "name": "X"})
    assert r.status_code == 404
    configure(db)
    assert f'href="{BASE}/join"' in client.get(f"{BASE}/sign-in").text
    page = client.get(f"{BASE}/join")
    assert page.status_code == 200
    for name in ("name", "email", "phone", "birthday", "consent_email", "consent_sms"):
        assert f'name="{name}"' in page.text
    assert 'href="https://example.com/terms"' in page.text
    assert " checked" not in page.text  # consent boxes start unticked


def test_the_form_shows_only_the_fields_the_program_asks(client, db, portal):
    configure(
        db,
        fields={"email": "off", "phone": "required", "birthday": "off"},
        verify_with="phone",
        consents={"email": False, "sms": True},
        terms_url=None,
    )
    page = client.get(f"{BASE}/join?lang=ko").text
    assert 'name="phone"' in page and 'name="email"' not in page
    assert 'name="birthday"' not in page and 'name="consent_email"' not in page
    assert "휴대폰 번호" in page and "terms" not in page


def test_wrong_fields_come_back_marked_with_the_input_kept(client, db, portal, outbox):
    configure(db)
    r = join(client, email="", phone="12", birthday="2999-01-01")
    assert r.status_code == 422
    assert r.text.count('class="error" id=') == 3
    assert "Please fill this in." in r.text  # e-mail is required
    assert "not a mobile phone number" in r.text and "a date in the past" in r.text
    assert 'value="박하늘"' in r.text and 'value="2999-01-01"' in r.text
    r = join(client, email="not-an-address")
    assert r.status_code == 422 and "not an e-mail address" in r.text
    page = client.get(f"{BASE}/join")
    r = client.post(f"{BASE}/join", data={"csrf_token": csrf(page.text), "email": NEW_EMAIL})
    assert r.status_code == 422 and 'id="name-error"' in r.text
    assert outbox == [] and count_members(db, NEW_EMAIL) == 0


def test_a_wrong_code_creates_nobody(client, db, portal, outbox):
    configure(db)
    r = join(client, email=NEW_EMAIL)
    assert r.status_code == 200 and len(outbox) == 1 and outbox[0].to == NEW_EMAIL
    right = code_from(outbox[0].body)
    wrong = "000000" if right != "000000" else "111111"
    r2 = confirm(client, r.text, NEW_EMAIL, wrong)
    assert r2.status_code == 422 and "wrong or has expired" in r2.text
    assert count_members(db, NEW_EMAIL) == 0


def test_the_right_code_makes_one_member_signed_in_with_her_consents_and_points(
    client, db, portal, outbox
):
    configure(db)
    with db.unit_of_work() as s:
        doc = RuleSetDoc.model_validate(
            {
                "rules": [
                    {"id": "base", "name": "base", "kind": "base_rate", "points": 10,
                     "per_amount": "1000"},
                    {"id": "welcome", "name": "Welcome", "kind": "event", "event": "signup",
                     "points": 500},
                ]
            }
        )  # fmt: skip
        publishing.publish(s, bakery(s), doc, actor=CLI, now=clock.now())
    r = join(client, lang="ko", email=NEW_EMAIL.upper(), phone="010-2222-3333",
             birthday="1991-04-05", consent_sms="on")  # fmt: skip
    assert r.status_code == 200
    assert outbox[0].subject.endswith("가입 인증 코드")  # the page's language
    r2 = confirm(client, r.text, NEW_EMAIL, code_from(outbox[0].body))
    assert r2.status_code == 303, r2.text
    assert r2.headers["location"] == f"{BASE}/"
    assert "patron_member=" in r2.headers["set-cookie"]
    home = client.get(f"{BASE}/")
    assert home.status_code == 200 and "박하늘" in home.text
    with db.unit_of_work(readonly=True) as s:
        member = s.scalars(select(Member).where(Member.email == NEW_EMAIL)).one()
        assert member.phone == "+821022223333" and member.language == "ko"
        assert member.birthday is not None and member.birthday.isoformat() == "1991-04-05"
        consents = s.scalars(select(ConsentRecord).where(ConsentRecord.member_id == member.id))
        assert [(c.channel, c.granted, c.source) for c in consents] == [("sms", True, "portal")]
        assert member.marketing_consent is True
        account = s.scalars(select(Account).where(Account.member_id == member.id)).one()
        assert account.program_id == bakery(s).id and account.available == 500
    # Signed in, the form sends her to her page.
    r3 = client.get(f"{BASE}/join", follow_redirects=False)
    assert r3.status_code == 303 and r3.headers["location"] == f"{BASE}/"
    # The same code again does nothing more.
    with db.unit_of_work() as s:
        assert signup.finish(s, bakery(s), NEW_EMAIL, code_from(outbox[0].body),
                             now=clock.now()) is None  # fmt: skip
    assert count_members(db, NEW_EMAIL) == 1


def test_a_member_gets_the_same_page_and_her_sign_in_code_signs_her_in(client, db, portal, outbox):
    configure(db)
    known = join(client, email=A_EMAIL)
    stranger = join(client, email=NEW_EMAIL)
    assert known.status_code == stranger.status_code == 200
    assert known.text.replace(A_EMAIL, "X") == stranger.text.replace(NEW_EMAIL, "X")
    assert [m.to for m in outbox] == [A_EMAIL, NEW_EMAIL]
    assert "가입" not in outbox[0].subject and "로그인" in outbox[0].body  # a sign-in code (ko)
    r = confirm(client, known.text, A_EMAIL, code_from(outbox[0].body))
    assert r.status_code == 303 and r.headers["location"] == f"{BASE}/"
    assert client.get(f"{BASE}/").status_code == 200
    assert count_members(db, A_EMAIL) == 1


def test_two_sign_ups_for_one_contact_make_one_member(client, db, portal, outbox):
    configure(db)
    first = join(client, email=NEW_EMAIL)
    code = code_from(outbox[-1].body)
    # Someone else joined with that address in the meantime (e.g. at the till).
    with db.unit_of_work() as s:
        from patron.members import service as members
        from patron.members.schemas import MemberCreate

        members.create_member(
            s, MemberCreate(name="Till", email=NEW_EMAIL, program="bakery"),
            program=bakery(s), actor=CLI, now=clock.now(),
        )  # fmt: skip
    r = confirm(client, first.text, NEW_EMAIL, code)
    assert r.status_code == 200 and "already a member" in r.text
    assert "patron_member=" not in r.headers.get("set-cookie", "")
    assert count_members(db, NEW_EMAIL) == 1


def test_another_members_phone_is_not_taken_nor_revealed(client, db, portal, outbox):
    configure(db)
    r = join(client, email=NEW_EMAIL, phone=A_PHONE)
    assert r.status_code == 200
    assert confirm(client, r.text, NEW_EMAIL, code_from(outbox[-1].body)).status_code == 303
    with db.unit_of_work(readonly=True) as s:
        member = s.scalars(select(Member).where(Member.email == NEW_EMAIL)).one()
        assert member.phone is None


def test_codes_per_contact_and_requests_per_address_are_limited(client, db, portal, outbox):
    configure(db)
    answers = [join(client, email=NEW_EMAIL) for _ in range(4)]
    assert {a.status_code for a in answers} == {200}
    assert len(outbox) == 3  # the fourth got the same page, no code
    page = client.get(f"{BASE}/join")
    token = csrf(page.text)
    statuses = [
        client.post(f"{BASE}/join", data={"csrf_token": token, "name": ""}).status_code
        for _ in range(30)
    ]
    assert statuses[-1] == 429 and 422 in statuses


def test_forms_need_the_csrf_token(client, db, portal, outbox):
    configure(db)
    client.get(f"{BASE}/join")
    r = client.post(f"{BASE}/join", data={"name": "X", "email": NEW_EMAIL})
    assert r.status_code == 403 and outbox == []
    r = client.post(f"{BASE}/join/code", data={"contact": NEW_EMAIL, "code": "123456"})
    assert r.status_code == 403


def test_settings_refuse_a_form_without_a_contact_to_verify():
    with pytest.raises(ValueError, match="e-mail or a phone"):
        signup.SignupSettings.model_validate(
            {"fields": {"email": "off", "phone": "off"}, "verify_with": "email"}
        )
    with pytest.raises(ValueError, match="must be required"):
        signup.SignupSettings.model_validate(
            {"fields": {"email": "optional", "phone": "required"}, "verify_with": "email"}
        )
    with pytest.raises(ValueError, match="https"):
        signup.SignupSettings.model_validate({"terms_url": "http://example.com/terms"})


@pytest.mark.postgresql_only
def test_the_same_code_confirmed_twice_at_once_makes_one_member(db, portal):
    configure(db)
    form = signup.SignupForm(
        name="Race", email=NEW_EMAIL, phone=None, birthday=None, consents=(),
        channel="email", contact=NEW_EMAIL,
    )  # fmt: skip
    with db.unit_of_work() as s:
        message = signup.begin(s, bakery(s), form, lang="en", now=clock.now())
    assert message is not None
    code = code_from(message.body)
    barrier = threading.Barrier(2)

    def attempt() -> bool:
        barrier.wait()
        with db.unit_of_work() as s:
            done = signup.finish(s, bakery(s), NEW_EMAIL, code, now=clock.now())
        return done is not None and done.created

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: attempt(), range(2)))
    assert sorted(results) == [False, True]
    assert count_members(db, NEW_EMAIL) == 1
