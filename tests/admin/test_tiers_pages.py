"""The tier editor over HTTP: roles, CSRF, inline errors, threshold what-if, save, stale refusal."""

from __future__ import annotations

import html
import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron import clock
from patron.audit.models import AuditRecord
from patron.audit.service import SYSTEM
from patron.programs.service import get_program
from patron.tiers import reports
from patron.tiers import service as tiers
from patron.tiers.schemas import TierSetup
from tests.admin.helpers import STAFF, sign_in

FIELD_ERROR = re.compile(r'<p class="field-error" id="f-([^"]+)-error">([^<]*)</p>')
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
FORM_ERROR = re.compile(r'<div class="alert alert-error" role="alert">([^<]*)</div>')


def field_errors(page: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in FIELD_ERROR.findall(page)}


def hidden_fields(page: str, form_action: str) -> dict[str, str]:
    start = page.index(f'action="{form_action}')
    end = page.index("</form>", start)
    return {k: html.unescape(v) for k, v in HIDDEN.findall(page[start:end])}


@pytest.fixture
def web(app, staff, seeded):
    with TestClient(app) as test_client:
        yield test_client


def as_role(client: TestClient, role: str) -> str:
    return sign_in(client, STAFF[role][0])


def stored(db) -> dict:
    with db.unit_of_work(readonly=True) as s:
        return tiers.tier_setup(s, get_program(s, "bakery")).model_dump(mode="json")


def audit_count(db) -> int:
    with db.unit_of_work(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(AuditRecord)) or 0)


def bakery_form(web: TestClient, token: str, **changes: str) -> dict[str, str]:
    """The editor's form as the page fills it for the bakery, with `changes`."""
    page = web.get("/admin/tiers")
    base = hidden_fields(page.text, "/admin/tiers/preview")["base"]
    data = {
        "csrf_token": token,
        "program": "bakery",
        "base": base,
        "metric": "points",
        "window": "year",
        "rolling_months": "12",
        "upgrade": "immediate",
        "downgrade": "one_level",
        "grace_periods": "1",
        "manual": "keep",
    }
    rows = [
        ("basic", "Basic", "일반", "普通", "0", "1", "0", ""),
        ("silver", "Silver", "실버", "银卡", "5000", "1.5", "0", "Free drink on your birthday"),
        (
            "gold",
            "Gold",
            "골드",
            "金卡",
            "12000",
            "2",
            "6",
            "Free drink on your birthday\n10% off whole cakes",
        ),
    ]
    names = ("code", "name_en", "name_ko", "name_zh", "threshold", "multiplier")
    for i, row in enumerate(rows):
        for name, value in zip((*names, "extra_expiry_months", "benefits"), row, strict=True):
            data[f"tier-{i}-{name}"] = value
    data.update(changes)
    return data


# --- who may do what --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "marketer"])
def test_owners_and_marketers_get_the_editor(web, role):
    as_role(web, role)
    page = web.get("/admin/tiers")
    assert page.status_code == 200
    assert 'action="/admin/tiers/preview"' in page.text
    assert 'name="tier-1-threshold" type="text" value="5000"' in page.text
    assert 'name="tier-2-benefits" rows="2"' in page.text
    assert "10% off whole cakes" in page.text
    assert '<template id="tier-row-template">' in page.text
    assert "/admin/static/tiers.js" in page.text


def test_a_viewer_reads_the_tiers_and_cannot_post(web, db):
    token = as_role(web, "viewer")
    page = web.get("/admin/tiers")
    assert page.status_code == 200
    assert 'action="/admin/tiers/preview"' not in page.text
    assert 'data-tier="silver"' in page.text and "×1.5" in page.text
    assert "Calendar year" in page.text
    before = audit_count(db)
    for path in ("/admin/tiers/preview", "/admin/tiers/save", "/admin/tiers/edit"):
        answer = web.post(path, data={"csrf_token": token, "program": "bakery"})
        assert answer.status_code == 403, path
    assert audit_count(db) == before


def test_support_cannot_open_the_tier_editor(web):
    as_role(web, "support")
    assert web.get("/admin/tiers").status_code == 403
    assert 'href="/admin/tiers"' not in web.get("/admin/").text


def test_a_preview_without_the_csrf_token_is_refused(web):
    token = as_role(web, "marketer")
    data = bakery_form(web, token)
    data.pop("csrf_token")
    assert web.post("/admin/tiers/preview", data=data).status_code == 403


# --- the what-if, then save -------------------------------------------------------------------


