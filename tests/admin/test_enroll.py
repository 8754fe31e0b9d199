"""Enrolling a member in the admin UI over HTTP: the API's normalisation and audit, card issue,
duplicate detection that offers the existing member, the role matrix and program reach, and the
welcome e-mail through the delivery queue to a real SMTP server."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.admin import service
from patron.admin.views.enroll import _luhn_digit
from patron.audit.models import AuditRecord
from patron.audit.service import CLI
from patron.delivery import runner
from patron.events.models import Delivery
from patron.ledger.models import Account
from patron.members.models import Card, ConsentRecord, Member
from patron.programs.models import Program
from tests.admin.helpers import PASSWORD, STAFF, sign_in
from tests.conftest import T0
from tests.factories import SHANGHAI, make_member, make_program
from tests.support.mail import (  # noqa: F401
    make_smtp_server_fixture,
    smtp_server_fixture,
    smtp_tls_fixture,
)

LIMITED = "seoul-support@demo.patron"


@pytest.fixture
def web(app, staff, seeded):
    with TestClient(app) as client:
        yield client


def enroll(client, token: str, **fields: str):
    data = {
        "csrf_token": token,
        "program": "bakery",
        "name": "최유나",
        "language": "ko",
        "card_choice": "generated",
        **fields,
    }
    return client.post("/admin/members/new", data=data, follow_redirects=False)


def member_count(db) -> int:
    with db.unit_of_work(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(Member)) or 0


def test_support_enrolls_with_the_apis_normalisation_a_new_card_and_consent(web, db, staff):
    token = sign_in(web, STAFF["support"][0])
    form = web.get("/admin/members/new")
    assert form.status_code == 200 and "New member" in form.text
    answer = enroll(
        web,
        token,
        phone="010 9876 5432",
        email="Yuna.Choi@Example.com",
        birthday="1994-05-17",
        consent_email="1",
    )
    assert answer.status_code == 303, answer.text[:800]
    member_id = int(
        re.search(r"/members/(\d+)/welcome\?program=bakery", answer.headers["location"])[1]
    )
    with db.unit_of_work(readonly=True) as s:
        m = s.get(Member, member_id)
        assert (m.phone, m.email, m.language, str(m.birthday)) == (
            "+821098765432",
            "yuna.choi@example.com",
            "ko",
            "1994-05-17",
        )
        (card,) = s.scalars(select(Card).where(Card.member_id == member_id))
        assert card.kind == "ecard" and re.fullmatch(r"[1-9][0-9]{11}", card.number)
        assert _luhn_digit(card.number[:-1]) == card.number[-1]
        number = card.number
        program = s.scalars(select(Program).where(Program.code == "bakery")).one()
        assert s.scalar(
            select(Account.id).where(
                Account.member_id == member_id, Account.program_id == program.id
            )
        )
        consents = {
            (r.channel, r.granted, r.source)
            for r in s.scalars(select(ConsentRecord).where(ConsentRecord.member_id == member_id))
        }
        assert consents == {("email", True, "enrollment"), ("sms", False, "enrollment")}
        actions = set(
            s.scalars(
                select(AuditRecord.action).where(
                    AuditRecord.subject_id == str(member_id),
                    AuditRecord.actor == f"user:{staff['support']}",
                )
            )
        )
        assert {"member.created", "member.enrolled", "members.consent_changed"} <= actions
    sheet = web.get(answer.headers["location"])
    assert sheet.status_code == 200
    assert number in sheet.text and "010-9876-5432" in sheet.text
    assert "/m/bakery/" in sheet.text


def test_the_same_phone_offers_the_existing_member_and_never_creates_a_second(web, db, seeded):
    token = sign_in(web, STAFF["support"][0])
    before = member_count(db)
    answer = enroll(web, token, name="Minji Kim", phone="+82 10-1234-5678")
    assert answer.status_code == 409
    assert "This looks like 김민지 (010-1234-5678)." in answer.text
    assert f'href="/admin/members/{seeded.member_id}?program=bakery"' in answer.text
    assert "same phone number" in answer.text and "Already a member of this program." in answer.text
    assert "Create a new member anyway" not in answer.text
    # Sent anyway (a hand-made request): still refused, nothing written.
    assert enroll(web, token, name="Minji Kim", phone="01012345678", anyway="1").status_code == 409
    typed = enroll(web, token, name="Someone", card_choice="typed", card="bkr100001")
    assert typed.status_code == 409 and "박서준" in typed.text and "same card" in typed.text
    assert member_count(db) == before


def test_the_same_name_and_birthday_warns_and_may_be_created_anyway(web, db):
    with db.unit_of_work() as s:
        program = s.scalars(select(Program).where(Program.code == "bakery")).one()
        make_member(s, now=T0, program=program, name="이지은", birthday="1990-03-01")
    token = sign_in(web, STAFF["support"][0])
    before = member_count(db)
    first = enroll(web, token, name=" 이지은 ", birthday="1990-03-01", card_choice="none")
    assert first.status_code == 409 and "Create a new member anyway" in first.text
    assert "same name and birthday in this program" in first.text
    assert member_count(db) == before
    again = enroll(web, token, name="이지은", birthday="1990-03-01", card_choice="none", anyway="1")
    assert again.status_code == 303 and member_count(db) == before + 1


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # engine-independent
def test_bad_input_comes_back_under_its_field(web, db):
    token = sign_in(web, STAFF["support"][0])
    before = member_count(db)
    for fields, field in (
        ({"name": ""}, "e-name"),
        ({"phone": "12"}, "e-phone"),
        ({"phone": "010-12"}, "e-phone"),
        ({"email": "nope"}, "e-email"),
        ({"birthday": "1994-13-40"}, "e-birthday"),
        ({"card_choice": "typed", "card": ""}, "e-card"),
        ({"card_choice": "typed", "card": "x y"}, "e-card"),
    ):
        answer = enroll(web, token, **fields)
        assert answer.status_code == 422, fields
        assert f'id="{field}-error"' in answer.text, (fields, answer.text[:2000])
    assert member_count(db) == before


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # engine-independent
@pytest.mark.parametrize("role", ["viewer", "marketer"])
def test_roles_without_members_edit_cannot_enroll(web, db, role):
    token = sign_in(web, STAFF[role][0])
    assert web.get("/admin/members/new").status_code == 403
    assert enroll(web, token).status_code == 403
    assert "New member" not in web.get("/admin/members").text


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # engine-independent
def test_a_user_limited_to_programs_enrolls_only_there_and_is_not_told_who_is_elsewhere(
    web, db, seeded
):
    with db.unit_of_work() as s:
        shanghai = make_program(s, now=T0, base=SHANGHAI, stores=("jingan",))
        make_member(s, now=T0, program=shanghai, name="王芳", phone="+82 10-4444-8888")
        service.create_user(
            s, email=LIMITED, name="Seoul support", role="support", password=PASSWORD,
            actor=CLI, now=T0, programs=["bakery"],
        )  # fmt: skip
    token = sign_in(web, LIMITED)
    page = web.get("/admin/members/new").text
    assert 'value="bakery"' in page and 'value="shanghai"' not in page
    assert enroll(web, token, program="shanghai").status_code == 403
    hidden = enroll(web, token, phone="010-4444-8888")
    assert hidden.status_code == 409
    assert "A member of another program already has this." in hidden.text
    assert "王芳" not in hidden.text and "Add " not in hidden.text


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # engine-independent
def test_an_owner_adds_a_member_of_another_program(web, db, seeded):
    with db.unit_of_work() as s:
        shanghai = make_program(s, now=T0, base=SHANGHAI, stores=("jingan",))
        wang = make_member(s, now=T0, program=shanghai, name="王芳", phone="+82 10-4444-8888")
    token = sign_in(web, STAFF["owner"][0])
    offer = enroll(web, token, phone="01044448888")
    assert offer.status_code == 409 and "Add 王芳 to this program" in offer.text
    answer = web.post(
        f"/admin/members/{wang.id}/enroll",
        data={"csrf_token": token, "program": "bakery"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/admin/members/{wang.id}/welcome?program=bakery"
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(func.count()).where(Account.member_id == wang.id)) == 2


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # engine-independent
def test_the_welcome_e_mail_goes_through_the_delivery_queue_once(web, db, smtp_server):
    token = sign_in(web, STAFF["support"][0])
    created = enroll(web, token, email="yuna@example.com", language="en")
    welcome = created.headers["location"]
    member_id = int(re.search(r"/members/(\d+)/", welcome)[1])
    # The program sends the welcome itself: until its event is dispatched, no second one.
    page = web.get(welcome).text
    assert "A welcome message is already on its way." in page
    with db.unit_of_work() as s:
        from patron.events.models import DomainEvent

        for event in s.scalars(select(DomainEvent).where(DomainEvent.member_id == member_id)):
            event.dispatched = True  # as if the program had its welcome switched off
    sent = web.post(
        f"/admin/members/{member_id}/welcome/email",
        data={"csrf_token": token, "program": "bakery"},
        follow_redirects=False,
    )
    assert sent.status_code == 303 and "done=emailed" in sent.headers["location"]
    with db.unit_of_work(readonly=True) as s:
        (row,) = s.scalars(select(Delivery).where(Delivery.member_id == member_id))
        row_id = row.id
        assert (row.channel, row.recipient, row.event_kind) == (
            "email",
            "yuna@example.com",
            "member.enrolled",
        )
        assert s.scalar(
            select(AuditRecord.id).where(AuditRecord.action == "member.welcome_emailed")
        )
    again = web.post(
        f"/admin/members/{member_id}/welcome/email",
        data={"csrf_token": token, "program": "bakery"},
        follow_redirects=False,
    )
    assert "refused=enroll.welcome.refused.on_its_way" in again.headers["location"]
    assert runner.deliver_one(db, row_id, settings=smtp_server.settings()) == "delivered"
    (mail,) = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["yuna@example.com"] and "최유나" in mail.text


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # engine-independent
def test_no_e_mail_address_no_welcome_e_mail(web, db):
    token = sign_in(web, STAFF["support"][0])
    created = enroll(web, token, phone="010-3333-1111")
    member_id = int(re.search(r"/members/(\d+)/", created.headers["location"])[1])
    assert (
        "No e-mail address: print the welcome sheet instead."
        in web.get(created.headers["location"]).text
    )
    answer = web.post(
        f"/admin/members/{member_id}/welcome/email",
        data={"csrf_token": token, "program": "bakery"},
        follow_redirects=False,
    )
    assert "refused=enroll.welcome.refused.no_email" in answer.headers["location"]
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 0
