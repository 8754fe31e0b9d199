"""Staff users limited to programs, over HTTP: an owner of the bakery (Seoul) sees and acts in
the bakery only — Shanghai's members, settings, rules, tiers, rewards, reports, messages,
webhooks, deliveries and audit records answer 403 (pages) or 404 (objects), search and lists
leave them out — and cannot give anyone (themselves included) more reach. Users without a
limit are unchanged."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from patron.admin import service
from patron.admin.models import StaffUser
from patron.audit import service as audit
from patron.audit.models import AuditRecord
from patron.audit.service import CLI
from patron.auth.models import ApiKey
from patron.auth.service import create_key
from patron.cli import app as cli_app
from patron.config import get_settings
from patron.db.engine import Database
from patron.members import service as members
from patron.members.models import Member
from patron.programs.models import Program
from tests.admin.helpers import PASSWORD, STAFF, Seeded, seed_bakery, sign_in
from tests.conftest import T0
from tests.factories import SHANGHAI, make_member, make_program

OWNER = STAFF["owner"][0]
SEOUL_OWNER = "seoul-owner@demo.patron"
SEOUL_SUPPORT = "seoul-support@demo.patron"
FIELD_ERROR = re.compile(r'<p class="field-error" id="(?:f-)?([^"]+)-error">([^<]*)</p>')


@dataclass(frozen=True)
class World:
    bakery: Seeded
    wang: int  # 王芳, a Shanghai member, card SHA100000
    both: int  # 이서연, enrolled in the bakery and in Shanghai
    users: dict[str, int]


@pytest.fixture
def world(db: Database, frozen, staff) -> World:
    bakery = seed_bakery(db)
    with db.unit_of_work() as s:
        shanghai = make_program(s, now=T0, base=SHANGHAI, stores=("jingan",))
        wang = make_member(
            s, now=T0, program=shanghai, name="王芳", phone="+8613800138000", card="SHA100000"
        )
        bakery_program = s.scalars(select(Program).where(Program.code == "bakery")).one()
        both = make_member(s, now=T0, program=shanghai, name="이서연", card="SHA100001")
        members.enroll(s, both, bakery_program, actor=CLI, now=T0)
        audit.record(
            s,
            actor=CLI,
            action="test.shanghai_secret",
            subject_type="program",
            subject_id="shanghai",
            at=T0,
            program_id=shanghai.id,
        )
        audit.record(
            s,
            actor=CLI,
            action="test.shanghai_member_note",
            subject_type="member",
            subject_id=both.id,
            at=T0,
            program_id=shanghai.id,
        )
        audit.record(
            s,
            actor=CLI,
            action="test.bakery_visible",
            subject_type="program",
            subject_id="bakery",
            at=T0,
            program_id=bakery_program.id,
        )
        users = dict(staff)
        for email, role in ((SEOUL_OWNER, "owner"), (SEOUL_SUPPORT, "support")):
            users[email] = service.create_user(
                s,
                email=email,
                name=email.split("@")[0],
                role=role,
                password=PASSWORD,
                actor=CLI,
                now=T0,
                programs=["bakery"],
            ).id
        return World(bakery, wang.id, both.id, users)


@pytest.fixture
def web(app):
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def other(app):
    with TestClient(app) as test_client:
        yield test_client


def sqlite_only(db: Database) -> None:
    if db.url.startswith("postgresql"):
        pytest.skip("engine-independent: run on SQLite only")


def field_errors(html: str) -> dict[str, str]:
    return dict(FIELD_ERROR.findall(html))


def user_of(db: Database, email: str) -> StaffUser:
    with db.unit_of_work(readonly=True) as s:
        row = s.scalars(select(StaffUser).where(StaffUser.email == email)).one()
        s.expunge(row)
        return row


def actions(db: Database, action: str) -> list[AuditRecord]:
    with db.unit_of_work(readonly=True) as s:
        rows = list(s.scalars(select(AuditRecord).where(AuditRecord.action == action)))
        for row in rows:
            s.expunge(row)
        return rows


def test_a_limited_owner_sees_and_acts_only_in_their_program(db, world, web, other):
    csrf = sign_in(web, SEOUL_OWNER)
    home = web.get("/admin/")
    assert "Corner Bakery" in home.text and "Shanghai Department Store" not in home.text

    # Search: Shanghai's member is not found by card, name or phone; the bakery's are.
    found = web.get("/admin/members", params={"q": "BKR100000"}, follow_redirects=False)
    assert found.status_code == 303
    for q in ("SHA100000", "王芳", "138001"):
        hits = web.get("/admin/members/results", params={"q": q})
        assert hits.status_code == 200 and f"/admin/members/{world.wang}" not in hits.text
    # The member in both programs is found, and shown with the bakery only.
    both = web.get("/admin/members/results", params={"q": "이서연"}).text
    assert f"/admin/members/{world.both}" in both
    page = web.get(f"/admin/members/{world.both}")
    assert page.status_code == 200
    assert "Shanghai Department Store" not in page.text
    assert "test.shanghai_member_note" not in page.text

    # Shanghai's member: every page and action is "not found"; nothing changes.
    assert web.get(f"/admin/members/{world.wang}").status_code == 404
    assert web.get(f"/admin/members/{world.wang}/export").status_code == 404
    blocked = web.post(
        f"/admin/members/{world.wang}/block",
        data={"reason": "fraud", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert blocked.status_code == 404 and 'class="card error-page"' in blocked.text
    # A bakery member's page asked for with Shanghai's figures is refused.
    assert web.get(f"/admin/members/{world.both}?program=shanghai").status_code == 403
    with db.unit_of_work(readonly=True) as s:
        assert s.get(Member, world.wang).status == "active"

    # Shanghai's program pages: 403 with the admin's error page; the bakery's open.
    for path in (
        "/admin/program?program=shanghai",
        "/admin/program/shanghai/stores",
        "/admin/program/shanghai/branding",
        "/admin/rules?program=shanghai",
        "/admin/rules/versions?program=shanghai",
        "/admin/tiers?program=shanghai",
        "/admin/rewards?program=shanghai",
        "/admin/rewards/coupons?program=shanghai",
        "/admin/reports?program=shanghai",
        "/admin/reports/liability?program=shanghai",
        "/admin/reports/journal?program=shanghai",
        "/admin/messages?program=shanghai",
        "/admin/deliveries?program=shanghai",
        "/admin/webhooks?program=shanghai",
        "/admin/webhooks/shanghai/new",
        "/admin/program/new",
    ):
        refused = web.get(path)
        assert refused.status_code == 403, path
        assert 'class="card error-page"' in refused.text, path
    for path in ("/admin/program", "/admin/rules", "/admin/tiers", "/admin/reports"):
        shown = web.get(path)
        assert shown.status_code == 200, path
        assert "Shanghai Department Store" not in shown.text, path
    saved = web.post(
        "/admin/program/shanghai/settings",
        data={"name": "Taken over", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert saved.status_code == 403
    tiers = web.post(
        "/admin/tiers/save",
        data={"program": "shanghai", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert tiers.status_code == 403
    with db.unit_of_work(readonly=True) as s:
        assert (
            s.scalars(select(Program.name).where(Program.code == "shanghai")).one()
            == (SHANGHAI["name"])
        )

    # The audit log: the bakery's records only.
    log = web.get("/admin/audit")
    assert "test.bakery_visible" in log.text and "test.shanghai_secret" not in log.text

    # A user without a limit is unchanged: both programs, both members.
    sign_in(other, OWNER)
    assert "Shanghai Department Store" in other.get("/admin/").text
    wang = other.get("/admin/members/results", params={"q": "王芳"}).text
    assert f"/admin/members/{world.wang}" in wang
    assert other.get(f"/admin/members/{world.wang}").status_code == 200
    assert "test.shanghai_member_note" in other.get(f"/admin/members/{world.both}").text
    assert other.get("/admin/rules?program=shanghai").status_code == 200
    assert "test.shanghai_secret" in other.get("/admin/audit").text


def test_a_limited_support_user_cannot_act_on_another_programs_member(db, world, web):
    csrf = sign_in(web, SEOUL_SUPPORT)
    assert web.get(f"/admin/members/{world.bakery.member_id}").status_code == 200
    adjust = web.post(
        f"/admin/members/{world.wang}/adjust",
        data={"points": "1000", "reason": "gift", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert adjust.status_code == 404
    # The member in both programs: the adjustment may not name Shanghai.
    into_shanghai = web.post(
        f"/admin/members/{world.both}/adjust",
        data={"program": "shanghai", "points": "1000", "reason": "gift", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert into_shanghai.status_code == 403
    assert actions(db, "points.adjusted") == []


def test_staff_management_stays_inside_the_managers_programs(db, world, web, other):
    sqlite_only(db)
    with db.unit_of_work() as s:
        _, _ = create_key(s, name="deployment", scopes=["admin"], actor=CLI, now=T0)
        open_key = s.scalars(select(ApiKey.id)).one()
    csrf = sign_in(web, SEOUL_OWNER)

    # The list shows the bakery's users only; others are not found.
    listed = web.get("/admin/staff").text
    assert f'data-user="{SEOUL_SUPPORT}"' in listed and f'data-user="{OWNER}"' not in listed
    owner_id = world.users["owner"]
    assert web.get(f"/admin/staff/users/{owner_id}").status_code == 404
    reset = web.post(
        f"/admin/staff/users/{owner_id}/password",
        data={"password": "taken-over-2026", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert reset.status_code == 404

    def create(**extra: str):
        return web.post(
            "/admin/staff/new",
            data={
                "email": "new@demo.patron",
                "name": "New",
                "role": "owner",
                "language": "en",
                "password": "a-long-password-1",
                "csrf_token": csrf,
                **extra,
            },
            follow_redirects=False,
        )

    # No unrestricted users, no programs they do not hold.
    assert create().status_code == 422
    refused = create(program_shanghai="1")
    assert refused.status_code == 422 and "programs" in field_errors(refused.text)
    assert create(program_bakery="1", program_shanghai="1").status_code == 422
    assert create(program_bakery="1").status_code == 303
    assert user_of(db, "new@demo.patron").programs == ["bakery"]
    [created] = actions(db, "staff.created")[-1:]
    assert created.after is not None and created.after["programs"] == ["bakery"]

    # Reach itself is for managers without a limit, even for themselves.
    me = world.users[SEOUL_OWNER]
    grab = web.post(
        f"/admin/staff/users/{me}/programs",
        data={"reach": "all", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert grab.status_code == 403
    assert user_of(db, SEOUL_OWNER).programs == ["bakery"]

    # API keys: theirs only, for their programs only.
    keys_page = web.get("/admin/staff/keys").text
    assert "deployment" not in keys_page
    assert web.get(f"/admin/staff/keys/{open_key}/revoke").status_code == 404
    assert (
        web.post(
            f"/admin/staff/keys/{open_key}/revoke",
            data={"csrf_token": csrf},
            follow_redirects=False,
        ).status_code
        == 404
    )

    def key(**extra: str):
        return web.post(
            "/admin/staff/keys",
            data={"name": "till", "scope_pos": "1", "csrf_token": csrf, **extra},
            follow_redirects=False,
        )

    assert key().status_code == 422
    assert key(program_shanghai="1").status_code == 422
    assert key(program_bakery="1").status_code == 200
    with db.unit_of_work(readonly=True) as s:
        reaches = {
            name: programs for name, programs in s.execute(select(ApiKey.name, ApiKey.programs))
        }
    assert reaches == {"deployment": None, "till": ["bakery"]}


def test_an_unrestricted_owner_sets_reach_and_it_applies_at_the_next_request(db, world, web, other):
    sqlite_only(db)
    csrf = sign_in(web, OWNER)
    listed = web.get("/admin/staff").text
    assert "All programs" in listed  # the users as before: flagged, still working
    target = world.users["marketer"]
    sign_in(other, STAFF["marketer"][0])
    assert "Shanghai Department Store" in other.get("/admin/").text

    saved = web.post(
        f"/admin/staff/users/{target}/programs",
        data={"reach": "some", "program_shanghai": "1", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    [change] = actions(db, "staff.reach_changed")
    assert (change.before, change.after) == ({"programs": None}, {"programs": ["shanghai"]})
    assert change.actor == f"user:{world.users['owner']}"
    # The marketer's open session: the next click already sees Shanghai only.
    home = other.get("/admin/").text
    assert "Shanghai Department Store" in home and "Corner Bakery" not in home
    assert other.get("/admin/rules?program=bakery").status_code == 403

    empty = web.post(
        f"/admin/staff/users/{target}/programs",
        data={"reach": "some", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert empty.status_code == 422
    back = web.post(
        f"/admin/staff/users/{target}/programs",
        data={"reach": "all", "program_shanghai": "1", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert back.status_code == 303 and user_of(db, STAFF["marketer"][0]).programs is None
    assert "Corner Bakery" in other.get("/admin/").text

    # The last owner who reaches every program cannot limit themselves.
    alone = web.post(
        f"/admin/staff/users/{world.users['owner']}/programs",
        data={"reach": "some", "program_bakery": "1", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert alone.status_code == 422
    assert "reach-error" in alone.text or "programs" in field_errors(alone.text)
    assert user_of(db, OWNER).programs is None


def test_the_cli_creates_and_updates_staff_per_program(db, world, monkeypatch):
    sqlite_only(db)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli_app, [*args, "--database-url", db.url])
        assert result.exit_code == code, (result.output, result.exception)
        return result.output

    out = run(
        "user", "create", "--email", "li@demo.patron", "--role", "viewer", "--name", "Li",
        "--password", PASSWORD, "--program", "shanghai", "--program", "bakery",
    )  # fmt: skip
    assert "programs bakery, shanghai" in out
    assert user_of(db, "li@demo.patron").programs == ["bakery", "shanghai"]
    run("user", "update", "--email", "li@demo.patron", "--program", "shanghai", "--role", "support")
    li = user_of(db, "li@demo.patron")
    assert (li.programs, li.role) == (["shanghai"], "support")
    assert "program_not_found" in run(
        "user", "update", "--email", "li@demo.patron", "--program", "nowhere", code=2
    )
    assert "all programs" in run("user", "update", "--email", "li@demo.patron", "--all-programs")
    assert user_of(db, "li@demo.patron").programs is None
    assert "seoul-owner@demo.patron" in run("user", "list")
    assert [r.after for r in actions(db, "staff.reach_changed")] == [
        {"programs": ["shanghai"]},
        {"programs": None},
    ]
    get_settings.cache_clear()