def test_the_threshold_what_if_matches_the_service_and_writes_nothing(web, db):
    token = as_role(web, "marketer")
    before, audits = stored(db), audit_count(db)
    preview = web.post(
        "/admin/tiers/preview", data=bakery_form(web, token, **{"tier-1-threshold": "1000"})
    )
    assert preview.status_code == 200, field_errors(preview.text)
    assert "Check before saving" in preview.text
    with db.unit_of_work(readonly=True) as s:
        expected = reports.what_if(
            s,
            get_program(s, "bakery"),
            reports.WhatIfRequest(thresholds={"silver": 1000}),
            now=clock.now(),
        )
    assert (expected.moved_up, expected.moved_down, expected.members) == (1, 0, 2)
    assert f'<dd data-testid="moved-up">{expected.moved_up}</dd>' in preview.text
    for row in expected.rows:
        cells = re.search(
            rf'<tr data-tier="{row.tier}">.*?data-col="today">(\d+)</td>\s*'
            r'<td class="num" data-col="proposed">(\d+)</td>',
            preview.text,
            re.S,
        )
        assert cells is not None and cells.groups() == (str(row.today), str(row.proposed))
    # The change itself, field by field.
    assert 'data-change="changed" data-tier="silver"' in preview.text
    assert '<td class="diff-old">5000</td><td class="diff-new">1000</td>' in preview.text
    assert stored(db) == before
    assert audit_count(db) == audits


