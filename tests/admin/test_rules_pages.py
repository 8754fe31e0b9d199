"""The rule-set editor over HTTP: roles, CSRF, inline errors, preview-then-publish, versions."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron import clock
from patron.audit.models import AuditRecord
from patron.audit.service import SYSTEM
from patron.programs.service import get_program
from patron.rules import publishing
from patron.rules import service as rules
from patron.rules import simulate as what_if
from patron.rules.models import RuleSetVersion
from tests.admin.helpers import STAFF, sign_in
from tests.conftest import T0

FIELD_ERROR = re.compile(r'<p class="field-error" id="f-([^"]+)-error">([^<]*)</p>')
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
SEEDED_VERSION = 2  # version 1 comes with the program, 2 is the bakery's rules (helpers.py)


def field_errors(page: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in FIELD_ERROR.findall(page)}


def hidden_fields(page: str, form_action: str) -> dict[str, str]:
    """The hidden inputs of the first form posting to `form_action`."""
    start = page.index(f'action="{form_action}')
    end = page.index("</form>", start)
    return {k: html.unescape(v) for k, v in HIDDEN.findall(page[start:end])}


@pytest.fixture
def web(app, staff, seeded):
    with TestClient(app) as test_client:
        yield test_client


def as_role(client: TestClient, role: str) -> str:
    return sign_in(client, STAFF[role][0])


def versions(db) -> list[int]:
    with db.unit_of_work(readonly=True) as s:
        return list(s.scalars(select(RuleSetVersion.version).order_by(RuleSetVersion.version)))


def audit_count(db) -> int:
    with db.unit_of_work(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(AuditRecord)) or 0)


def edit_base(token: str, **changes: str) -> dict[str, str]:
    """The base-rate form as the bakery has it, with `changes`."""
    data = {
        "csrf_token": token,
        "program": "bakery",
        "base_version": str(SEEDED_VERSION),
        "action": "edit",
        "kind": "base_rate",
        "rule_id": "base",
        "id": "base",
        "name": "10 points per 1,000 KRW",
        "enabled": "1",
        "mode": "per_full_unit",
        "points": "10",
        "per_amount": "1000",
        "rounding": "down",
    }
    data.update(changes)
    return data


def add_multiplier(token: str, **changes: str) -> dict[str, str]:
    data = {
        "csrf_token": token,
        "program": "bakery",
        "base_version": str(SEEDED_VERSION),
        "action": "add",
        "kind": "product_multiplier",
        "id": "cake-double",
        "name": "Double points on cakes",
        "enabled": "1",
        "match.categories": "cake",
        "factor": "2",
    }
    data.update(changes)
    return data


# --- who may do what --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "marketer"])
def test_owners_and_marketers_see_the_rules_with_their_buttons(web, role):
    as_role(web, role)
    page = web.get("/admin/rules")
    assert page.status_code == 200
    assert f"Version {SEEDED_VERSION}, published" in page.text
    assert "10 points per full ₩1,000" in page.text
    assert "+200 points per unit of product seasonal-cake" in page.text
    assert 'name="action" value="toggle"' in page.text
    assert "/admin/rules/items/base/edit" in page.text
    assert "Add rule" in page.text


def test_a_viewer_reads_the_rules_without_any_button_and_cannot_post(web, db):
    token = as_role(web, "viewer")
    page = web.get("/admin/rules")
    assert page.status_code == 200
    assert "10 points per full ₩1,000" in page.text
    assert 'value="toggle"' not in page.text
    assert "/edit" not in page.text
    assert "Add rule" not in page.text
    assert web.get("/admin/rules/versions").status_code == 200
    assert web.get("/admin/rules/diff").status_code == 200
    for path in ("/admin/rules/new", "/admin/rules/items/base/edit", "/admin/rules/json"):
        assert web.get(path).status_code == 403, path
    before = audit_count(db)
    assert web.post("/admin/rules/preview", data=edit_base(token, points="20")).status_code == 403
    publish = {
        "csrf_token": token,
        "program": "bakery",
        "base_version": str(SEEDED_VERSION),
        "candidate": "{}",
    }
    assert web.post("/admin/rules/publish", data=publish).status_code == 403
    assert versions(db) == [1, SEEDED_VERSION]
    assert audit_count(db) == before


@pytest.mark.parametrize(
    "path",
    ["/admin/rules", "/admin/rules/versions", "/admin/rules/diff", "/admin/rules/versions/1"],
)
def test_support_cannot_open_the_rule_editor(web, path):
    as_role(web, "support")
    page = web.get(path)
    assert page.status_code == 403
    assert "Not for your role" in page.text


def test_the_nav_shows_rules_to_marketers_only_among_support_and_marketers(web):
    as_role(web, "support")
    assert 'href="/admin/rules"' not in web.get("/admin/").text
    web.cookies.clear()
    as_role(web, "marketer")
    assert 'href="/admin/rules"' in web.get("/admin/").text


def test_a_post_without_the_csrf_token_is_refused_and_writes_nothing(web, db):
    token = as_role(web, "marketer")
    data = edit_base(token, points="20")
    preview = web.post("/admin/rules/preview", data=data)
    fields = hidden_fields(preview.text, "/admin/rules/publish")
    fields.pop("csrf_token")
    refused = web.post("/admin/rules/publish", data=fields)
    assert refused.status_code == 403
    assert versions(db) == [1, SEEDED_VERSION]


# --- preview and publish ----------------------------------------------------------------------


def test_the_preview_shows_the_what_if_and_writes_nothing(web, db):
    token = as_role(web, "marketer")
    before = audit_count(db)
    preview = web.post("/admin/rules/preview", data=edit_base(token, points="20"))
    assert preview.status_code == 200, preview.text
    assert "Check before publishing" in preview.text
    assert "Edit rule base" in preview.text
    # the diff: the base rate changes 10 → 20
    assert "10 points per full ₩1,000" in preview.text
    assert "20 points per full ₩1,000" in preview.text
    assert "Publish as version 3" in preview.text
    # the numbers are the service's what-if over the last 30 days (program timezone)
    with db.unit_of_work(readonly=True) as s:
        program = get_program(s, "bakery")
        doc = rules.document(s, program).model_dump(mode="json", exclude_none=True)
        doc["rules"][0]["points"] = 20
        today = T0.astimezone(program_tz := __import__("zoneinfo").ZoneInfo("Asia/Seoul")).date()
        report = what_if.simulate(
            s,
            program,
            rules.validate_doc(doc),
            date_from=today - timedelta(days=29),
            date_to=today,
        )
    assert program_tz
    assert report.purchases == 1 and report.current_points == 90
    assert report.proposed_points == 180
    assert '<dd data-testid="sim-current">90 points</dd>' in preview.text
    assert '<dd data-testid="sim-proposed">180 points</dd>' in preview.text
    assert "+90 points (+100.0%)" in preview.text
    assert "김민지" in preview.text
    assert versions(db) == [1, SEEDED_VERSION]
    assert audit_count(db) == before


def test_publishing_creates_exactly_one_version_by_the_signed_in_user(web, db, staff):
    token = as_role(web, "marketer")
    preview = web.post("/admin/rules/preview", data=edit_base(token, points="20"))
    fields = hidden_fields(preview.text, "/admin/rules/publish")
    assert fields["base_version"] == str(SEEDED_VERSION)
    assert json.loads(fields["candidate"])["rules"][0]["points"] == 20
    # Doubling the base rate moves total points by +100 %: publishing asks to confirm it.
    assert fields["large"] == "1" and 'data-testid="large-change"' in preview.text
    assert "changes total points by 100.0% (more than ±10%)" in preview.text
    unconfirmed = web.post("/admin/rules/publish", data=fields, follow_redirects=False)
    assert unconfirmed.status_code == 409 and "Tick the box to confirm" in unconfirmed.text
    assert versions(db) == [1, SEEDED_VERSION]
    answer = web.post(
        "/admin/rules/publish",
        data={**fields, "confirm_large": "1", "note": "Double base points for March"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/rules?program=bakery&done=published&version=3"
    assert versions(db) == [1, SEEDED_VERSION, 3]
    with db.unit_of_work(readonly=True) as s:
        program = get_program(s, "bakery")
        row = rules.get_version(s, program, 3)
        assert row.actor == f"user:{staff['marketer']}"
        assert row.note == "Double base points for March"
        assert program.earn_points == 20
        audit = s.scalars(
            select(AuditRecord)
            .where(AuditRecord.action == "rules.published")
            .order_by(AuditRecord.id.desc())
        ).first()
        assert audit is not None and audit.actor == f"user:{staff['marketer']}"
        assert audit.after["changed"] == ["base"]
    page = web.get(answer.headers["location"])
    assert "Version 3 is published" in page.text
    assert "20 points per full ₩1,000" in page.text
    assert "marketer@demo.patron" in page.text


def test_publishing_on_a_stale_version_is_refused_and_keeps_the_other_change(web, db):
    token = as_role(web, "marketer")
    preview = web.post("/admin/rules/preview", data=edit_base(token, points="20"))
    fields = hidden_fields(preview.text, "/admin/rules/publish")
    # Someone else publishes meanwhile.
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        doc = rules.document(s, program).model_dump(mode="json", exclude_none=True)
        doc["rules"][1]["points_per_unit"] = 300
        publishing.publish(s, program, rules.validate_doc(doc), actor=SYSTEM, now=clock.now())
    refused = web.post("/admin/rules/publish", data={**fields, "confirm_large": "1"})
    assert refused.status_code == 409
    assert "The rules changed while you were editing" in refused.text
    assert "You started from version 2, but system published version 3" in refused.text
    assert versions(db) == [1, SEEDED_VERSION, 3]
    with db.unit_of_work(readonly=True) as s:
        doc3 = rules.document(s, get_program(s, "bakery"))
        assert doc3.rules[0].points == 10 and doc3.rules[1].points_per_unit == 300
    # A preview started from the old version says so before anyone presses Publish.
    again = web.post("/admin/rules/preview", data=edit_base(token, points="30"))
    assert "Someone published version 3 after you started from version 2" in again.text


def test_cancel_goes_back_without_a_change(web, db):
    token = as_role(web, "marketer")
    preview = web.post("/admin/rules/preview", data=edit_base(token, points="20"))
    assert 'href="/admin/rules?program=bakery">Cancel</a>' in preview.text
    assert web.get("/admin/rules?program=bakery").status_code == 200
    assert versions(db) == [1, SEEDED_VERSION]


def test_adding_a_category_multiplier_then_publishing(web, db):
    token = as_role(web, "owner")
    preview = web.post("/admin/rules/preview", data=add_multiplier(token))
    assert preview.status_code == 200, field_errors(preview.text)
    assert "Add rule cake-double" in preview.text
    assert "×2 on category cake" in preview.text
    fields = hidden_fields(preview.text, "/admin/rules/publish")
    assert web.post("/admin/rules/publish", data=fields).status_code == 200
    with db.unit_of_work(readonly=True) as s:
        doc = rules.document(s, get_program(s, "bakery"))
        added = doc.rules[-1]
        assert (added.id, added.kind, added.match.categories) == (
            "cake-double",
            "product_multiplier",
            ["cake"],
        )
        assert str(added.factor) == "2"


def test_switching_off_and_deleting_go_through_the_preview(web, db):
    token = as_role(web, "marketer")
    common = {
        "csrf_token": token,
        "program": "bakery",
        "base_version": str(SEEDED_VERSION),
        "rule_id": "seasonal-cake",
    }
    off = web.post("/admin/rules/preview", data={**common, "action": "toggle"})
    assert off.status_code == 200
    assert "Switch off rule seasonal-cake" in off.text
    assert versions(db) == [1, SEEDED_VERSION]
    web.post("/admin/rules/publish", data=hidden_fields(off.text, "/admin/rules/publish"))
    with db.unit_of_work(readonly=True) as s:
        assert rules.document(s, get_program(s, "bakery")).rules[1].enabled is False
    listing = web.get("/admin/rules")
    assert 'data-rule="seasonal-cake" class="is-off"' in listing.text
    assert ">Switch on<" in listing.text

    gone = web.post(
        "/admin/rules/preview", data={**common, "base_version": "3", "action": "delete"}
    )
    assert "Delete rule seasonal-cake" in gone.text
    assert 'data-change="removed" data-rule="seasonal-cake"' in gone.text
    web.post("/admin/rules/publish", data=hidden_fields(gone.text, "/admin/rules/publish"))
    with db.unit_of_work(readonly=True) as s:
        assert [r.id for r in rules.document(s, get_program(s, "bakery")).rules] == ["base"]


def test_a_rule_set_unchanged_has_nothing_to_publish(web):
    token = as_role(web, "marketer")
    same = web.post("/admin/rules/preview", data=edit_base(token))
    assert same.status_code == 200
    assert "No differences." in same.text
    assert "there is nothing to publish" in same.text


def test_the_what_if_period_can_be_changed_and_is_checked(web, db):
    token = as_role(web, "marketer")
    preview = web.post("/admin/rules/preview", data=edit_base(token, points="20"))
    fields = hidden_fields(preview.text, "/admin/rules/preview")
    assert fields["action"] == "candidate"
    longer = web.post(
        "/admin/rules/preview", data={**fields, "sim_from": "2025-03-03", "sim_to": "2026-03-02"}
    )
    assert longer.status_code == 200
    assert "5 purchase(s) by 1 member(s)" in longer.text
    too_long = web.post(
        "/admin/rules/preview", data={**fields, "sim_from": "2025-01-01", "sim_to": "2026-03-02"}
    )
    assert too_long.status_code == 422
    assert field_errors(too_long.text)["sim_to"] == "Choose at most 366 days."
    backwards = web.post(
        "/admin/rules/preview", data={**fields, "sim_from": "2026-03-01", "sim_to": "2026-02-01"}
    )
    assert backwards.status_code == 422
    assert field_errors(backwards.text)["sim_to"] == "The start date is after the end date."
    garbage = web.post("/admin/rules/preview", data={**fields, "sim_from": "soon"})
    assert garbage.status_code == 422
    assert field_errors(garbage.text)["sim_from"] == "Enter a date as YYYY-MM-DD."
    assert versions(db) == [1, SEEDED_VERSION]


# --- inline errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"points": "ten"}, {"points": "Enter a whole number."}),
        ({"points": "-5"}, {"points": "At least 0."}),
        ({"per_amount": "0"}, {"per_amount": "More than 0."}),
        ({"per_amount": "lots"}, {"per_amount": "Enter a number, e.g. 1.5"}),
        (
            {"id": "Base Rate!"},
            {"id": "Use lower-case letters, digits, - and _ (starting with a letter or digit)."},
        ),
        (
            {"starts": "2026-05-01", "ends": "2026-04-01"},
            {"ends": "The last day is before the first day: the rule could never apply."},
        ),
        ({"starts": "someday"}, {"starts": "Enter a date as YYYY-MM-DD."}),
        ({"cond.min_amount": "-1"}, {"cond.min_amount": "At least 0."}),
    ],
)
def test_base_rate_errors_are_inline_with_status_422(web, db, changes, errors):
    token = as_role(web, "marketer")
    page = web.post("/admin/rules/preview", data=edit_base(token, **changes))
    assert page.status_code == 422
    assert field_errors(page.text) == errors
    # What was typed stays in the form.
    for key, value in changes.items():
        assert f'name="{key}" type=' in page.text
        assert f'value="{html.escape(value)}"' in page.text
    assert versions(db) == [1, SEEDED_VERSION]


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"factor": "1000"}, {"factor": "At most 100."}),
        ({"factor": "1.23456"}, {"factor": "Use at most 4 decimal places."}),
        ({"match.categories": ""}, {"match.skus": "Give at least one category or product."}),
        ({"id": "base"}, {"id": "Another rule already has this code."}),
    ],
)
def test_new_rule_errors_are_inline(web, changes, errors):
    token = as_role(web, "marketer")
    page = web.post("/admin/rules/preview", data=add_multiplier(token, **changes))
    assert page.status_code == 422
    assert field_errors(page.text) == errors


def test_time_weight_and_promotion_errors_land_on_their_fields(web):
    token = as_role(web, "marketer")
    base = {
        "csrf_token": token,
        "program": "bakery",
        "base_version": str(SEEDED_VERSION),
        "action": "add",
        "enabled": "1",
    }
    no_days = web.post(
        "/admin/rules/preview", data={**base, "kind": "time_weight", "factor": "0.5"}
    )
    assert no_days.status_code == 422
    assert field_errors(no_days.text) == {"days": "Choose at least one."}
    one_time = web.post(
        "/admin/rules/preview",
        data={**base, "kind": "time_weight", "factor": "0.5", "day.sat": "1", "from_time": "9:00"},
    )
    assert one_time.status_code == 422
    assert field_errors(one_time.text) == {"to_time": "Give both times, or neither."}
    bad_time = web.post(
        "/admin/rules/preview",
        data={
            **base,
            "kind": "time_weight",
            "factor": "0.5",
            "day.sat": "1",
            "from_time": "25:00",
            "to_time": "10:00",
        },
    )
    assert field_errors(bad_time.text) == {"from_time": "Enter a time as HH:MM."}
    promo = web.post(
        "/admin/rules/preview",
        data={**base, "kind": "promotion", "factor": "1", "bonus_points": "0"},
    )
    assert promo.status_code == 422
    assert field_errors(promo.text) == {"factor": "Give a factor other than 1 or bonus points."}


def test_a_weekend_weight_reads_in_words(web):
    token = as_role(web, "marketer")
    page = web.post(
        "/admin/rules/preview",
        data={
            "csrf_token": token,
            "program": "bakery",
            "base_version": str(SEEDED_VERSION),
            "action": "add",
            "kind": "time_weight",
            "enabled": "1",
            "id": "weekend",
            "day.sat": "1",
            "day.sun": "1",
            "factor": "0.5",
        },
    )
    assert page.status_code == 200, field_errors(page.text)
    assert "Weekend ×0.5" in page.text


def test_the_errors_are_in_the_users_language(web, db, staff):
    from patron.admin import service as staff_users

    with db.unit_of_work() as s:
        staff_users.get_user(s, staff["marketer"]).language = "ko"
    token = as_role(web, "marketer")
    page = web.post("/admin/rules/preview", data=edit_base(token, points="-5"))
    assert field_errors(page.text) == {"points": "0 이상이어야 합니다."}
    listing = web.get("/admin/rules")
    assert "적립 규칙" in listing.text
    assert "₩1,000당 10포인트" in listing.text


# --- the JSON editor and the settings ---------------------------------------------------------


def test_the_json_editor_lists_every_problem_with_its_path(web, db):
    token = as_role(web, "marketer")
    page = web.get("/admin/rules/json")
    assert page.status_code == 200
    assert (
        "&#34;per_amount&#34;: &#34;1000&#34;" in page.text or '"per_amount": "1000"' in page.text
    )
    doc = {
        "rules": [
            {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"},
            {"id": "x", "kind": "product_multiplier", "match": {"skus": ["a"]}, "factor": "500"},
            {"id": "y", "kind": "promotion", "factr": "2"},
        ]
    }
    data = {
        "csrf_token": token,
        "program": "bakery",
        "base_version": str(SEEDED_VERSION),
        "action": "json",
        "document": json.dumps(doc),
    }
    bad = web.post("/admin/rules/preview", data=data)
    assert bad.status_code == 422
    text = html.unescape(bad.text)
    assert "rules.1.factor: At most 100." in text
    assert "rules.2.factr: This field is not known for this kind of rule." in text
    broken = web.post("/admin/rules/preview", data={**data, "document": '{"rules": ['})
    assert broken.status_code == 422
    assert "Not valid JSON (line 1, column 12)." in broken.text
    assert versions(db) == [1, SEEDED_VERSION]


def test_an_unknown_store_from_the_json_editor_is_refused_at_publish(web, db):
    token = as_role(web, "marketer")
    doc = {
        "rules": [
            {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"},
            {
                "id": "gangnam",
                "kind": "order_bonus",
                "points": 100,
                "stores": ["gangnam"],
            },
        ]
    }
    preview = web.post(
        "/admin/rules/preview",
        data={
            "csrf_token": token,
            "program": "bakery",
            "base_version": str(SEEDED_VERSION),
            "action": "json",
            "document": json.dumps(doc),
        },
    )
    assert preview.status_code == 200
    refused = web.post(
        "/admin/rules/publish", data=hidden_fields(preview.text, "/admin/rules/publish")
    )
    assert refused.status_code == 422
    assert "rules.1.stores: program bakery has no store &#39;gangnam&#39;" in refused.text
    assert versions(db) == [1, SEEDED_VERSION]


def test_the_settings_form_changes_combine_rounding_and_redemption(web, db):
    token = as_role(web, "owner")
    assert web.get("/admin/rules/settings").status_code == 200
    preview = web.post(
        "/admin/rules/preview",
        data={
            "csrf_token": token,
            "program": "bakery",
            "base_version": str(SEEDED_VERSION),
            "action": "settings",
            "combine": "add",
            "rounding": "half_up",
            "red.categories": "gift",
            "red.store.mapo": "1",
        },
    )
    assert preview.status_code == 200
    assert "Change the rule set settings" in preview.text
    web.post("/admin/rules/publish", data=hidden_fields(preview.text, "/admin/rules/publish"))
    with db.unit_of_work(readonly=True) as s:
        doc = rules.document(s, get_program(s, "bakery"))
    assert (doc.combine, doc.rounding) == ("add", "half_up")
    assert doc.redemption.excluded is not None and doc.redemption.excluded.categories == ["gift"]
    assert doc.redemption.stores == ["mapo"]
    bad = web.post(
        "/admin/rules/preview",
        data={
            "csrf_token": token,
            "program": "bakery",
            "base_version": "3",
            "action": "settings",
            "combine": "divide",
            "rounding": "down",
        },
    )
    assert bad.status_code == 422
    assert field_errors(bad.text) == {"combine": "Choose one of the options."}


# --- versions and the difference between two ------------------------------------------------


def test_versions_list_and_the_diff_between_any_two(web, db):
    token = as_role(web, "marketer")
    preview = web.post("/admin/rules/preview", data=edit_base(token, points="20"))
    web.post(
        "/admin/rules/publish",
        data={
            **hidden_fields(preview.text, "/admin/rules/publish"),
            "confirm_large": "1",
            "note": "March",
        },
    )
    listing = web.get("/admin/rules/versions")
    assert listing.status_code == 200
    for n in (1, 2, 3):
        assert f'data-version="{n}"' in listing.text
    assert "marketer@demo.patron" in listing.text and "March" in listing.text
    one = web.get("/admin/rules/versions/2")
    assert one.status_code == 200 and "10 points per full ₩1,000" in one.text
    diff = web.get("/admin/rules/diff?program=bakery&from=2&to=3")
    assert diff.status_code == 200
    assert 'data-change="changed" data-rule="base"' in diff.text
    assert (
        'Points <code class="muted">points</code></td>'
        '<td class="diff-old">10</td><td class="diff-new">20</td>'
    ) in diff.text
    wide = web.get("/admin/rules/diff?program=bakery&from=1&to=3")
    assert 'data-change="added" data-rule="seasonal-cake"' in wide.text
    default = web.get("/admin/rules/diff")
    assert "Version 2 → version 3" in default.text
    assert web.get("/admin/rules/diff?from=9&to=3").status_code == 404
    assert web.get("/admin/rules/versions/99").status_code == 404


# --- never a 500 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"action": "rewrite"},
        {"action": "edit", "kind": "base_rate", "rule_id": "nope"},
        {"action": "edit", "kind": "cap", "rule_id": "base"},
        {"action": "add", "kind": "teleport"},
        {"action": "toggle", "rule_id": "ghost"},
        {"action": "candidate", "candidate": "not json"},
        {"action": "candidate", "candidate": '{"rules": [{"id": "x"}]}'},
        {"action": "candidate", "candidate": "[]"},
        {"action": "add", "kind": "base_rate", "base_version": "abc", "points": "1e999"},
        {"action": "add", "kind": "cap", "max_points": "9" * 40, "per": "forever"},
        {"action": "add", "kind": "tier_multiplier", "factor.gold": "x", "factor.silver": "-1"},
        {"action": "add", "kind": "event", "event": "Sign Up", "points": "0", "limit": "x"},
        {"action": "json", "document": "null"},
        {"action": "json", "document": '"text"'},
        {"action": "settings", "program": "nowhere"},
    ],
)
def test_bad_input_never_gives_a_500(web, db, data):
    token = as_role(web, "marketer")
    form = {"csrf_token": token, "program": "bakery", "base_version": "2", **data}
    answer = web.post("/admin/rules/preview", data=form)
    assert answer.status_code in (200, 404, 422), answer.text
    assert versions(db) == [1, SEEDED_VERSION]


@pytest.mark.parametrize(
    "data",
    [
        {"candidate": "not json"},
        {"candidate": '{"rules": "x"}'},
        {"base_version": "x", "candidate": "{}"},
        {"program": "nowhere", "candidate": "{}"},
        {"program": "", "candidate": "{}"},
    ],
)
def test_a_tampered_publish_never_gives_a_500(web, db, data):
    token = as_role(web, "marketer")
    form = {"csrf_token": token, "program": "bakery", "base_version": "2", **data}
    answer = web.post("/admin/rules/publish", data=form)
    assert answer.status_code in (404, 409, 422), answer.text
    assert versions(db) == [1, SEEDED_VERSION]


@pytest.mark.parametrize(
    "path",
    [
        "/admin/rules?program=nowhere",
        "/admin/rules/items/Not%20An%20Id/edit",
        "/admin/rules/items/ghost/edit",
        "/admin/rules/versions/0",
        "/admin/rules/versions/abc",
        "/admin/rules/new?kind=teleport",
        "/admin/rules/diff?from=abc&to=-1",
    ],
)
def test_bad_addresses_never_give_a_500(web, path):
    as_role(web, "marketer")
    assert web.get(path).status_code in (200, 404)


def test_the_preview_runs_the_rule_tests_and_shows_which_would_fail(web, db):
    from patron.earning import examples

    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        body = examples.ExampleIn.model_validate(
            {"sale": {"amount": 25800}, "expected_points": 250, "note": "a basic sale"}
        )
        examples.save(s, program, "basic-25800", body, actor=SYSTEM, now=T0)
    token = as_role(web, "marketer")
    preview = web.post("/admin/rules/preview", data=edit_base(token, points="20"))
    assert preview.status_code == 200, preview.text
    assert 'data-testid="rule-tests"' in preview.text
    assert "0 pass, 1 fail, 1 change with this version" in preview.text
    row = re.search(
        r'<tr data-example="basic-25800" data-passed="(\w+)">(.*?)</tr>', preview.text, re.S
    )
    assert row is not None and row.group(1) == "no"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(2), re.S)
    assert [c.strip() for c in cells[:4]] == ["basic-25800", "250", "250", "500"]

    unchanged = web.post("/admin/rules/preview", data=edit_base(token, points="10"))
    assert "1 pass, 0 fail, 0 change with this version" in unchanged.text


def test_a_new_day_and_time_weight_starts_with_no_day_and_needs_one(web, db):
    token = as_role(web, "marketer")
    form = web.get("/admin/rules/new", params={"kind": "time_weight"})
    assert form.status_code == 200, form.text
    days = re.findall(r'<input type="checkbox" name="day\.(\w+)" value="1"( checked)?', form.text)
    assert [d for d, _ in days] == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert not any(checked for _, checked in days)
    # Sent with no day ticked, the form comes back with the days' error; nothing is written.
    data = {
        "csrf_token": token,
        "program": "bakery",
        "base_version": str(SEEDED_VERSION),
        "action": "add",
        "kind": "time_weight",
        "id": "weekend",
        "enabled": "1",
        "factor": "0.5",
    }
    refused = web.post("/admin/rules/preview", data=data)
    assert refused.status_code == 422
    assert "days" in field_errors(refused.text)
    weekend = web.post("/admin/rules/preview", data={**data, "day.sat": "1", "day.sun": "1"})
    assert weekend.status_code == 200, field_errors(weekend.text)
    candidate = json.loads(hidden_fields(weekend.text, "/admin/rules/publish")["candidate"])
    assert candidate["rules"][-1]["days"] == ["sat", "sun"]
    assert versions(db) == [1, SEEDED_VERSION]
