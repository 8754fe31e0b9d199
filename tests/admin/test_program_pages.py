"""Program settings, new program, stores and channels over HTTP: roles, CSRF, inline errors
(422, nothing saved), audit rows naming the user, and never a 500 on bad input."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from patron.audit.models import AuditRecord
from patron.programs.models import Program, Store
from tests.admin.helpers import STAFF, sign_in

FIELD_ERROR = re.compile(r'<p class="field-error" id="(?:f-)?([^"]+)-error">([^<]*)</p>')


def field_errors(html: str) -> dict[str, str]:
    return dict(FIELD_ERROR.findall(html))


@pytest.fixture
def web(app, staff, seeded):
    with TestClient(app) as test_client:
        yield test_client


def as_role(client: TestClient, role: str) -> str:
    return sign_in(client, STAFF[role][0])


def program_row(db, code: str = "bakery") -> Program:
    with db.unit_of_work(readonly=True) as s:
        row = s.scalars(select(Program).where(Program.code == code)).one()
        s.expunge(row)
        return row


def audit_rows(db, action: str) -> list[AuditRecord]:
    with db.unit_of_work(readonly=True) as s:
        rows = list(s.scalars(select(AuditRecord).where(AuditRecord.action == action)))
        s.expunge_all()
        return rows


def field_kind(name: str) -> str:
    """How the settings form shows a field (typed values come back in text and number inputs)."""
    if name in ("timezone", "earn_mode", "earn_rounding", "expiry_kind", "negative_balance"):
        return "select"
    if name in ("country", "name", "point_value", "earn_per_amount", "redeem_max_share"):
        return "text" if name != "country" else "upper"
    return "number"


def settings_form(token: str, **changes: str) -> dict[str, str]:
    """The bakery's settings as the page posts them, with `changes`."""
    form = {
        "csrf_token": token,
        "name": "Corner Bakery",
        "timezone": "Asia/Seoul",
        "country": "KR",
        "point_value": "1",
        "earn_points": "10",
        "earn_per_amount": "1000",
        "earn_mode": "per_full_unit",
        "earn_rounding": "down",
        "expiry_kind": "months",
        "expiry_months": "12",
        "pending_days": "0",
        "redeem_min_points": "1000",
        "redeem_step": "10",
        "redeem_max_share": "100",
        "negative_balance": "allow_debt",
    }
    form.update(changes)
    return form


# --- seeing the settings ----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "marketer"])
def test_owners_and_marketers_see_an_editable_form(web, role):
    as_role(web, role)
    page = web.get("/admin/program")
    assert page.status_code == 200
    assert 'action="/admin/program/bakery/settings"' in page.text
    assert "Save settings" in page.text
    assert '<fieldset class="plain" disabled>' not in page.text
    # The program's values are in the form, as people type them.
    assert 'name="point_value" type="text" value="1"' in page.text
    assert 'name="redeem_max_share" type="text" value="100"' in page.text
    assert '<option value="Asia/Seoul" selected>' in page.text
    assert "10 points per ₩1,000" in page.text


def test_a_viewer_sees_the_settings_read_only(web):
    as_role(web, "viewer")
    page = web.get("/admin/program")
    assert page.status_code == 200
    assert '<fieldset class="plain" disabled>' in page.text
    assert "Save settings" not in page.text
    assert "only owners and marketers can change them" in page.text
    assert "New program" not in page.text
    stores = web.get("/admin/program/bakery/stores")
    assert stores.status_code == 200 and "mapo" in stores.text
    assert "Add a store" not in stores.text and "Switch off" not in stores.text


def test_support_has_no_program_pages(web):
    as_role(web, "support")
    assert web.get("/admin/program").status_code == 403
    assert web.get("/admin/program/bakery/stores").status_code == 403
    assert 'href="/admin/program"' not in web.get("/admin/").text


@pytest.mark.parametrize("role", ["support", "viewer"])
def test_support_and_viewer_cannot_save(web, db, role):
    token = as_role(web, role)
    before = program_row(db).point_value
    answer = web.post("/admin/program/bakery/settings", data=settings_form(token, point_value="2"))
    assert answer.status_code == 403
    for url, data in [
        ("/admin/program/bakery/stores", {"code": "x1", "name": "X"}),
        ("/admin/program/bakery/stores/mapo", {"name": "Renamed"}),
        ("/admin/program/bakery/stores/mapo/active", {"active": "0"}),
        ("/admin/program/new", {"code": "x", "name": "X"}),
    ]:
        assert web.post(url, data={**data, "csrf_token": token}).status_code == 403, url
    assert program_row(db).point_value == before