def test_saving_replaces_the_setup_as_the_signed_in_user(web, db, staff):
    token = as_role(web, "marketer")
    preview = web.post(
        "/admin/tiers/preview", data=bakery_form(web, token, **{"tier-1-threshold": "1000"})
    )
    fields = hidden_fields(preview.text, "/admin/tiers/save")
    answer = web.post("/admin/tiers/save", data=fields, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/tiers?program=bakery&done=saved"
    after = stored(db)
    assert [t["threshold"] for t in after["tiers"]] == [0, 1000, 12000]
    assert after["tiers"][2]["benefits"] == ["Free drink on your birthday", "10% off whole cakes"]
    with db.unit_of_work(readonly=True) as s:
        actors = list(
            s.scalars(select(AuditRecord.actor).where(AuditRecord.action == "tiers.updated"))
        )
    assert actors[-1] == f"user:{staff['marketer']}"
    page = web.get(answer.headers["location"])
    assert "The tiers are saved." in page.text
    assert 'name="tier-1-threshold" type="text" value="1000"' in page.text


def test_saving_over_a_change_made_meanwhile_is_refused(web, db):
    token = as_role(web, "marketer")
    preview = web.post(
        "/admin/tiers/preview", data=bakery_form(web, token, **{"tier-1-threshold": "1000"})
    )
    fields = hidden_fields(preview.text, "/admin/tiers/save")
    # Someone else raises gold to 15,000 meanwhile.
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        now = tiers.tier_setup(s, program)
        assert now.policy is not None
        changed = [
            t.model_dump(mode="json", exclude={"rank"})
            | ({"threshold": 15000} if t.code == "gold" else {})
            for t in now.tiers
        ]
        setup = TierSetup.model_validate({"policy": now.policy.model_dump(), "tiers": changed})
        tiers.set_tiers(s, program, setup, actor=SYSTEM, now=clock.now())
    refused = web.post("/admin/tiers/save", data=fields)
    assert refused.status_code == 409
    assert "The tiers changed while you were editing" in refused.text
    assert [t["threshold"] for t in stored(db)["tiers"]] == [0, 5000, 15000]
    again = web.post(
        "/admin/tiers/preview", data={**bakery_form(web, token), "base": fields["base"]}
    )
    assert "Someone changed the tiers after you opened the editor" in again.text


def test_new_or_renamed_tiers_have_no_what_if_but_can_be_saved(web, db):
    token = as_role(web, "owner")
    data = bakery_form(
        web,
        token,
        **{
            "tier-3-code": "vip",
            "tier-3-name_en": "VIP",
            "tier-3-threshold": "30000",
            "tier-3-multiplier": "3",
        },
    )
    preview = web.post("/admin/tiers/preview", data=data)
    assert preview.status_code == 200, field_errors(preview.text)
    assert 'data-testid="no-what-if"' in preview.text
    assert 'data-change="added" data-tier="vip"' in preview.text
    web.post("/admin/tiers/save", data=hidden_fields(preview.text, "/admin/tiers/save"))
    assert [t["code"] for t in stored(db)["tiers"]] == ["basic", "silver", "gold", "vip"]


def test_rows_are_put_in_order_of_their_threshold(web):
    token = as_role(web, "marketer")
    data = bakery_form(web, token)
    # A new top tier typed into the first row's place, the basic tier moved to row 7.
    moved = {k.replace("tier-0-", "tier-7-"): v for k, v in data.items() if k.startswith("tier-0-")}
    data = {k: v for k, v in data.items() if not k.startswith("tier-0-")} | moved
    data |= {"tier-0-code": "vip", "tier-0-name_en": "VIP", "tier-0-threshold": "20,000"}
    preview = web.post("/admin/tiers/preview", data=data)
    assert preview.status_code == 200, field_errors(preview.text)
    setup = TierSetup.model_validate_json(
        hidden_fields(preview.text, "/admin/tiers/save")["candidate"]
    )
    assert [(t.code, t.threshold) for t in setup.tiers] == [
        ("basic", 0),
        ("silver", 5000),
        ("gold", 12000),
        ("vip", 20000),
    ]


def test_back_to_editing_keeps_the_candidate(web):
    token = as_role(web, "marketer")
    preview = web.post(
        "/admin/tiers/preview", data=bakery_form(web, token, **{"tier-1-threshold": "1000"})
    )
    fields = hidden_fields(preview.text, "/admin/tiers/save")
    back = web.post("/admin/tiers/edit", data=fields)
    assert back.status_code == 200
    assert 'name="tier-1-threshold" type="text" value="1000"' in back.text
    assert hidden_fields(back.text, "/admin/tiers/preview")["base"] == fields["base"]


def test_rows_are_added_and_removed_without_javascript(web, db):
    token = as_role(web, "marketer")
    before = stored(db)
    added = web.post("/admin/tiers/preview", data={**bakery_form(web, token), "op": "add"})
    assert added.status_code == 200
    assert 'name="tier-3-code"' in added.text and 'name="tier-4-code"' not in added.text
    removed = web.post("/admin/tiers/preview", data={**bakery_form(web, token), "op": "remove-1"})
    assert 'value="silver"' not in removed.text
    assert 'value="gold"' in removed.text
    assert stored(db) == before


# --- inline errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        (
            {"tier-1-code": "Silver!"},
            {
                "tier-1-code": "Use lower-case letters, digits, - and _ (starting with a letter or digit)."
            },
        ),
        ({"tier-1-threshold": "lots"}, {"tier-1-threshold": "Enter a whole number."}),
        ({"tier-1-threshold": "-5"}, {"tier-0-threshold": "At least 0."}),
        (
            {"tier-0-threshold": "100"},
            {"tier-0-threshold": "The first tier is where members start: its threshold must be 0."},
        ),
        ({"tier-2-code": "silver"}, {"tier-2-code": "Another tier already has this code."}),
        (
            {"tier-2-threshold": "5000"},
            {
                "tier-2-threshold": "Two tiers have the same threshold: each tier needs a higher one than the tier below."
            },
        ),
        ({"tier-1-name_en": ""}, {"tier-1-name_en": "Fill this in."}),
        ({"tier-2-multiplier": "250"}, {"tier-2-multiplier": "At most 100."}),
        (
            {"tier-2-extra_expiry_months": "1.5"},
            {"tier-2-extra_expiry_months": "Enter a whole number."},
        ),
        ({"metric": "height"}, {"metric": "Choose one of the options."}),
        ({"rolling_months": "0"}, {"rolling_months": "At least 1."}),
    ],
)
def test_errors_are_inline_with_status_422(web, db, changes, errors):
    token = as_role(web, "marketer")
    before = stored(db)
    page = web.post("/admin/tiers/preview", data=bakery_form(web, token, **changes))
    assert page.status_code == 422
    assert field_errors(page.text) == errors
    assert stored(db) == before


def test_removing_every_tier_is_refused_above_the_form(web):
    token = as_role(web, "marketer")
    data = {k: v for k, v in bakery_form(web, token).items() if not k.startswith("tier-")}
    page = web.post("/admin/tiers/preview", data=data)
    # No row left: the editor gives an empty entry row back, and says what is missing.
    assert page.status_code == 422
    assert "Keep at least one tier." in html.unescape(page.text)


def test_errors_are_in_the_users_language(web, db, staff):
    from patron.admin import service as staff_users

    with db.unit_of_work() as s:
        staff_users.get_user(s, staff["marketer"]).language = "zh"
    token = as_role(web, "marketer")
    page = web.post(
        "/admin/tiers/preview", data=bakery_form(web, token, **{"tier-0-threshold": "9"})
    )
    assert field_errors(page.text) == {"tier-0-threshold": "第一个等级是起始等级,门槛必须为 0。"}
    assert "会员等级" in page.text


