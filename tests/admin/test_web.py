"""The admin UI over HTTP (TestClient): sessions, CSRF, roles, form errors, never a 500."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from patron import clock
from patron.admin.settings import get_admin_settings
from patron.audit.models import AuditRecord
from patron.ledger.models import Entry
from patron.members.models import Member
from patron.tiers.models import TierChange
from tests.admin.helpers import PASSWORD, STAFF, csrf_of, sign_in
from tests.conftest import T0

FIELD_ERROR = re.compile(r'<p class="field-error" id="([^"]+)-error">([^<]*)</p>')


def field_errors(html: str) -> dict[str, str]:
    return dict(FIELD_ERROR.findall(html))


@pytest.fixture
def web(app, staff, seeded):
    with TestClient(app) as test_client:
        yield test_client


def as_role(client: TestClient, role: str) -> str:
    return sign_in(client, STAFF[role][0])


def audit_rows(db, action: str) -> list[AuditRecord]:
    with db.unit_of_work(readonly=True) as s:
        rows = list(s.scalars(select(AuditRecord).where(AuditRecord.action == action)))
        s.expunge_all()
        return rows


# --- sessions ---------------------------------------------------------------------------------


def test_pages_need_a_sign_in_and_come_back_after_it(web, seeded):
    page = f"/admin/members/{seeded.member_id}?program=bakery"
    response = web.get(page, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == (
        f"/admin/sign-in?next=%2Fadmin%2Fmembers%2F{seeded.member_id}%3Fprogram%3Dbakery"
    )
    form = web.get(response.headers["location"])
    answer = web.post(
        "/admin/sign-in",
        data={
            "email": STAFF["support"][0],
            "password": PASSWORD,
            "csrf_token": csrf_of(form.text),
            "next": page,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == page


def test_an_htmx_request_without_a_session_is_told_where_to_sign_in(web):
    response = web.get("/admin/members/results?q=kim", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/admin/sign-in")


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/api/v1/members", "/admin\\@evil"]
)
def test_sign_in_never_redirects_outside_the_admin_ui(web, target):
    form = web.get("/admin/sign-in")
    answer = web.post(
        "/admin/sign-in",
        data={
            "email": STAFF["owner"][0],
            "password": PASSWORD,
            "csrf_token": csrf_of(form.text),
            "next": target,
        },
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/admin/"


def test_the_session_cookie_is_httponly_samesite_lax_and_scoped_to_the_admin(web):
    form = web.get("/admin/sign-in")
    answer = web.post(
        "/admin/sign-in",
        data={"email": STAFF["owner"][0], "password": PASSWORD, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("patron_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/admin" in cookie
    assert "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # plain http (a laptop demo); https below


def test_the_session_cookie_is_secure_over_https(app, staff):
    with TestClient(app, base_url="https://testserver") as client:
        form = client.get("/admin/sign-in")
        assert "Secure" in form.headers["set-cookie"]
        answer = client.post(
            "/admin/sign-in",
            data={
                "email": STAFF["owner"][0],
                "password": PASSWORD,
                "csrf_token": csrf_of(form.text),
            },
            follow_redirects=False,
        )
        assert all("Secure" in c for c in answer.headers.get_list("set-cookie"))


def test_cookie_secure_always_forces_it_on_plain_http(web, monkeypatch):
    monkeypatch.setenv("PATRON_ADMIN_COOKIE_SECURE", "always")
    get_admin_settings.cache_clear()
    assert "Secure" in web.get("/admin/sign-in").headers["set-cookie"]


def test_sign_out_makes_the_old_cookie_worthless(web):
    token = as_role(web, "owner")
    cookie = web.cookies.get("patron_session")
    assert web.post("/admin/sign-out", data={"csrf_token": token}).status_code == 200
    web.cookies.set("patron_session", cookie, path="/admin")
    assert web.get("/admin/", follow_redirects=False).status_code == 303


def test_a_password_change_signs_out_the_other_browser(app, web):
    token = as_role(web, "support")
    with TestClient(app) as other:
        as_role(other, "support")
        mismatch = web.post(
            "/admin/account/password",
            data={
                "csrf_token": token,
                "current_password": PASSWORD,
                "password": "new-secret-123",
                "password_again": "new-secret-124",
            },
        )
        assert mismatch.status_code == 422
        assert field_errors(mismatch.text) == {"f-password_again": "The two new passwords differ."}
        wrong = web.post(
            "/admin/account/password",
            data={
                "csrf_token": token,
                "current_password": "not it",
                "password": "new-secret-123",
                "password_again": "new-secret-123",
            },
        )
        assert wrong.status_code == 422
        assert field_errors(wrong.text) == {
            "f-current_password": "The current password is not right."
        }
        done = web.post(
            "/admin/account/password",
            data={
                "csrf_token": token,
                "current_password": PASSWORD,
                "password": "new-secret-123",
                "password_again": "new-secret-123",
            },
        )
        assert done.status_code == 200 and "Password changed" in done.text
        assert other.get("/admin/", follow_redirects=False).status_code == 303
    assert web.get("/admin/").status_code == 200


def test_five_wrong_passwords_lock_the_sign_in_over_http(web):
    form = web.get("/admin/sign-in")
    token = csrf_of(form.text)
    data = {"email": STAFF["viewer"][0], "password": "wrong-one", "csrf_token": token}
    for _ in range(4):
        answer = web.post("/admin/sign-in", data=data)
        assert answer.status_code == 401 and "not right" in answer.text
    answer = web.post("/admin/sign-in", data=data)
    assert answer.status_code == 401 and "locked for 15 minutes" in answer.text
    right = {**data, "password": PASSWORD}
    assert "locked" in web.post("/admin/sign-in", data=right).text
    clock.freeze(T0 + timedelta(minutes=16))
    assert web.post("/admin/sign-in", data=right, follow_redirects=False).status_code == 303


def test_empty_sign_in_fields_are_marked_inline(web):
    form = web.get("/admin/sign-in")
    answer = web.post(
        "/admin/sign-in", data={"email": "", "password": "", "csrf_token": csrf_of(form.text)}
    )
    assert answer.status_code == 422
    assert field_errors(answer.text) == {"f-email": "Fill this in.", "f-password": "Fill this in."}


# --- CSRF ---------------------------------------------------------------------------------------


def test_sign_in_without_its_csrf_token_is_refused(web):
    web.get("/admin/sign-in")
    answer = web.post("/admin/sign-in", data={"email": STAFF["owner"][0], "password": PASSWORD})
    assert answer.status_code == 403
    assert "This form cannot be accepted" in answer.text
    assert "patron_session" not in web.cookies


@pytest.mark.parametrize("token", [None, "", "forged-token", "x" * 5000])
def test_a_post_without_the_session_token_is_refused_and_changes_nothing(web, db, seeded, token):
    as_role(web, "support")
    data = {"program": "bakery", "points": "1000", "reason": "forged"}
    if token is not None:
        data["csrf_token"] = token
    answer = web.post(f"/admin/members/{seeded.member_id}/adjust", data=data)
    assert answer.status_code == 403 and "This form cannot be accepted" in answer.text
    assert audit_rows(db, "points.adjusted") == []


def test_another_sessions_token_is_refused(app, web, seeded):
    as_role(web, "support")
    with TestClient(app) as other:
        other_token = as_role(other, "support")
    answer = web.post(
        f"/admin/members/{seeded.member_id}/block",
        data={"program": "bakery", "reason": "x", "csrf_token": other_token},
    )
    assert answer.status_code == 403


def test_the_token_in_the_htmx_header_is_accepted(web, db, seeded):
    token = as_role(web, "support")
    answer = web.post(
        f"/admin/members/{seeded.member_id}/block",
        data={"program": "bakery", "reason": "stolen card"},
        headers={"X-CSRF-Token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert len(audit_rows(db, "member.blocked")) == 1


# --- roles ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "method", "path", "status"),
    [
        ("support", "GET", "/admin/audit", 403),
        ("marketer", "GET", "/admin/audit", 403),
        ("viewer", "GET", "/admin/audit", 403),
        ("owner", "GET", "/admin/audit", 200),
        ("viewer", "POST", "/admin/members/{id}/adjust", 403),
        ("marketer", "POST", "/admin/members/{id}/adjust", 403),
        ("viewer", "POST", "/admin/members/{id}/tier", 403),
        ("marketer", "POST", "/admin/members/{id}/profile", 403),
        ("viewer", "POST", "/admin/members/{id}/block", 403),
        ("viewer", "GET", "/admin/members/{id}", 200),
        ("viewer", "GET", "/admin/members/{id}/export", 200),
    ],
)
def test_each_role_reaches_only_what_it_may(web, seeded, role, method, path, status):
    token = as_role(web, role)
    url = path.format(id=seeded.member_id)
    data = {"csrf_token": token, "program": "bakery", "points": "5", "reason": "test"}
    answer = web.get(url) if method == "GET" else web.post(url, data=data)
    assert answer.status_code == status
    if status == 403:
        assert "Not for your role" in answer.text


@pytest.mark.parametrize(
    ("role", "sees_audit"), [("owner", True), ("support", False), ("viewer", False)]
)
def test_the_nav_hides_what_a_role_cannot_open(web, role, sees_audit):
    as_role(web, role)
    home = web.get("/admin/").text
    assert ('href="/admin/audit"' in home) is sees_audit
    assert 'href="/admin/members"' in home


# --- member actions, audited with the user ------------------------------------------------------


def test_adjust_is_written_by_the_signed_in_user_everywhere(web, db, staff, seeded):
    token = as_role(web, "support")
    answer = web.post(
        f"/admin/members/{seeded.member_id}/adjust",
        data={
            "csrf_token": token,
            "program": "bakery",
            "points": "-200",
            "reason": "double scan at the till",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert "done=adjusted" in answer.headers["location"]
    assert "delta=-200" in answer.headers["location"]
    who = f"user:{staff['support']}"
    [record] = audit_rows(db, "points.adjusted")
    assert record.actor == who and record.after is not None
    assert record.after["reason"] == "double scan at the till"
    with db.unit_of_work(readonly=True) as s:
        entry = s.scalars(select(Entry).where(Entry.kind == "adjust")).one()
        assert (entry.points, entry.actor) == (-200, who)
    page = web.get(answer.headers["location"]).text
    assert "Points adjusted by -200 points" in page
    assert "support@demo.patron" in page


def test_a_tier_appeal_records_the_reason_and_the_user(web, db, staff, seeded):
    token = as_role(web, "support")
    answer = web.post(
        f"/admin/members/{seeded.member_id}/tier",
        data={
            "csrf_token": token,
            "program": "bakery",
            "tier": "silver",
            "reason": "moved from the old card",
            "until": "",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    with db.unit_of_work(readonly=True) as s:
        change = s.scalars(select(TierChange).order_by(TierChange.id.desc())).first()
        assert change is not None
        assert (change.to_tier, change.reason, change.note, change.actor) == (
            "silver",
            "manual",
            "moved from the old card",
            f"user:{staff['support']}",
        )
    assert audit_rows(db, "tier.changed_manually")[0].actor == f"user:{staff['support']}"


def test_profile_edits_are_saved_and_audited(web, db, staff, seeded):
    token = as_role(web, "support")
    answer = web.post(
        f"/admin/members/{seeded.member_id}/profile",
        data={
            "csrf_token": token,
            "program": "bakery",
            "name": "김민지",
            "phone": "010 1234 5678",
            "email": "MINJI.KIM@example.com",
            "birthday": "1990-04-05",
            "gender": "female",
            "language": "en",
            "marketing_consent": "1",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    with db.unit_of_work(readonly=True) as s:
        member = s.get(Member, seeded.member_id)
        assert member is not None
        assert (member.email, member.language, member.marketing_consent) == (
            "minji.kim@example.com",
            "en",
            True,
        )
        assert member.phone == "+821012345678"
    [record] = audit_rows(db, "member.updated")
    assert record.actor == f"user:{staff['support']}"


def test_the_export_is_the_ledger_export_and_is_audited(web, db, staff, seeded):
    as_role(web, "viewer")
    answer = web.get(f"/admin/members/{seeded.member_id}/export?format=csv&from=2026-01-01&to=")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    lines = answer.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("entry,date,kind,points,running_total")
    assert [line.split(",")[8] for line in lines[1:]] == ["MAPO-0004", "MAPO-0005"]
    [record] = audit_rows(db, "member.history_exported")
    assert record.actor == f"user:{staff['viewer']}"
    assert record.after == {"format": "csv", "from": "2026-01-01", "to": None, "rows": 2}
    xlsx = web.get(f"/admin/members/{seeded.member_id}/export?format=xlsx")
    assert xlsx.content[:2] == b"PK"


# --- form errors: 422 with the message at the field -----------------------------------------------


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        ({"points": "", "reason": ""}, {"adjust-points": "Fill this in.", "adjust-reason": "Fill this in."}),
        ({"points": "0", "reason": "why not"}, {"adjust-points": "Enter a number other than 0."}),
        ({"points": "12.5", "reason": "why not"}, {"adjust-points": "Enter a whole number."}),
        ({"points": "ten", "reason": "why not"}, {"adjust-points": "Enter a whole number."}),
        ({"points": "9999999999999", "reason": "why not"}, {"adjust-points": "This number is out of range."}),
        ({"points": "5", "reason": "ab"}, {"adjust-reason": "Use at least 3 characters."}),
    ],
)  # fmt: skip
def test_adjust_form_errors_are_inline(web, seeded, data, errors):
    token = as_role(web, "support")
    answer = web.post(
        f"/admin/members/{seeded.member_id}/adjust",
        data={"csrf_token": token, "program": "bakery", **data},
        follow_redirects=False,
    )
    assert answer.status_code == 422
    assert field_errors(answer.text) == errors


def test_a_removal_beyond_the_balance_leaves_debt_where_the_program_allows_it(web, db, seeded):
    token = as_role(web, "support")
    answer = web.post(
        f"/admin/members/{seeded.member_id}/adjust",
        data={"csrf_token": token, "program": "bakery", "points": "-999999", "reason": "fraud"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, field_errors(answer.text)
    [record] = audit_rows(db, "points.adjusted")
    assert record.after["points"] == -999999 and record.after["balance"] < 0


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        ({"tier": "", "reason": ""}, {"appeal-tier": "Fill this in.", "appeal-reason": "Fill this in."}),
        ({"tier": "platinum", "reason": "upgrade"}, {"appeal-tier": "The program has no such tier."}),
        ({"tier": "gold", "reason": "upgrade", "until": "2020-01-01"}, {"appeal-until": "This day has already passed."}),
        ({"tier": "gold", "reason": "upgrade", "until": "31/12/2026"}, {"appeal-until": "Enter a date as YYYY-MM-DD."}),
        ({"tier": "gold", "reason": "ok"}, {"appeal-reason": "Use at least 3 characters."}),
    ],
)  # fmt: skip
def test_tier_form_errors_are_inline(web, seeded, data, errors):
    token = as_role(web, "support")
    answer = web.post(
        f"/admin/members/{seeded.member_id}/tier",
        data={"csrf_token": token, "program": "bakery", **data},
    )
    assert answer.status_code == 422
    assert field_errors(answer.text) == errors


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        ({"name": ""}, {"p-name": "Fill this in."}),
        ({"email": "not-an-address"}, {"p-email": "This is not a valid e-mail address."}),
        ({"phone": "010-5555-7777"}, {"p-phone": "Another member has this phone number."}),
        ({"phone": "1234"}, {"p-phone": "This is not a valid phone number."}),
        ({"email": "seojun@example.com"}, {"p-email": "Another account has this e-mail."}),
        ({"birthday": "1990-02-30"}, {"p-birthday": "Enter a date as YYYY-MM-DD."}),
        ({"gender": "robot"}, {"p-gender": "Choose one of the options."}),
    ],
)
def test_profile_form_errors_are_inline_and_keep_what_was_typed(web, seeded, data, errors):
    token = as_role(web, "support")
    form = {"name": "김민지", "phone": "010-1234-5678", "language": "ko", **data}
    answer = web.post(
        f"/admin/members/{seeded.member_id}/profile",
        data={"csrf_token": token, "program": "bakery", **form},
    )
    assert answer.status_code == 422
    assert field_errors(answer.text) == errors
    for name, value in data.items():
        if value and name != "gender":  # a select only shows its own options
            assert f'value="{value}"' in answer.text


def test_a_date_range_that_ends_before_it_starts_is_marked_at_the_filter(web, seeded):
    as_role(web, "support")
    answer = web.get(f"/admin/members/{seeded.member_id}?from=2026-03-01&to=2026-01-01")
    assert answer.status_code == 422
    assert "The start date is after the end date." in answer.text
    bad = web.get(f"/admin/members/{seeded.member_id}?from=yesterday&to=")
    assert bad.status_code == 422
    assert field_errors(bad.text) == {"h-from": "Enter a date as YYYY-MM-DD."}
    ok = web.get(f"/admin/members/{seeded.member_id}?from=2026-01-01&to=")
    assert ok.status_code == 200
    assert ok.text.count('<td class="nowrap">') >= 2 and "MAPO-0003" not in ok.text


GARBAGE = [
    "",
    " ",
    "\x00",
    "'; DROP TABLE members;--",
    "９９",
    "-0",
    "1e9",
    "🍞" * 300,
    "a" * 10_000,
]


@pytest.mark.parametrize("value", GARBAGE)
def test_bad_input_never_gives_a_500(web, seeded, value):
    token = as_role(web, "owner")
    member = seeded.member_id
    for path in ("adjust", "tier", "profile", "block", "unblock"):
        data = {
            "csrf_token": token,
            "program": value,
            "points": value,
            "reason": value,
            "tier": value,
            "until": value,
            "name": value,
            "phone": value,
            "email": value,
            "birthday": value,
            "gender": value,
            "language": value,
        }
        answer = web.post(f"/admin/members/{member}/{path}", data=data, follow_redirects=False)
        assert answer.status_code < 500, (path, answer.text[:500])
    value = quote(value)
    for url in (
        f"/admin/members/{member}?program={value}&from={value}&to={value}&cursor={value}",
        f"/admin/members/{member}/print?from={value}",
        f"/admin/members/{member}/export?format=csv&from={value}&program={value}",
        f"/admin/members?q={value}",
        f"/admin/members/results?q={value}",
        f"/admin/audit?actor={value}&action={value}&member={value}&before={value}",
    ):
        assert web.get(url, follow_redirects=False).status_code < 500, url
    web.post("/admin/account/language", data={"csrf_token": token, "language": value})


@pytest.mark.parametrize("path", ["/admin/members/0", "/admin/members/abc", "/admin/nope"])
def test_missing_pages_are_html_404s(web, path):
    as_role(web, "support")
    answer = web.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "Not found" in answer.text


def test_an_unknown_member_is_a_404_page(web):
    as_role(web, "support")
    answer = web.get("/admin/members/424242")
    assert answer.status_code == 404 and "There is no such member." in answer.text


# --- search ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["010-1234", "01012345678", "+82 10 1234 5678", "bkr100000", "100000", "minji@", "민지"],
)
def test_search_finds_a_member_by_part_of_card_phone_e_mail_or_name(web, query):
    as_role(web, "viewer")
    fragment = web.get("/admin/members/results", params={"q": query})
    assert fragment.status_code == 200
    assert "김민지" in fragment.text and "박서준" not in fragment.text
    assert "<html" not in fragment.text  # a fragment, not a page


def test_search_lists_several_and_ranks_an_exact_card_first(web):
    as_role(web, "viewer")
    both = web.get("/admin/members/results", params={"q": "BKR10000"}).text
    assert both.index("김민지") < both.index("박서준")
    exact = web.get("/admin/members/results", params={"q": "BKR100001"}).text
    assert "박서준" in exact and "김민지" not in exact
    assert "No member matches" in web.get("/admin/members/results", params={"q": "zzz"}).text
    assert web.get("/admin/members/results", params={"q": "  "}).text.strip() == ""


def test_submitting_a_search_with_one_hit_opens_the_member(web, seeded):
    as_role(web, "viewer")
    answer = web.get("/admin/members", params={"q": "BKR100000"}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/admin/members/{seeded.member_id}"
    several = web.get("/admin/members", params={"q": "010"})
    assert several.status_code == 200 and "2 found" in several.text


# --- languages, headers, schema -------------------------------------------------------------------


def test_each_user_chooses_a_language(web, db, staff, seeded):
    token = as_role(web, "support")
    answer = web.post(
        "/admin/account/language",
        data={"csrf_token": token, "language": "zh", "next": f"/admin/members/{seeded.member_id}"},
        follow_redirects=False,
    )
    assert answer.headers["location"] == f"/admin/members/{seeded.member_id}"
    page = web.get(answer.headers["location"]).text
    assert '<html lang="zh">' in page and "余额" in page and "2026年2月27日" in page
    assert audit_rows(db, "staff.language_changed")[0].actor == f"user:{staff['support']}"
    with TestClient(web.app) as other:
        as_role(other, "owner")
        assert "Balance" in other.get(f"/admin/members/{seeded.member_id}").text


def test_pages_carry_a_strict_content_security_policy(web):
    as_role(web, "owner")
    answer = web.get("/admin/")
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"
    assert "<script>" not in answer.text and " style=" not in answer.text
    css = web.get("/admin/static/admin.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert web.get("/admin/static/htmx.min.js").status_code == 200


def test_the_admin_ui_is_not_in_the_api_schema(web):
    paths = web.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/admin")]