def test_an_unknown_program_is_a_404_page(web):
    as_role(web, "owner")
    assert web.get("/admin/program?program=nosuch").status_code == 404
    assert web.get("/admin/program?program=Bad%20Code").status_code in (404, 422)
    assert web.get("/admin/program/nosuch/stores").status_code == 404


# --- saving -----------------------------------------------------------------------------------


def test_a_marketer_saves_and_the_audit_log_names_them(web, db, staff):
    token = as_role(web, "marketer")
    answer = web.post(
        "/admin/program/bakery/settings",
        data=settings_form(
            token,
            point_value="1.5",
            pending_days="7",
            redeem_max_share="50",
            expiry_kind="end_of_year",
            expiry_months="12",
            timezone="Asia/Shanghai",
            earn_on_redeemed="1",
            negative_balance="write_off",
        ),
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/program?program=bakery&done=saved"
    program = program_row(db)
    assert program.point_value == Decimal("1.5")
    assert program.pending_days == 7
    assert program.redeem_max_share == Decimal("0.5")
    assert (program.expiry_kind, program.expiry_months) == ("end_of_year", 12)
    assert program.timezone == "Asia/Shanghai"
    assert program.earn_on_redeemed is True
    assert program.negative_balance == "write_off"
    [row] = audit_rows(db, "program.updated")
    assert row.actor == f"user:{staff['marketer']}"
    assert row.before["point_value"] == "1" and row.after["point_value"] == "1.5"
    page = web.get(answer.headers["location"])
    assert "Settings saved." in page.text
    assert 'name="point_value" type="text" value="1.5"' in page.text
    assert 'name="redeem_max_share" type="text" value="50"' in page.text
    # The recent changes list names the marketer by e-mail.
    assert STAFF["marketer"][0] in page.text


def test_saving_the_same_values_says_nothing_changed_and_writes_no_audit(web, db):
    token = as_role(web, "owner")
    answer = web.post(
        "/admin/program/bakery/settings", data=settings_form(token), follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"].endswith("done=unchanged")
    assert audit_rows(db, "program.updated") == []


def test_a_new_base_rate_publishes_a_new_rule_version(web, db):
    token = as_role(web, "owner")
    version = program_row(db).rule_version
    answer = web.post(
        "/admin/program/bakery/settings",
        data=settings_form(token, earn_points="20"),
        follow_redirects=False,
    )
    assert answer.status_code == 303
    program = program_row(db)
    assert program.earn_points == 20 and program.rule_version == version + 1


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"point_value": "0"}, "point_value", "above 0"),
        ({"point_value": "abc"}, "point_value", "above 0"),
        ({"point_value": ""}, "point_value", "Fill this in."),
        ({"pending_days": "400"}, "pending_days", "0 to 365"),
        ({"pending_days": "1.5"}, "pending_days", "0 to 365"),
        ({"earn_points": "-1"}, "earn_points", "0 to 1,000,000"),
        ({"earn_per_amount": "0"}, "earn_per_amount", "above 0"),
        ({"earn_per_amount": "10.5"}, "earn_per_amount", "KRW amounts have at most 0 decimals"),
        ({"expiry_kind": "months", "expiry_months": "0"}, "expiry_months", "at least 1"),
        ({"expiry_months": ""}, "expiry_months", "Fill this in."),
        ({"redeem_max_share": "0"}, "redeem_max_share", "percentage"),
        ({"redeem_max_share": "150"}, "redeem_max_share", "percentage"),
        ({"redeem_max_share": "33.333"}, "redeem_max_share", "percentage"),
        ({"redeem_max_share": "x"}, "redeem_max_share", "percentage"),
        ({"redeem_step": "0"}, "redeem_step", "1 to 1,000,000"),
        ({"redeem_min_points": "lots"}, "redeem_min_points", "whole number"),
        ({"timezone": "Mars/Olympus"}, "timezone", "Choose a timezone"),
        ({"country": "kor"}, "country", "two capital letters"),
        ({"country": ""}, "country", "Fill this in."),
        ({"name": ""}, "name", "Fill this in."),
        ({"name": "x" * 201}, "name", "at most 200"),
        ({"earn_mode": "double"}, "earn_mode", "Choose one of the options."),
        ({"negative_balance": "jail"}, "negative_balance", "Choose one of the options."),
        ({"expiry_kind": "sometimes"}, "expiry_kind", "Choose one of the options."),
    ],
)
def test_a_wrong_value_is_shown_at_its_field_and_nothing_is_saved(web, db, changes, field, message):
    token = as_role(web, "owner")
    before = program_row(db)
    answer = web.post("/admin/program/bakery/settings", data=settings_form(token, **changes))
    assert answer.status_code == 422
    errors = field_errors(answer.text)
    assert field in errors, errors
    assert message in errors[field].replace("&#34;", '"').replace("&amp;", "&")
    assert "Nothing was saved" in answer.text
    # The form keeps what was typed, so it can be corrected.
    for name, value in changes.items():
        kind = field_kind(name)
        if kind in ("text", "number") and len(value) < 50:
            assert f'name="{name}" type="{kind}" value="{value}"' in answer.text
    after = program_row(db)
    assert after.updated_at == before.updated_at
    assert audit_rows(db, "program.updated") == []