# --- spend thresholds are money -----------------------------------------------------------------


def test_spend_thresholds_are_typed_as_money_and_stored_in_minor_units():
    from patron.admin.views.tiers import Editor, blank_row, setup_data, threshold_text

    editor = Editor(
        {"metric": "spend", "window": "year"},
        [
            blank_row(code="regular", name_en="Regular", threshold="0"),
            blank_row(code="gold", name_en="Gold", threshold="5,000.50"),
        ],
    )
    data = setup_data(editor, "CNY")
    assert [t["threshold"] for t in data["tiers"]] == [0, 500050]
    assert threshold_text(500050, "spend", "CNY") == "5000.5"
    assert threshold_text(500050, "points", "CNY") == "500050"
    # A third decimal in yuan is not a whole fen: the text goes to the schema, which refuses it.
    editor.rows[1]["threshold"] = "1.234"
    assert setup_data(editor, "CNY")["tiers"][1]["threshold"] == "1.234"


# --- never a 500 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"tier-1-threshold": "1e400"},
        {"tier-1-threshold": "NaN"},
        {"tier-1-multiplier": "Infinity"},
        {"tier-999-code": "x"},
        {"tier-1-benefits": "x" * 300},
        {"metric": "spend", "tier-1-threshold": "12.5"},
        {"window": "rolling", "rolling_months": "9999999999999999999999"},
        {"op": "remove-99"},
        {"op": "remove-x"},
        {"program": "nowhere"},
    ],
)
def test_bad_input_never_gives_a_500(web, db, changes):
    token = as_role(web, "marketer")
    before = stored(db)
    answer = web.post("/admin/tiers/preview", data=bakery_form(web, token, **changes))
    assert answer.status_code in (200, 404, 422), answer.text
    assert stored(db) == before


@pytest.mark.parametrize(
    "data",
    [
        {"candidate": "not json"},
        {"candidate": json.dumps({"policy": {}, "tiers": []})},
        {"candidate": "{}", "program": ""},
        {"candidate": "{}", "program": "nowhere"},
    ],
)
def test_a_tampered_save_never_gives_a_500(web, db, data):
    token = as_role(web, "marketer")
    before = stored(db)
    answer = web.post(
        "/admin/tiers/save", data={"csrf_token": token, "program": "bakery", "base": "x", **data}
    )
    assert answer.status_code in (404, 409, 422), answer.text
    assert stored(db) == before


# --- a tier's own expiry policy (issue 16 item 5) ---------------------------------------------


def test_a_tier_gets_its_own_expiry_policy(web, db):
    token = as_role(web, "marketer")
    form = bakery_form(
        web,
        token,
        **{"tier-2-expiry_kind": "days", "tier-2-expiry_days": "400", "tier-2-expiry_months": "9"},
    )
    preview = web.post("/admin/tiers/preview", data=form)
    assert preview.status_code == 200, field_errors(preview.text)
    answer = web.post(
        "/admin/tiers/save",
        data=hidden_fields(preview.text, "/admin/tiers/save"),
        follow_redirects=False,
    )
    assert answer.status_code == 303
    after = stored(db)
    assert [t["expiry"] for t in after["tiers"]] == [
        None,
        None,
        {"kind": "days", "months": 0, "days": 400},
    ]
    assert after["tiers"][2]["extra_expiry_months"] == 6  # still on top
    page = web.get(answer.headers["location"])
    assert 'name="tier-2-expiry_days" type="text" value="400"' in page.text
    assert '<option value="days" selected>N days after earning</option>' in page.text
    as_role(web, "viewer")
    table = web.get("/admin/tiers").text
    assert "400 days" in table and "As the program" in table


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tier-1-expiry_kind": "days"}, "tier-1-expiry_kind"),
        ({"tier-1-expiry_kind": "days", "tier-1-expiry_days": "0"}, "tier-1-expiry_days"),
        ({"tier-1-expiry_kind": "months", "tier-1-expiry_months": "x"}, "tier-1-expiry_months"),
        ({"tier-1-expiry_kind": "weekly"}, "tier-1-expiry_kind"),
    ],
)
def test_a_bad_tier_expiry_is_refused_at_its_field(web, db, changes, field):
    token = as_role(web, "marketer")
    before = stored(db)
    page = web.post("/admin/tiers/preview", data=bakery_form(web, token, **changes))
    assert page.status_code == 422
    assert list(field_errors(page.text)) == [field]
    assert stored(db) == before
