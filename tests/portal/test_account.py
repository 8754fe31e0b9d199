"""The profile page through HTTP: contact changes by code, birthday once, preferences, consent
history — each only ever on the signed-in member's own row."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from patron.audit.models import AuditRecord
from patron.members import consent
from patron.members.models import Member
from patron.portal import account, i18n, service
from patron.programs.models import Store
from tests.portal.conftest import A_EMAIL, B_EMAIL, bakery, code_from
from tests.portal.test_pages import BASE, csrf, sign_in

NEW_EMAIL = "minji.new@example.com"


@pytest.fixture
def sent(monkeypatch) -> list[service.CodeMessage]:
    """Every code or notice the member pages send, in order."""
    out: list[service.CodeMessage] = []
    for where in (
        "patron.portal.views.send_code",
        "patron.portal.account_views.send_code",
    ):
        monkeypatch.setattr(where, out.append)
    return out


def member(db, member_id: int) -> Member:
    with db.unit_of_work(readonly=True) as s:
        found = s.get(Member, member_id)
        assert found is not None
        s.expunge(found)
        return found


def ask(client: TestClient, token: str, contact: str):
    return client.post(f"{BASE}/profile/contact", data={"contact": contact, "csrf_token": token})


def confirm(client: TestClient, token: str, contact: str, code: str):
    return client.post(
        f"{BASE}/profile/contact/code",
        data={"contact": contact, "code": code, "csrf_token": token},
        follow_redirects=False,
    )


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def test_profile_shows_her_details_and_links(client, portal, sent):
    sign_in(client, sent)
    page = client.get(f"{BASE}/profile").text
    assert "김민지" in page and A_EMAIL in page and "010-1234-5678" in page
    assert f'href="{BASE}/profile/contact"' in page and f'href="{BASE}/privacy"' in page
    assert B_EMAIL not in page
    form = client.get(f"{BASE}/profile/contact")
    assert form.status_code == 200 and 'name="csrf_token"' in form.text


def test_a_new_email_is_changed_once_its_code_comes_back(db, client, portal, sent):
    token = sign_in(client, sent)
    r = ask(client, token, "  Minji.New@Example.com ")
    assert r.status_code == 200 and NEW_EMAIL in r.text
    message = sent[-1]
    assert message.to == NEW_EMAIL and message.channel == "email"
    assert "연락처 확인 코드" in message.body  # in her language
    assert member(db, portal.a).email == A_EMAIL  # nothing changes before the code
    r = confirm(client, token, NEW_EMAIL, code_from(message.body))
    assert r.status_code == 303 and r.headers["location"] == f"{BASE}/profile"
    assert member(db, portal.a).email == NEW_EMAIL
    assert NEW_EMAIL in client.get(f"{BASE}/profile").text
    with db.unit_of_work(readonly=True) as s:
        record = s.execute(
            select(AuditRecord.actor, AuditRecord.after)
            .where(AuditRecord.action == "member.updated", AuditRecord.subject_id == str(portal.a))
            .order_by(AuditRecord.id.desc())
        ).first()
    assert record is not None and tuple(record) == (f"member:{portal.a}", {"email": NEW_EMAIL})
    # The code is used up; she signs in with the new address from now on.
    assert confirm(client, token, NEW_EMAIL, code_from(message.body)).status_code == 422
    with TestClient(client.app) as fresh:
        sign_in(fresh, sent, NEW_EMAIL)


def test_a_new_phone_goes_by_text_message(db, client, portal, sent):
    token = sign_in(client, sent)
    r = ask(client, token, "010-9999-8888")
    assert r.status_code == 200
    assert "010-9999-8888" in r.text
    message = sent[-1]
    assert message.channel == "sms" and message.to == "+821099998888"
    r = confirm(client, token, "+821099998888", code_from(message.body))
    assert r.status_code == 303
    assert member(db, portal.a).phone == "+821099998888"


def test_a_wrong_code_changes_nothing(db, client, portal, sent):
    token = sign_in(client, sent)
    ask(client, token, NEW_EMAIL)
    r = confirm(client, token, NEW_EMAIL, wrong(code_from(sent[-1].body)))
    assert r.status_code == 422
    assert i18n.translate("code.wrong", "ko") in r.text
    assert member(db, portal.a).email == A_EMAIL


def test_not_a_contact_is_said_so(client, portal, sent):
    token = sign_in(client, sent)
    before = len(sent)
    for bad in ("no-at-sign", "a@", "12"):
        r = ask(client, token, bad)
        assert r.status_code == 422, bad
        assert i18n.translate("account.contact.invalid", "ko") in r.text
    assert len(sent) == before


def test_another_members_contact_is_answered_alike_and_refused_on_confirm(db, client, portal, sent):
    token = sign_in(client, sent)
    taken = ask(client, token, B_EMAIL)
    free = ask(client, token, NEW_EMAIL)
    assert taken.status_code == free.status_code == 200
    assert taken.text.replace(B_EMAIL, "X") == free.text.replace(NEW_EMAIL, "X")
    to_b = next(m for m in sent if m.to == B_EMAIL)
    r = confirm(client, token, B_EMAIL, code_from(to_b.body))
    assert r.status_code == 409
    assert i18n.translate("account.contact.taken", "ko") in r.text
    assert member(db, portal.a).email == A_EMAIL
    assert member(db, portal.b).email == B_EMAIL


def test_one_member_cannot_finish_anothers_contact_change(app, db, client, portal, sent):
    token = sign_in(client, sent)
    ask(client, token, NEW_EMAIL)
    code = code_from(sent[-1].body)
    with TestClient(app) as other:
        b_token = sign_in(other, sent, B_EMAIL)
        assert confirm(other, b_token, NEW_EMAIL, code).status_code == 422
    assert member(db, portal.b).email == B_EMAIL
    assert confirm(client, token, NEW_EMAIL, code).status_code == 303  # hers still works
    assert member(db, portal.a).email == NEW_EMAIL


def test_asking_too_often_for_one_contact_sends_no_more_codes(client, portal, sent):
    token = sign_in(client, sent)
    pages = [ask(client, token, NEW_EMAIL) for _ in range(5)]
    assert {p.status_code for p in pages} == {200}
    assert len([m for m in sent if m.to == NEW_EMAIL]) == 3


def test_the_birthday_is_set_once_and_then_read_only(db, client, portal, sent):
    token = sign_in(client, sent)
    assert 'name="birthday"' in client.get(f"{BASE}/profile").text
    for bad, key in (
        ("2026-03-03", "account.birthday.future"),  # tomorrow in Seoul
        ("1899-12-31", "account.birthday.too_early"),
        ("17/05/1990", "account.birthday.invalid"),
        ("", "account.birthday.invalid"),
    ):
        r = client.post(f"{BASE}/profile/birthday", data={"birthday": bad, "csrf_token": token})
        assert r.status_code == 422, bad
        assert i18n.translate(key, "ko") in r.text, bad
    assert member(db, portal.a).birthday is None
    r = client.post(
        f"{BASE}/profile/birthday",
        data={"birthday": "2026-03-02", "csrf_token": token},  # today in Seoul is fine
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get(f"{BASE}/profile").text
    assert "2026년 3월 2일" in page and 'name="birthday"' not in page
    assert i18n.translate("account.birthday.ask_shop", "ko") in page
    r = client.post(
        f"{BASE}/profile/birthday", data={"birthday": "1990-05-17", "csrf_token": token}
    )
    assert r.status_code == 422
    assert i18n.translate("account.birthday.already_set", "ko") in r.text
    assert str(member(db, portal.a).birthday) == "2026-03-02"


def test_preferences_only_take_her_channels_and_the_programs_active_stores(
    app, db, client, portal, sent, frozen
):
    with db.unit_of_work() as s:
        s.add(Store(program_id=bakery(s).id, code="closed", name="Closed", active=False,
                    created_at=frozen))  # fmt: skip
    token = sign_in(client, sent)
    page = client.get(f"{BASE}/profile").text
    assert 'value="mapo"' in page and 'value="closed"' not in page
    r = client.post(
        f"{BASE}/profile/preferences",
        data={"channel": "sms", "store": "mapo", "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert member(db, portal.a).preferences == {"channel": "sms", "store": "mapo"}
    for channel, store in (("fax", ""), ("", "closed"), ("", "nowhere")):
        r = client.post(
            f"{BASE}/profile/preferences",
            data={"channel": channel, "store": store, "csrf_token": token},
        )
        assert r.status_code == 422, (channel, store)
        assert i18n.translate("account.preferences.invalid", "ko") in r.text
    assert member(db, portal.a).preferences == {"channel": "sms", "store": "mapo"}
    r = client.post(
        f"{BASE}/profile/preferences",
        data={"channel": "email", "store": "", "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert member(db, portal.a).preferences == {"channel": "email"}
    # B has no phone: text messages are not hers to choose.
    with TestClient(app) as other:
        b_token = sign_in(other, sent, B_EMAIL)
        assert 'value="sms"' not in other.get(f"{BASE}/profile").text
        r = other.post(
            f"{BASE}/profile/preferences", data={"channel": "sms", "csrf_token": b_token}
        )
        assert r.status_code == 422
    assert member(db, portal.b).preferences == {}


def test_consent_history_in_her_language_and_the_programs_time(client, portal, sent):
    token = sign_in(client, sent)
    assert i18n.translate("account.history.none", "ko") in client.get(f"{BASE}/profile").text
    client.post(f"{BASE}/profile/consent", data={"csrf_token": token, "email": "on"})
    page = client.post(
        f"{BASE}/profile/consent", data={"csrf_token": token}, follow_redirects=True
    ).text
    history = page.split(i18n.translate("account.history", "ko"))[1]
    # 03:00 UTC is noon in Seoul.
    assert "2026년 3월 2일 오후 12:00" in history
    assert history.count(i18n.translate("account.source.portal", "ko")) >= 2
    assert i18n.translate("account.history.granted", "ko") in history
    assert i18n.translate("account.history.withdrawn", "ko") in history


def test_every_consent_source_and_channel_has_words():
    keys = set(i18n.catalog())
    assert set(account.SOURCE_KEYS) == set(consent.SOURCES)
    assert set(account.SOURCE_KEYS.values()) <= keys
    assert set(account.CHANNEL_KEYS) == set(consent.CHANNELS)
    assert set(account.CHANNEL_KEYS.values()) <= keys
    assert {"account.source.other", "account.channel.other"} <= keys


def test_profile_forms_need_the_csrf_token(db, client, portal, sent):
    sign_in(client, sent)
    for path, data in (
        ("/profile/contact", {"contact": NEW_EMAIL}),
        ("/profile/contact/code", {"contact": NEW_EMAIL, "code": "123456"}),
        ("/profile/birthday", {"birthday": "1990-05-17"}),
        ("/profile/preferences", {"channel": "email"}),
    ):
        assert client.post(BASE + path, data=data).status_code == 403, path
    assert member(db, portal.a).birthday is None


def test_signed_out_profile_pages_go_to_sign_in(client, portal):
    for path in ("/profile/contact", "/privacy", "/privacy/export.json"):
        r = client.get(BASE + path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"{BASE}/sign-in", path


def test_profile_page_is_light(client, portal, sent):
    token = sign_in(client, sent)
    client.post(f"{BASE}/profile/consent", data={"csrf_token": token, "email": "on"})
    assert len(client.get(f"{BASE}/profile").content) < 30_000
    assert csrf(client.get(f"{BASE}/profile/contact").text) == token