def test_several_wrong_fields_are_all_reported_at_once(web):
    token = as_role(web, "owner")
    answer = web.post(
        "/admin/program/bakery/settings",
        data=settings_form(token, point_value="-1", pending_days="x", redeem_step="0"),
    )
    assert answer.status_code == 422
    assert {"point_value", "pending_days", "redeem_step"} <= set(field_errors(answer.text))


def test_points_that_never_expire_need_no_months(web, db):
    token = as_role(web, "owner")
    answer = web.post(
        "/admin/program/bakery/settings",
        data=settings_form(token, expiry_kind="none", expiry_months=""),
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert program_row(db).expiry_kind == "none"


def test_a_form_with_fields_missing_or_junk_added_is_never_a_500(web):
    token = as_role(web, "owner")
    for data in (
        {"csrf_token": token},
        {"csrf_token": token, "name": "X", "extra": "1", "currency": "USD"},
        settings_form(token, point_value="1e400", earn_per_amount="NaN"),
        settings_form(token, redeem_max_share="Infinity", expiry_months="9" * 30),
    ):
        answer = web.post("/admin/program/bakery/settings", data=data)
        assert answer.status_code == 422, answer.text[:500]


def test_the_currency_cannot_be_changed_through_the_form(web, db):
    token = as_role(web, "owner")
    web.post("/admin/program/bakery/settings", data=settings_form(token, currency="USD"))
    assert program_row(db).currency == "KRW"
    page = web.get("/admin/program")
    assert re.search(r'name="currency" type="text" value="KRW"[^>]* readonly="readonly"', page.text)


def test_saving_needs_the_csrf_token(web, db):
    as_role(web, "owner")
    form = settings_form("wrong-token", point_value="3")
    answer = web.post("/admin/program/bakery/settings", data=form)
    assert answer.status_code == 403
    del form["csrf_token"]
    assert web.post("/admin/program/bakery/settings", data=form).status_code == 403
    assert program_row(db).point_value == Decimal(1)


# --- several programs -------------------------------------------------------------------------


NEW_PROGRAM = {
    "code": "shanghai",
    "currency": "CNY",
    "name": "Shanghai Department Store",
    "timezone": "Asia/Shanghai",
    "country": "",
    "point_value": "0.01",
    "earn_points": "1",
    "earn_per_amount": "1",
    "earn_mode": "proportional",
    "earn_rounding": "down",
    "expiry_kind": "months",
    "expiry_months": "12",
    "pending_days": "0",
    "redeem_min_points": "100",
    "redeem_step": "1",
    "redeem_max_share": "50",
    "negative_balance": "allow_debt",
}


def test_a_marketer_creates_a_second_program_and_switches_between_them(web, db, staff):
    token = as_role(web, "marketer")
    assert web.get("/admin/program/new").status_code == 200
    answer = web.post(
        "/admin/program/new", data={**NEW_PROGRAM, "csrf_token": token}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/program?program=shanghai&done=created"
    program = program_row(db, "shanghai")
    assert program.currency == "CNY" and program.country == "CN"
    assert program.redeem_max_share == Decimal("0.5")
    [row] = [r for r in audit_rows(db, "program.created") if r.subject_id == "shanghai"]
    assert row.actor == f"user:{staff['marketer']}"
    page = web.get(answer.headers["location"])
    assert "Program created." in page.text
    # A switcher lists both programs; the first program is still the default.
    assert '<select id="program-switch" name="program" data-autosubmit>' in page.text
    assert '<option value="shanghai" selected>' in page.text
    assert '<option value="bakery" selected>' in web.get("/admin/program").text


def test_a_new_program_with_a_taken_code_or_bad_values_is_refused_inline(web, db):
    token = as_role(web, "owner")
    taken = web.post(
        "/admin/program/new", data={**NEW_PROGRAM, "code": "bakery", "csrf_token": token}
    )
    assert taken.status_code == 422
    assert "Another program already has this code." in field_errors(taken.text)["code"]
    bad = web.post(
        "/admin/program/new",
        data={**NEW_PROGRAM, "code": "Shang Hai!", "currency": "XXX", "csrf_token": token},
    )
    assert bad.status_code == 422
    assert {"code", "currency"} <= set(field_errors(bad.text))
    decimals = web.post(
        "/admin/program/new",
        data={**NEW_PROGRAM, "earn_per_amount": "0.001", "csrf_token": token},
    )
    assert decimals.status_code == 422
    assert "CNY amounts have at most 2 decimals" in field_errors(decimals.text)["earn_per_amount"]
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(Program.id).where(Program.code == "shanghai")) is None


# --- stores -----------------------------------------------------------------------------------


def store_row(db, code: str) -> Store | None:
    with db.unit_of_work(readonly=True) as s:
        row = s.scalars(select(Store).where(Store.code == code)).one_or_none()
        if row is not None:
            s.expunge(row)
        return row


def test_add_rename_and_switch_a_store_off_and_on(web, db, staff):
    token = as_role(web, "marketer")
    page = web.get("/admin/program/bakery/stores")
    assert page.status_code == 200
    assert "Sales channels" in page.text and "<code>online</code>" in page.text

    added = web.post(
        "/admin/program/bakery/stores",
        data={"code": "gangnam", "name": "Gangnam", "csrf_token": token},
        follow_redirects=False,
    )
    assert added.status_code == 303
    assert "Store gangnam added." in web.get(added.headers["location"]).text
    assert store_row(db, "gangnam").name == "Gangnam"

    assert web.get("/admin/program/bakery/stores/gangnam").status_code == 200
    renamed = web.post(
        "/admin/program/bakery/stores/gangnam",
        data={"name": "Gangnam Station", "csrf_token": token},
        follow_redirects=False,
    )
    assert renamed.status_code == 303
    assert store_row(db, "gangnam").name == "Gangnam Station"

    off = web.post(
        "/admin/program/bakery/stores/gangnam/active",
        data={"active": "0", "csrf_token": token},
        follow_redirects=False,
    )
    assert off.status_code == 303 and store_row(db, "gangnam").active is False
    assert "Switched off" in web.get(off.headers["location"]).text
    on = web.post(
        "/admin/program/bakery/stores/gangnam/active",
        data={"active": "1", "csrf_token": token},
        follow_redirects=False,
    )
    assert on.status_code == 303 and store_row(db, "gangnam").active is True

    actor = f"user:{staff['marketer']}"
    for action in ("store.created", "store.updated", "store.deactivated", "store.reactivated"):
        rows = [r for r in audit_rows(db, action) if r.subject_id == "bakery/gangnam"]
        assert [r.actor for r in rows] == [actor], action


def test_a_duplicate_store_code_is_shown_on_the_code_field(web, db):
    token = as_role(web, "owner")
    answer = web.post(
        "/admin/program/bakery/stores", data={"code": "mapo", "name": "Again", "csrf_token": token}
    )
    assert answer.status_code == 422
    assert field_errors(answer.text)["store-code"] == (
        "This program already has a store with this code."
    )
    assert 'value="Again"' in answer.text
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(Store.name).where(Store.code == "mapo")) == "Mapo"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"code": "", "name": "X"}, "store-code"),
        ({"code": "Mapo 2!", "name": "X"}, "store-code"),
        ({"code": "x" * 41, "name": "X"}, "store-code"),
        ({"code": "ok", "name": ""}, "store-name"),
        ({"code": "ok", "name": "n" * 201}, "store-name"),
    ],
)
def test_a_bad_store_is_refused_inline(web, db, data, field):
    token = as_role(web, "owner")
    answer = web.post("/admin/program/bakery/stores", data={**data, "csrf_token": token})
    assert answer.status_code == 422
    assert field in field_errors(answer.text)
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(Store.id).where(Store.code == "ok")) is None


