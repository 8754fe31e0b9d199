"""Codes that prove a contact before a sign-up or a contact change, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from patron import clock
from patron.members.models import PortalVerification
from patron.portal import verify
from tests.portal.conftest import bakery, code_from

NEW = "new@example.com"


def start(db, *, purpose="sign_up", contact=NEW, member_id=None, payload=None, lang="ko"):
    with db.unit_of_work() as s:
        message = verify.start(
            s, bakery(s), purpose=purpose, channel="email", contact=contact, lang=lang,
            now=clock.now(), member_id=member_id, payload=payload,
        )  # fmt: skip
    return message


def confirm(db, code, *, purpose="sign_up", contact=NEW, member_id=None):
    with db.unit_of_work() as s:
        return verify.confirm(
            s, bakery(s), purpose=purpose, contact=contact, code=code, now=clock.now(),
            member_id=member_id,
        )  # fmt: skip


def test_the_code_confirms_once_and_hands_back_the_payload(db, portal):
    message = start(db, payload={"name": "박지훈"})
    assert message.to == NEW and message.channel == "email"
    assert "가입 인증 코드" in message.body
    code = code_from(message.body)
    with db.unit_of_work() as s:
        row = s.scalars(select(PortalVerification)).one()
        assert code not in row.code_hash and len(row.code_hash) == 64
    done = confirm(db, code)
    assert done is not None and done.payload == {"name": "박지훈"} and done.member_id is None
    assert confirm(db, code) is None  # used up


def test_five_wrong_tries_end_the_code_and_expiry_ends_it_too(db, portal):
    code = code_from(start(db).body)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        assert confirm(db, wrong) is None
    assert confirm(db, code) is None
    code = code_from(start(db).body)
    clock.freeze(clock.now() + timedelta(minutes=10, seconds=1))
    assert confirm(db, code) is None


def test_a_new_code_ends_the_old_one_and_purposes_do_not_mix(db, portal):
    first = code_from(start(db).body)
    second = code_from(start(db).body)
    assert confirm(db, first, purpose="contact") is None
    assert confirm(db, second) is not None
    with db.unit_of_work() as s:
        rows = s.scalars(select(PortalVerification).order_by(PortalVerification.id)).all()
        assert [row.used_at is not None for row in rows] == [True, True]


def test_only_the_member_who_started_a_contact_change_can_finish_it(db, portal):
    code = code_from(start(db, purpose="contact", member_id=portal.a).body)
    assert confirm(db, code, purpose="contact", member_id=portal.b) is None
    done = confirm(db, code, purpose="contact", member_id=portal.a)
    assert done is not None and done.member_id == portal.a and done.contact == NEW


def test_an_unknown_purpose_is_refused(db, portal):
    with pytest.raises(ValueError):
        start(db, purpose="anything")
