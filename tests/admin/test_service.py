"""Staff users: argon2 passwords, lock-out measured by the clock, sessions, roles."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from patron import clock
from patron.admin import roles, service
from patron.admin.models import StaffSession, StaffUser
from patron.audit.models import AuditRecord
from patron.audit.service import CLI
from patron.errors import Conflict, Invalid
from tests.admin.conftest import PRODUCTION_HASHER
from tests.admin.helpers import PASSWORD
from tests.conftest import T0

EMAIL = "Owner@Demo.Patron"


@pytest.fixture
def owner(db, frozen) -> int:
    with db.unit_of_work() as s:
        user = service.create_user(
            s, email=EMAIL, name="Olivia", role="owner", password=PASSWORD, actor=CLI, now=T0
        )
        return user.id


def sign_in(db, password: str = PASSWORD, email: str = "owner@demo.patron"):
    with db.unit_of_work() as s:
        return service.authenticate(s, email=email, password=password, now=clock.now())


def actions(db) -> list[str]:
    with db.unit_of_work(readonly=True) as s:
        return list(s.scalars(select(AuditRecord.action).order_by(AuditRecord.id)))


def test_production_passwords_are_argon2id_with_the_rfc_9106_low_memory_profile():
    digest = PRODUCTION_HASHER.hash("a password here")
    assert digest.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PRODUCTION_HASHER.verify(digest, "a password here")


def test_the_password_is_stored_only_as_an_argon2_hash(db, owner):
    with db.unit_of_work(readonly=True) as s:
        user = s.get(StaffUser, owner)
        assert user is not None
        assert user.email == "owner@demo.patron"  # e-mail compared case-insensitively
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
    assert actions(db) == ["staff.created"]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"password": "short"}, "password_too_short"),
        ({"password": "x" * 201}, "password_too_long"),
        ({"password": "aaaaaaaaaaaa"}, "password_too_weak"),
        ({"password": "new@demo.patron"}, "password_too_weak"),
        ({"role": "admin"}, "invalid_role"),
        ({"language": "fr"}, "invalid_language"),
        ({"name": "  "}, "invalid_name"),
        ({"email": "not-an-address"}, "invalid_email"),
    ],
)
def test_create_user_refuses_bad_input(db, frozen, fields, code):
    data = {
        "email": "new@demo.patron",
        "name": "New",
        "role": "support",
        "password": PASSWORD,
        "language": "en",
        **fields,
    }
    with pytest.raises(Invalid) as err, db.unit_of_work() as s:
        service.create_user(s, **data, actor=CLI, now=T0)
    assert err.value.code == code


def test_an_e_mail_has_one_account(db, owner):
    with pytest.raises(Conflict) as err, db.unit_of_work() as s:
        service.create_user(
            s,
            email="OWNER@demo.patron",
            name="x",
            role="viewer",
            password=PASSWORD,
            actor=CLI,
            now=T0,
        )
    assert err.value.code == "duplicate_email"


def test_sign_in_with_the_right_password_is_audited_as_the_user(db, owner):
    result = sign_in(db, email=" OWNER@demo.patron ")
    assert result.ok and result.user is not None and result.user.id == owner
    with db.unit_of_work(readonly=True) as s:
        row = s.scalars(select(AuditRecord).where(AuditRecord.action == "staff.signed_in")).one()
        assert row.actor == f"user:{owner}"
        user = s.get(StaffUser, owner)
        assert user is not None and user.last_sign_in_at == T0


def test_an_unknown_e_mail_is_refused_like_a_wrong_password_and_audited(db, owner):
    assert sign_in(db, email="nobody@demo.patron").failure == "invalid"
    assert sign_in(db, password="wrong password").failure == "invalid"
    with db.unit_of_work(readonly=True) as s:
        rows = s.scalars(select(AuditRecord).where(AuditRecord.action == "staff.sign_in_failed"))
        failed = [(r.actor, r.after["why"] if r.after else None) for r in rows]
    assert failed == [("anonymous", "unknown_email"), ("anonymous", "wrong_password")]


def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(db, owner):
    for _ in range(4):
        assert sign_in(db, password="wrong password").failure == "invalid"
    fifth = sign_in(db, password="wrong password")
    assert fifth.failure == "locked"
    assert fifth.locked_until == T0 + timedelta(minutes=15)
    # Locked: even the right password is refused, until the window has passed.
    assert sign_in(db).failure == "locked"
    clock.freeze(T0 + timedelta(minutes=14, seconds=59))
    assert sign_in(db).failure == "locked"
    clock.freeze(T0 + timedelta(minutes=15))
    assert sign_in(db).ok
    assert "staff.locked" in actions(db)


def test_a_success_resets_the_failure_count(db, owner):
    for _ in range(4):
        sign_in(db, password="wrong password")
    assert sign_in(db).ok
    for _ in range(4):
        assert sign_in(db, password="wrong password").failure == "invalid"
    assert sign_in(db).ok


def test_unlock_lifts_a_lock_out_early(db, owner):
    for _ in range(5):
        sign_in(db, password="wrong password")
    with db.unit_of_work() as s:
        assert service.unlock(s, service.get_user(s, owner), actor=CLI, now=clock.now())
    assert sign_in(db).ok
    with db.unit_of_work() as s:
        assert not service.unlock(s, service.get_user(s, owner), actor=CLI, now=clock.now())
    assert actions(db).count("staff.unlocked") == 1


def test_an_inactive_user_cannot_sign_in(db, owner):
    with db.unit_of_work() as s:
        service.get_user(s, owner).active = False
    assert sign_in(db).failure == "inactive"


def start(db, user_id: int) -> tuple[int, str]:
    with db.unit_of_work() as s:
        row, token = service.start_session(s, service.get_user(s, user_id), now=clock.now())
        return row.id, token


def resolve(db, token: str):
    with db.unit_of_work(readonly=True) as s:
        return service.resolve_session(s, token, now=clock.now())


def test_a_session_token_is_stored_hashed_and_ends_after_twelve_hours(db, owner):
    session_id, token = start(db, owner)
    with db.unit_of_work(readonly=True) as s:
        row = s.get(StaffSession, session_id)
        assert row is not None and token not in row.token_hash and len(row.token_hash) == 64
    assert resolve(db, token) is not None
    assert resolve(db, token + "x") is None
    assert resolve(db, "") is None
    clock.freeze(T0 + timedelta(hours=12))
    assert resolve(db, token) is None


def test_sign_out_revokes_the_session(db, owner):
    session_id, token = start(db, owner)
    with db.unit_of_work() as s:
        service.end_session(s, session_id, user=service.get_user(s, owner), now=clock.now())
    assert resolve(db, token) is None
    assert actions(db)[-1] == "staff.signed_out"


def test_changing_the_password_ends_every_other_session(db, owner):
    here, here_token = start(db, owner)
    _there, there_token = start(db, owner)
    with db.unit_of_work() as s:
        ended = service.change_password(
            s,
            service.get_user(s, owner),
            current=PASSWORD,
            new="a-brand-new-secret",
            now=clock.now(),
            keep_session=here,
        )
    assert ended == 1
    assert resolve(db, here_token) is not None
    assert resolve(db, there_token) is None
    assert sign_in(db).failure == "invalid"
    assert sign_in(db, password="a-brand-new-secret").ok


def test_changing_the_password_needs_the_current_one_and_a_new_one(db, owner):
    with pytest.raises(Invalid) as err, db.unit_of_work() as s:
        service.change_password(
            s, service.get_user(s, owner), current="wrong", new="another-secret", now=T0
        )
    assert err.value.code == "wrong_password"
    with pytest.raises(Invalid) as err, db.unit_of_work() as s:
        service.change_password(
            s, service.get_user(s, owner), current=PASSWORD, new=PASSWORD, now=T0
        )
    assert err.value.code == "password_reused"


def test_set_password_ends_all_sessions_and_lifts_a_lock(db, owner):
    _id, token = start(db, owner)
    for _ in range(5):
        sign_in(db, password="wrong password")
    with db.unit_of_work() as s:
        service.set_password(
            s, service.get_user(s, owner), password="set-by-the-owner", actor=CLI, now=clock.now()
        )
    assert resolve(db, token) is None
    assert sign_in(db, password="set-by-the-owner").ok


def test_actor_labels_name_staff_by_e_mail(db, owner):
    with db.unit_of_work(readonly=True) as s:
        labels = service.actor_labels(s, [f"user:{owner}", "user:999", "system", "api_key:1"])
    assert labels == {
        f"user:{owner}": "owner@demo.patron",
        "user:999": "user:999",
        "system": "system",
        "api_key:1": "api_key:1",
    }


ROLE_TABLE = {
    # permission: (owner, marketer, support, viewer)
    "members.view": (True, True, True, True),
    "members.edit": (True, False, True, False),
    "points.adjust": (True, False, True, False),
    "tiers.assign": (True, False, True, False),
    "rules.manage": (True, True, False, False),
    "tiers.manage": (True, True, False, False),
    "program.manage": (True, True, False, False),
    "reports.view": (True, True, False, True),
    "staff.manage": (True, False, False, False),
    "apikeys.manage": (True, False, False, False),
    "audit.view": (True, False, False, False),
}


@pytest.mark.parametrize("permission", sorted(ROLE_TABLE))
def test_roles_hold_the_permissions_the_issue_gives_them(permission):
    assert tuple(roles.can(r, permission) for r in roles.ROLES) == ROLE_TABLE[permission]


def test_viewers_change_nothing_and_owners_can_do_everything():
    for permission in roles.PERMISSIONS:
        assert roles.can("owner", permission)
        if not permission.endswith((".view", ".export")):
            assert not roles.can("viewer", permission), permission
    with pytest.raises(ValueError):
        roles.can("owner", "no.such.permission")