def test_renaming_to_nothing_is_refused_and_an_unknown_store_is_404(web, db):
    token = as_role(web, "owner")
    answer = web.post("/admin/program/bakery/stores/mapo", data={"name": " ", "csrf_token": token})
    assert answer.status_code == 422
    assert field_errors(answer.text)["store-name"] == "Fill this in."
    assert store_row(db, "mapo").name == "Mapo"
    assert web.get("/admin/program/bakery/stores/nosuch").status_code == 404
    gone = web.post("/admin/program/bakery/stores/nosuch", data={"name": "X", "csrf_token": token})
    assert gone.status_code == 404


def test_the_pages_speak_korean_and_chinese(web, db):
    token = as_role(web, "owner")
    for lang, title, stores in (
        ("ko", "기본 적립률", "판매 채널"),
        ("zh", "基本积分比例", "销售渠道"),
    ):
        web.post(
            "/admin/account/language",
            data={"language": lang, "next": "/admin/", "csrf_token": token},
        )
        assert title in web.get("/admin/program").text
        assert stores in web.get("/admin/program/bakery/stores").text


# --- expiry N days after earning (issue 16 item 5) --------------------------------------------


def test_points_can_expire_n_days_after_earning(web, db):
    token = as_role(web, "owner")
    answer = web.post(
        "/admin/program/bakery/settings",
        data=settings_form(token, expiry_kind="days", expiry_days="90", expiry_months=""),
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    program = program_row(db)
    assert (program.expiry_kind, program.expiry_days) == ("days", 90)
    [row] = audit_rows(db, "program.updated")
    assert row.after["expiry"]["days"] == 90
    page = web.get(answer.headers["location"])
    assert "Valid 90 days" in page.text
    assert 'name="expiry_days" type="number" value="90"' in page.text
    assert '<option value="days" selected>N days after earning</option>' in page.text
    # Back to months: the days left in their field are not an error, and are dropped.
    again = web.post(
        "/admin/program/bakery/settings",
        data=settings_form(token, expiry_kind="months", expiry_months="6", expiry_days="90"),
        follow_redirects=False,
    )
    assert again.status_code == 303, again.text
    program = program_row(db)
    assert (program.expiry_kind, program.expiry_months, program.expiry_days) == ("months", 6, None)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"expiry_days": ""}, "Fill this in."),
        ({"expiry_days": "0"}, "Enter whole days from 1 to 3650."),
        ({"expiry_days": "3651"}, "Enter whole days from 1 to 3650."),
        ({"expiry_days": "1.5"}, "Enter whole days from 1 to 3650."),
    ],
)
def test_a_bad_number_of_days_is_refused_inline(web, db, changes, message):
    token = as_role(web, "owner")
    page = web.post(
        "/admin/program/bakery/settings",
        data=settings_form(token, expiry_kind="days", **changes),
    )
    assert page.status_code == 422
    assert field_errors(page.text) == {"expiry_days": message}
    assert program_row(db).expiry_kind == "months"


def test_the_days_field_is_in_korean_and_chinese(web, db, staff):
    from patron.admin import service as staff_users

    for lang, words in (("ko", "적립 후 N일"), ("zh", "获得后 N 天")):
        with db.unit_of_work() as s:
            staff_users.get_user(s, staff["owner"]).language = lang
        as_role(web, "owner")
        assert words in web.get("/admin/program?program=bakery").text
