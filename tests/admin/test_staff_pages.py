"""Staff accounts and API keys over HTTP: owners only, CSRF, inline errors (422, nothing
saved), secrets shown once, the last-owner rule, and audit rows naming the user."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.admin.models import StaffUser
from patron.audit.models import AuditRecord
from patron.auth.models import ApiKey
from tests.admin.helpers import PASSWORD, STAFF, csrf_of, sign_in
from tests.conftest import auth

FIELD_ERROR = re.compile(r'<p class="field-error" id="(?:f-)?([^"]+)-error">([^<]*)</p>')
SECRET = re.compile(r'<input id="(?:api-key|new-password)" type="text" value="([^"]+)"')
OWNER, SUPPORT = STAFF["owner"][0], STAFF["support"][0]


def field_errors(html: str) -> dict[str, str]:
    return dict(FIELD_ERROR.findall(html))


def secret_of(html: str) -> str:
    found = SECRET.search(html)
    assert found, "no secret on the page"
    return found.group(1)


@pytest.fixture
def web(app, staff):
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def other(app):
    """A second browser, for the user whose account the owner changes."""
    with TestClient(app) as test_client:
        yield test_client


def as_owner(client: TestClient) -> str:
    return sign_in(client, OWNER)


def user_row(db, email: str) -> StaffUser | None:
    with db.unit_of_work(readonly=True) as s:
        row = s.scalars(select(StaffUser).where(StaffUser.email == email)).one_or_none()
        if row is not None:
            s.expunge(row)
        return row


def audit_rows(db, action: str) -> list[AuditRecord]:
    with db.unit_of_work(readonly=True) as s:
        rows = list(s.scalars(select(AuditRecord).where(AuditRecord.action == action)))
        s.expunge_all()
        return rows


def try_sign_in(client: TestClient, email: str, password: str) -> int:
    form = client.get("/admin/sign-in")
    answer = client.post(
        "/admin/sign-in",
        data={"email": email, "password": password, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )
    return answer.status_code


# --- who may --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["marketer", "support", "viewer"])
def test_only_owners_manage_staff_and_keys(web, db, role):
    token = sign_in(web, STAFF[role][0])
    for url in ("/admin/staff", "/admin/staff/new", "/admin/staff/users/1", "/admin/staff/keys"):
        assert web.get(url).status_code == 403, url
    posts = [
        ("/admin/staff/new", {"email": "x@y.org", "name": "X", "role": "owner", "language": "en"}),
        ("/admin/staff/users/1", {"name": "X", "role": "viewer", "language": "en"}),
        ("/admin/staff/users/1/password", {"password": ""}),
        ("/admin/staff/users/1/active", {"active": "0"}),
        ("/admin/staff/users/1/unlock", {}),
        ("/admin/staff/users/1/sessions", {}),
        ("/admin/staff/keys", {"name": "k", "scope_admin": "1"}),
        ("/admin/staff/keys/1/revoke", {}),
    ]
    for url, data in posts:
        assert web.post(url, data={**data, "csrf_token": token}).status_code == 403, url
    assert 'href="/admin/staff"' not in web.get("/admin/").text
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(StaffUser)) == 4
        assert s.scalar(select(func.count()).select_from(ApiKey)) == 0


def test_the_owner_sees_every_account(web, staff):
    as_owner(web)
    page = web.get("/admin/staff")
    assert page.status_code == 200
    for email, name in STAFF.values():
        assert email in page.text and name in page.text
    assert page.text.count("Never") == 3  # only the owner has signed in
    assert 'href="/admin/staff"' in web.get("/admin/").text
    assert web.get(f"/admin/staff/users/{staff['support']}").status_code == 200
    assert web.get("/admin/staff/users/999").status_code == 404
    assert web.get("/admin/staff/users/abc").status_code == 404


def test_staff_forms_need_the_csrf_token(web, db):
    as_owner(web)
    data = {"email": "new@x.org", "name": "New", "role": "viewer", "language": "en"}
    assert web.post("/admin/staff/new", data=data).status_code == 403
    assert web.post("/admin/staff/new", data={**data, "csrf_token": "nope"}).status_code == 403
    assert web.post("/admin/staff/keys", data={"name": "k", "scope_pos": "1"}).status_code == 403
    assert user_row(db, "new@x.org") is None


# --- creating accounts ----------------------------------------------------------------------


def test_create_with_a_generated_password_shown_once(web, other, db, staff):
    token = as_owner(web)
    answer = web.post(
        "/admin/staff/new",
        data={
            "email": "Jimin@Bakery.kr",
            "name": "지민",
            "role": "support",
            "language": "ko",
            "password": "",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    password = secret_of(answer.text)
    assert len(password) >= 16
    assert "shown only this once" in answer.text
    user = user_row(db, "jimin@bakery.kr")
    assert user is not None and user.role == "support" and user.language == "ko"
    assert password not in user.password_hash
    # Nowhere else: not on the account's page, not in the audit log.
    assert password not in web.get(f"/admin/staff/users/{user.id}").text
    [row] = [r for r in audit_rows(db, "staff.created") if r.subject_id == str(user.id)]
    assert row.actor == f"user:{staff['owner']}"
    assert password not in str(row.after)
    assert try_sign_in(other, "jimin@bakery.kr", password) == 303


def test_create_with_a_typed_password(web, other, db):
    token = as_owner(web)
    answer = web.post(
        "/admin/staff/new",
        data={
            "email": "viewer2@x.org",
            "name": "Second Viewer",
            "role": "viewer",
            "language": "zh",
            "password": "a-long-enough-password",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    user = user_row(db, "viewer2@x.org")
    assert answer.headers["location"] == f"/admin/staff/users/{user.id}?done=created"
    assert "Account created." in web.get(answer.headers["location"]).text
    assert try_sign_in(other, "viewer2@x.org", "a-long-enough-password") == 303


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"email": SUPPORT}, "email", "Another account has this e-mail."),
        ({"email": "not-an-address"}, "email", "not a valid e-mail"),
        ({"email": ""}, "email", "Fill this in."),
        ({"name": ""}, "name", "Fill this in."),
        ({"name": "n" * 201}, "name", "1 to 200 characters"),
        ({"role": "king"}, "role", "Choose one of the options."),
        ({"role": ""}, "role", "Choose one of the options."),
        ({"language": "fr"}, "language", "Choose one of the options."),
        ({"password": "short"}, "password", "at least 10"),
        ({"password": "x" * 201}, "password", "at most 200"),
        ({"password": "aaaaaaaaaaaa"}, "password", "Too easy to guess"),
    ],
)
def test_a_bad_new_account_is_refused_at_its_field(web, db, changes, field, message):
    token = as_owner(web)
    data = {
        "email": "new@x.org",
        "name": "New Person",
        "role": "viewer",
        "language": "en",
        "csrf_token": token,
        **changes,
    }
    answer = web.post("/admin/staff/new", data=data)
    assert answer.status_code == 422
    errors = field_errors(answer.text)
    assert field in errors, errors
    assert message in errors[field].replace("&#39;", "'")
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(StaffUser)) == 4


# --- changing accounts ----------------------------------------------------------------------


def test_a_role_change_applies_at_the_users_next_request(web, other, db, staff):
    token = as_owner(web)
    sign_in(other, SUPPORT)
    assert other.get("/admin/program").status_code == 403
    answer = web.post(
        f"/admin/staff/users/{staff['support']}",
        data={"name": "수진 Marketer", "role": "marketer", "language": "ko", "csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"].endswith("done=saved")
    assert other.get("/admin/program").status_code == 200  # still signed in, new permissions
    [row] = audit_rows(db, "staff.role_changed")
    assert row.actor == f"user:{staff['owner']}"
    assert row.before == {"name": "수진 Support", "role": "support", "language": "en"}
    assert row.after == {"name": "수진 Marketer", "role": "marketer", "language": "ko"}
    again = web.post(
        f"/admin/staff/users/{staff['support']}",
        data={"name": "수진 Marketer", "role": "marketer", "language": "ko", "csrf_token": token},
        follow_redirects=False,
    )
    assert again.headers["location"].endswith("done=unchanged")


def test_the_last_owner_can_be_neither_demoted_nor_switched_off(web, db, staff):
    token = as_owner(web)
    me = staff["owner"]
    demote = web.post(
        f"/admin/staff/users/{me}",
        data={"name": "Olivia Owner", "role": "marketer", "language": "en", "csrf_token": token},
    )
    assert demote.status_code == 422
    assert "last active owner" in field_errors(demote.text)["role"]
    assert user_row(db, OWNER).role == "owner"
    off = web.post(f"/admin/staff/users/{me}/active", data={"active": "0", "csrf_token": token})
    assert off.status_code == 422
    assert "cannot switch off your own account" in off.text
    assert user_row(db, OWNER).active is True
    assert audit_rows(db, "staff.role_changed") == [] and audit_rows(db, "staff.deactivated") == []


def test_with_a_second_owner_an_owner_may_step_down(web, other, db, staff):
    token = as_owner(web)
    promote = web.post(
        f"/admin/staff/users/{staff['marketer']}",
        data={"name": "Mark Marketer", "role": "owner", "language": "en", "csrf_token": token},
        follow_redirects=False,
    )
    assert promote.status_code == 303
    step_down = web.post(
        f"/admin/staff/users/{staff['owner']}",
        data={"name": "Olivia Owner", "role": "viewer", "language": "en", "csrf_token": token},
        follow_redirects=False,
    )
    assert step_down.status_code == 303 and step_down.headers["location"] == "/admin/"
    assert web.get("/admin/staff").status_code == 403
    # Now Mark is the last owner: switching him off is refused too.
    mark_token = sign_in(other, STAFF["marketer"][0])
    off = other.post(
        f"/admin/staff/users/{staff['marketer']}/active",
        data={"active": "0", "csrf_token": mark_token},
    )
    assert off.status_code == 422
    demote = other.post(
        f"/admin/staff/users/{staff['marketer']}",
        data={"name": "Mark", "role": "support", "language": "en", "csrf_token": mark_token},
    )
    assert demote.status_code == 422 and "last active owner" in demote.text


def test_switching_an_account_off_ends_its_sessions_and_on_lets_it_back(web, other, db, staff):
    token = as_owner(web)
    sign_in(other, SUPPORT)
    url = f"/admin/staff/users/{staff['support']}/active"
    off = web.post(url, data={"active": "0", "csrf_token": token}, follow_redirects=False)
    assert off.status_code == 303
    assert other.get("/admin/members", follow_redirects=False).status_code == 303  # signed out
    assert try_sign_in(other, SUPPORT, PASSWORD) == 401  # refused: switched off
    page = web.get("/admin/staff")
    assert "Switched off" in page.text
    on = web.post(url, data={"active": "1", "csrf_token": token}, follow_redirects=False)
    assert on.status_code == 303
    assert try_sign_in(other, SUPPORT, PASSWORD) == 303
    actor = f"user:{staff['owner']}"
    assert [r.actor for r in audit_rows(db, "staff.deactivated")] == [actor]
    assert [r.actor for r in audit_rows(db, "staff.reactivated")] == [actor]


def test_a_generated_password_reset_is_shown_once_and_replaces_the_old(web, other, db, staff):
    token = as_owner(web)
    answer = web.post(
        f"/admin/staff/users/{staff['support']}/password",
        data={"password": "", "csrf_token": token},
    )
    assert answer.status_code == 200
    new = secret_of(answer.text)
    assert try_sign_in(other, SUPPORT, PASSWORD) == 401
    assert try_sign_in(other, SUPPORT, new) == 303
    [row] = audit_rows(db, "staff.password_set")
    assert row.actor == f"user:{staff['owner']}"


def test_a_typed_password_reset_and_a_too_short_one(web, other, db, staff):
    token = as_owner(web)
    url = f"/admin/staff/users/{staff['viewer']}/password"
    short = web.post(url, data={"password": "short", "csrf_token": token})
    assert short.status_code == 422
    assert "at least 10" in field_errors(short.text)["reset-password"]
    assert audit_rows(db, "staff.password_set") == []
    typed = web.post(
        url, data={"password": "another-good-one-9", "csrf_token": token}, follow_redirects=False
    )
    assert typed.status_code == 303 and typed.headers["location"].endswith("done=password")
    assert try_sign_in(other, STAFF["viewer"][0], "another-good-one-9") == 303


def test_the_owner_unlocks_a_locked_out_user(web, other, db, staff):
    for _ in range(5):
        assert try_sign_in(other, SUPPORT, "wrong-password-1") == 401
    assert user_row(db, SUPPORT).locked_until is not None
    assert try_sign_in(other, SUPPORT, PASSWORD) == 401  # locked
    token = as_owner(web)
    assert "Locked" in web.get("/admin/staff").text
    page = web.get(f"/admin/staff/users/{staff['support']}")
    assert "Unlock now" in page.text
    answer = web.post(
        f"/admin/staff/users/{staff['support']}/unlock",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert answer.headers["location"].endswith("done=unlocked")
    assert try_sign_in(other, SUPPORT, PASSWORD) == 303
    [row] = audit_rows(db, "staff.unlocked")
    assert row.actor == f"user:{staff['owner']}"


def test_ending_a_users_sessions_signs_them_out(web, other, db, staff):
    token = as_owner(web)
    sign_in(other, SUPPORT)
    assert other.get("/admin/members", follow_redirects=False).status_code == 200
    answer = web.post(
        f"/admin/staff/users/{staff['support']}/sessions",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert answer.headers["location"].endswith("done=ended")
    assert other.get("/admin/members", follow_redirects=False).status_code == 303
    # The owner ending their own sessions stays signed in here.
    mine = web.post(
        f"/admin/staff/users/{staff['owner']}/sessions",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert mine.status_code == 303 and web.get("/admin/staff").status_code == 200
    rows = audit_rows(db, "staff.sessions_revoked")
    assert [r.subject_id for r in rows] == [str(staff["support"]), str(staff["owner"])]
    assert rows[0].after == {"sessions_ended": 1}


# --- API keys -------------------------------------------------------------------------------


def test_a_new_key_is_shown_once_works_on_the_api_and_stops_when_revoked(web, client, db, staff):
    token = as_owner(web)
    answer = web.post(
        "/admin/staff/keys",
        data={"name": "Mapo till 1", "scope_pos": "1", "scope_read": "1", "csrf_token": token},
    )
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    raw = secret_of(answer.text)
    assert raw.startswith("ptr_")
    assert "shown only this once" in answer.text
    # The list shows the public prefix, never the key.
    listing = web.get("/admin/staff/keys")
    assert "Mapo till 1" in listing.text and raw not in listing.text
    assert OWNER in listing.text  # who created it, from the audit log

    assert client.get("/api/v1/programs", headers=auth(raw)).status_code == 200
    with db.unit_of_work(readonly=True) as s:
        key = s.scalars(select(ApiKey)).one()
        assert sorted(key.scopes) == ["pos", "read"]
        key_id = key.id
    [row] = audit_rows(db, "apikey.created")
    assert row.actor == f"user:{staff['owner']}" and raw not in str(row.after)

    confirm = web.get(f"/admin/staff/keys/{key_id}/revoke")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.text
    revoked = web.post(
        f"/admin/staff/keys/{key_id}/revoke", data={"csrf_token": token}, follow_redirects=False
    )
    assert revoked.status_code == 303
    assert "Key revoked" in web.get(revoked.headers["location"]).text
    refused = client.get("/api/v1/programs", headers=auth(raw))
    assert refused.status_code == 401 and refused.json()["error"] == "revoked_api_key"
    [row] = audit_rows(db, "apikey.revoked")
    assert row.actor == f"user:{staff['owner']}"
    assert "already revoked" in web.get(f"/admin/staff/keys/{key_id}/revoke").text


def test_a_pos_key_cannot_do_admin_calls(web, client):
    token = as_owner(web)
    raw = secret_of(
        web.post(
            "/admin/staff/keys", data={"name": "Till", "scope_pos": "1", "csrf_token": token}
        ).text
    )
    assert client.get("/api/v1/api-keys", headers=auth(raw)).status_code == 403


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "", "scope_pos": "1"}, "key-name"),
        ({"name": "n" * 101, "scope_pos": "1"}, "key-name"),
        ({"name": "No scope"}, "scopes"),
        ({"name": "Junk scope", "scope_root": "1"}, "scopes"),
    ],
)
def test_a_bad_key_form_is_refused_inline_and_makes_no_key(web, db, data, field):
    token = as_owner(web)
    answer = web.post("/admin/staff/keys", data={**data, "csrf_token": token})
    assert answer.status_code == 422
    assert field in field_errors(answer.text)
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(ApiKey)) == 0


def test_revoking_an_unknown_key_is_a_404(web):
    token = as_owner(web)
    assert web.get("/admin/staff/keys/99/revoke").status_code == 404
    assert web.post("/admin/staff/keys/99/revoke", data={"csrf_token": token}).status_code == 404


def test_the_staff_pages_speak_korean_and_chinese(web, staff):
    token = as_owner(web)
    for lang, words in (("ko", ("직원 계정", "새 API 키")), ("zh", ("员工账号", "新建 API 密钥"))):
        web.post(
            "/admin/account/language",
            data={"language": lang, "next": "/admin/", "csrf_token": token},
        )
        assert words[0] in web.get("/admin/staff").text
        assert words[1] in web.get("/admin/staff/keys").text
        assert web.get(f"/admin/staff/users/{staff['viewer']}").status_code == 200


def test_a_key_limited_to_a_program_and_a_store_from_the_form(web, client, db, seeded):
    token = as_owner(web)
    page = web.get("/admin/staff/keys")
    assert 'name="program_bakery"' in page.text
    # Stores without a program are refused at their field, and no key is made.
    refused = web.post(
        "/admin/staff/keys",
        data={"name": "Mapo till", "scope_pos": "1", "stores": "mapo", "csrf_token": token},
    )
    assert refused.status_code == 422 and "key-stores" in field_errors(refused.text)
    unknown = web.post(
        "/admin/staff/keys",
        data={
            "name": "Mapo till",
            "scope_pos": "1",
            "program_bakery": "1",
            "stores": "nowhere",
            "csrf_token": token,
        },
    )
    assert unknown.status_code == 422 and "nowhere" in field_errors(unknown.text)["key-stores"]
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(ApiKey)) == 0
    made = web.post(
        "/admin/staff/keys",
        data={
            "name": "Mapo till",
            "scope_pos": "1",
            "scope_read": "1",
            "program_bakery": "1",
            "stores": "mapo",
            "csrf_token": token,
        },
    )
    assert made.status_code == 200, made.text
    raw = secret_of(made.text)
    with db.unit_of_work(readonly=True) as s:
        key = s.scalars(select(ApiKey)).one()
        assert (key.programs, key.stores) == (["bakery"], ["mapo"])
    listing = web.get("/admin/staff/keys").text
    assert "stores: mapo" in listing.lower() or "Stores: mapo" in listing
    assert [p["code"] for p in client.get("/api/v1/programs", headers=auth(raw)).json()] == [
        "bakery"
    ]
    assert client.get("/api/v1/check", headers=auth(raw)).status_code == 403


def test_an_unrestricted_key_is_flagged_in_the_list(web, db):
    from patron import clock
    from patron.audit.service import CLI
    from patron.auth.service import create_key

    with db.unit_of_work() as s:
        create_key(s, name="Old integration", scopes=["admin"], actor=CLI, now=clock.now())
    as_owner(web)
    listing = web.get("/admin/staff/keys").text
    assert "All programs" in listing
    assert "badge-warn" in listing
