"""The branding page over HTTP: who sees and who edits, the live preview's contrast warnings,
inline errors (422, nothing saved) and the audit row naming the user."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from patron.audit.models import AuditRecord
from patron.programs import branding
from patron.programs.models import Program
from tests.admin.helpers import STAFF, sign_in

URL = "/admin/program/bakery/branding"


@pytest.fixture
def web(app, staff, seeded):
    with TestClient(app) as test_client:
        yield test_client


def form(token: str, **changes: str) -> dict[str, str]:
    data = {
        "csrf_token": token,
        "name_ko": "동네 빵집",
        "name_zh": "街角面包店",
        "name_en": "Corner Bakery",
        "logo_url": "/admin/static/favicon.svg",
        "primary_color": "#1a56db",
        "accent_color": "#f59e0b",
        "card_background": "#1f2937",
        "card_text": "#ffffff",
    }
    data.update(changes)
    return data


def stored(db) -> branding.Branding:
    with db.unit_of_work(readonly=True) as s:
        program = s.scalars(select(Program).where(Program.code == "bakery")).one()
        return branding.get(s, program)


def test_a_viewer_sees_the_branding_read_only_and_cannot_save(web, db):
    token = sign_in(web, STAFF["viewer"][0])
    page = web.get(URL)
    assert page.status_code == 200
    assert "Member card preview" in page.text and 'data-testid="card-preview"' in page.text
    assert '<fieldset class="plain" disabled>' in page.text
    assert "Save branding" not in page.text
    assert web.post(URL, data=form(token), follow_redirects=False).status_code == 403
    assert stored(db) == branding.Branding()


def test_support_may_not_even_see_it(web):
    sign_in(web, STAFF["support"][0])
    assert web.get(URL).status_code == 403


def test_the_tab_is_on_the_program_pages(web):
    sign_in(web, STAFF["marketer"][0])
    assert f'href="{URL}"' in web.get("/admin/program").text


def test_a_marketer_saves_and_the_change_is_audited(web, db, staff):
    token = sign_in(web, STAFF["marketer"][0])
    response = web.post(URL, data=form(token), follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].endswith(f"{URL}?done=saved")
    b = stored(db)
    assert b.display_name.ko == "동네 빵집" and b.logo_url == "/admin/static/favicon.svg"
    page = web.get(response.headers["location"])
    assert "Branding saved." in page.text
    assert 'value="동네 빵집"' in page.text
    with db.unit_of_work(readonly=True) as s:
        row = s.scalars(
            select(AuditRecord).where(AuditRecord.action == "program.branding.updated")
        ).one()
        s.expunge(row)
    assert row.actor == f"user:{staff['marketer']}"
    assert row.after is not None and row.after["display_name.ko"] == "동네 빵집"
    assert "program.branding.updated" in page.text  # the page's own change list

    again = web.post(URL, data=form(token), follow_redirects=False)
    assert again.headers["location"].endswith("done=unchanged")


def test_a_low_contrast_card_saves_with_a_clear_warning_and_its_ratio(web, db):
    token = sign_in(web, STAFF["marketer"][0])
    low = form(token, card_background="#777777", card_text="#ffffff")
    response = web.post(URL, data=low, follow_redirects=True)
    assert response.status_code == 200
    assert stored(db).card_background == "#777777"
    assert 'data-testid="contrast-warning"' in response.text
    assert "Card text on the card background: 4.48:1, below the 4.5:1" in response.text
    assert "White text on the primary colour" not in response.text


def test_the_preview_fragment_warns_while_typing_and_clears_when_fixed(web, db):
    token = sign_in(web, STAFF["marketer"][0])
    preview = f"{URL}/preview"
    headers = {"HX-Request": "true"}
    low = web.post(preview, data=form(token, primary_color="#ffcc00"), headers=headers)
    assert low.status_code == 200
    assert "<html" not in low.text
    assert 'data-pair="white_on_primary"' in low.text and "1.51:1" in low.text
    assert 'fill="#ffcc00"' in low.text
    fixed = web.post(preview, data=form(token, primary_color="#004488"), headers=headers)
    assert 'data-testid="contrast-ok"' in fixed.text and "contrast-warning" not in fixed.text
    # A half-typed colour draws the default, never an error.
    typing = web.post(preview, data=form(token, card_text="#ff"), headers=headers)
    assert typing.status_code == 200 and 'fill="#ffffff"' in typing.text
    # The preview saves nothing.
    assert stored(db) == branding.Branding()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("card_text", "white", "Enter a colour as #RRGGBB"),
        ("primary_color", "#12345", "Enter a colour as #RRGGBB"),
        ("logo_url", "http://insecure.example/logo.png", "Enter an https:// address"),
        ("name_en", "x" * 81, "Use at most 80 characters."),
    ],
)
def test_a_wrong_value_comes_back_at_its_field_and_nothing_is_saved(web, db, field, value, message):
    token = sign_in(web, STAFF["marketer"][0])
    response = web.post(URL, data=form(token, **{field: value}), follow_redirects=False)
    assert response.status_code == 422
    errors = dict(
        re.findall(r'<p class="field-error" id="f-([^"]+)-error">([^<]*)</p>', response.text)
    )
    assert list(errors) == [field] and errors[field].startswith(message)
    assert "Nothing was saved" in response.text
    assert stored(db) == branding.Branding()


def test_without_the_csrf_token_nothing_is_saved(web, db):
    sign_in(web, STAFF["marketer"][0])
    response = web.post(URL, data=form("wrong"), follow_redirects=False)
    assert response.status_code == 403
    assert stored(db) == branding.Branding()


@pytest.mark.parametrize("lang", ["ko", "zh"])
def test_the_page_is_translated(web, db, staff, lang):
    from patron.admin.models import StaffUser

    with db.unit_of_work() as s:
        s.get(StaffUser, staff["owner"]).language = lang
    sign_in(web, STAFF["owner"][0])
    page = web.get(URL).text
    title = {"ko": "회원 카드 미리보기", "zh": "会员卡预览"}[lang]
    assert title in page and "Member card preview" not in page
