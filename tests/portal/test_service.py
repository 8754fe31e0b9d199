"""One-time codes and member sessions, on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select

from patron import clock
from patron.members.models import PortalCode
from patron.portal import service
from patron.portal.models import PortalSession
from tests.portal.conftest import A_EMAIL, A_PHONE, bakery, code_from, new_code


def test_a_code_signs_in_once_and_is_stored_hashed(db, portal):
    code = new_code(db)
    with db.unit_of_work() as s:
        row = s.scalars(select(PortalCode)).one()
        assert code not in row.code_hash and len(row.code_hash) == 64
        signed = service.verify_code(s, bakery(s), A_EMAIL, code, now=clock.now())
        assert signed is not None
        stored = s.get(PortalSession, signed.session_id)
        assert stored is not None and stored.member_id == portal.a
        assert signed.token not in stored.token_hash
        assert service.resolve_session(s, bakery(s), signed.token, now=clock.now()) is not None
    with db.unit_of_work() as s:
        assert service.verify_code(s, bakery(s), A_EMAIL, code, now=clock.now()) is None


def test_phone_in_any_format_and_email_in_any_case(db, portal):
    code = new_code(db, "01012345678")
    with db.unit_of_work() as s:
        assert service.verify_code(s, bakery(s), A_PHONE, code, now=clock.now()) is not None
    code = new_code(db, "MinJi@Example.com")
    with db.unit_of_work() as s:
        assert service.verify_code(s, bakery(s), A_EMAIL, code, now=clock.now()) is not None


def test_the_message_is_in_the_members_language_and_goes_to_her_contact(db, portal):
    with db.unit_of_work() as s:
        message = service.request_code(s, bakery(s), A_PHONE, now=clock.now())
    assert message is not None
    assert message.channel == "sms" and message.to == "+821012345678"
    assert "로그인 코드" in message.body and code_from(message.body)


def test_a_code_expires_after_ten_minutes(db, portal):
    code = new_code(db)
    clock.freeze(clock.now() + timedelta(minutes=10, seconds=1))
    with db.unit_of_work() as s:
        assert service.verify_code(s, bakery(s), A_EMAIL, code, now=clock.now()) is None


def test_five_wrong_tries_end_a_code(db, portal):
    code = new_code(db)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        with db.unit_of_work() as s:
            assert service.verify_code(s, bakery(s), A_EMAIL, wrong, now=clock.now()) is None
    with db.unit_of_work() as s:
        assert s.scalars(select(PortalCode.tries)).one() == 5
        assert service.verify_code(s, bakery(s), A_EMAIL, code, now=clock.now()) is None


def test_a_new_code_replaces_the_old_one(db, portal):
    first = new_code(db)
    second = new_code(db)
    with db.unit_of_work() as s:
        if first != second:
            assert service.verify_code(s, bakery(s), A_EMAIL, first, now=clock.now()) is None
        assert service.verify_code(s, bakery(s), A_EMAIL, second, now=clock.now()) is not None


def test_an_unknown_contact_gets_no_code_and_no_row(db, portal):
    with db.unit_of_work() as s:
        for contact in ("nobody@example.com", "010-9999-0000", "not a contact", ""):
            assert service.request_code(s, bakery(s), contact, now=clock.now()) is None
            assert service.verify_code(s, bakery(s), contact, "123456", now=clock.now()) is None
        assert s.scalars(select(PortalCode)).all() == []


def test_a_blocked_member_gets_no_code(db, portal):
    from patron.members.models import Member

    with db.unit_of_work() as s:
        member = s.get(Member, portal.a)
        assert member is not None
        member.status = "blocked"
    with db.unit_of_work() as s:
        assert service.request_code(s, bakery(s), A_EMAIL, now=clock.now()) is None


def test_rate_limits_per_contact_and_per_ip():
    throttle = service.Throttle()
    assert [throttle.contact_allows(1, "a@example.com") for _ in range(4)] == [
        True, True, True, False,
    ]  # fmt: skip
    assert throttle.contact_allows(1, "b@example.com")
    assert throttle.contact_allows(2, "a@example.com")
    assert all(throttle.ip_allows("10.0.0.1") for _ in range(30))
    assert not throttle.ip_allows("10.0.0.1")
    assert throttle.ip_allows("10.0.0.2")


def test_workers_sharing_a_redis_storage_share_one_count():
    """Two server processes (two Throttles) on the machine's Redis: the fourth code for a contact
    is refused whichever process is asked; memory storage would have allowed six."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    first = service.Throttle("redis://127.0.0.1:6379")
    second = service.Throttle("redis://127.0.0.1:6379")
    contact = f"{secrets.token_hex(8)}@example.com"
    answers = [throttle.contact_allows(1, contact) for throttle in (first, second, first, second)]
    assert answers == [True, True, True, False]
    apart = [service.Throttle() for _ in range(2)]
    assert all(throttle.contact_allows(1, contact) for throttle in apart for _ in range(3))


def test_revoke_only_ends_the_members_own_session(db, portal):
    code = new_code(db)
    with db.unit_of_work() as s:
        signed = service.verify_code(s, bakery(s), A_EMAIL, code, now=clock.now())
        assert signed is not None
        assert not service.revoke(s, portal.b, signed.session_id, now=clock.now())
        assert service.revoke(s, portal.a, signed.session_id, now=clock.now())
        assert service.resolve_session(s, bakery(s), signed.token, now=clock.now()) is None
