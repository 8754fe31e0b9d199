"""The survey pages in the admin UI (list, editor, results with charts, search and downloads;
who may do what) and `patron surveys list|results|export`. Engine-independent: SQLite only
(the services on both engines are in test_flow.py and test_refusals.py)."""

from __future__ import annotations

import io
import json

import pytest
from typer.testing import CliRunner

from patron.admin import i18n
from patron.cli import app as cli_app
from tests.admin.helpers import STAFF, sign_in
from tests.surveys.conftest import SURVEY, P, dispatch, invitation_tokens, sale

pytestmark = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


@pytest.fixture
def answered(db, client, pos, survey, kim) -> None:
    assert client.post(f"{P}/purchases", json=sale("S-1"), headers=pos).status_code == 201
    dispatch(db)
    [token] = invitation_tokens(db)
    data = {"overall": "2", "again": "yes", "comment": "빵이 조금 짰어요 (too SALTY)"}
    assert client.post(f"/s/{token}", data=data).status_code == 200


def test_pages_list_edit_and_results(client, staff, answered):
    csrf = sign_in(client, STAFF["marketer"][0])
    home = client.get("/admin/")
    assert 'href="/admin/surveys"' in home.text  # the nav item
    listed = client.get("/admin/surveys", params={"program": "bakery"})
    assert listed.status_code == 200 and 'id="survey-after-visit"' in listed.text

    editor = client.get("/admin/surveys/after-visit/edit", params={"program": "bakery"})
    assert editor.status_code == 200 and "오늘 방문은 어떠셨나요?" in editor.text
    bad = client.post(
        "/admin/surveys/save", data={"csrf_token": csrf, "program": "bakery", "document": "{"}
    )
    assert bad.status_code == 422 and 'id="error"' in bad.text
    no_fallback = json.dumps({**SURVEY, "code": "quick", "title": {"en": "Quick"}})
    refused = client.post(
        "/admin/surveys/save",
        data={"csrf_token": csrf, "program": "bakery", "document": no_fallback},
    )
    assert refused.status_code == 422 and "fallback" in refused.text
    doc = json.dumps({**SURVEY, "code": "quick", "title": {"ko": "짧은 설문"}})
    saved = client.post(
        "/admin/surveys/save", data={"csrf_token": csrf, "program": "bakery", "document": doc}
    )
    assert saved.status_code == 200 and i18n.translate("surveys.saved", "en") in saved.text
    assert 'id="survey-quick"' in saved.text

    page = client.get("/admin/surveys/after-visit/results", params={"program": "bakery"})
    assert page.status_code == 200, page.text
    assert page.text.count('data-testid="survey-chart"') == 3  # the rating and two choices
    assert "<svg" in page.text and "too SALTY" in page.text
    assert 'id="average">2.00<' in page.text
    found = client.get(
        "/admin/surveys/after-visit/results", params={"program": "bakery", "q": "salty"}
    )
    assert "too SALTY" in found.text
    none = client.get(
        "/admin/surveys/after-visit/results", params={"program": "bakery", "q": "sweet"}
    )
    assert "too SALTY" not in none.text
    xlsx = client.get(
        "/admin/surveys/after-visit/export", params={"program": "bakery", "format": "xlsx"}
    )
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(xlsx.content))
    assert book.sheetnames == ["Summary", "By store", "Free text"]


def test_viewers_read_results_but_cannot_edit(client, staff, answered):
    csrf = sign_in(client, STAFF["viewer"][0])
    assert (
        client.get("/admin/surveys/after-visit/results", params={"program": "bakery"}).status_code
        == 200
    )
    doc = json.dumps({**SURVEY, "code": "quick"})
    assert (
        client.post(
            "/admin/surveys/save", data={"csrf_token": csrf, "program": "bakery", "document": doc}
        ).status_code
        == 403
    )
    assert client.get("/admin/surveys/new", params={"program": "bakery"}).status_code == 403


def test_cli_lists_shows_results_and_exports(db, answered, tmp_path):
    runner = CliRunner()
    url = ["--database-url", db.url]
    listed = runner.invoke(cli_app, ["surveys", "list", "--program", "bakery", "--json", *url])
    assert listed.exit_code == 0, listed.output
    assert [s["code"] for s in json.loads(listed.output)] == ["after-visit"]
    shown = runner.invoke(
        cli_app, ["surveys", "results", "after-visit", "--program", "bakery", "--json", *url]
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["average_rating"] == 2.0
    out = tmp_path / "after-visit.csv"
    done = runner.invoke(
        cli_app,
        ["surveys", "export", "after-visit", "--program", "bakery", "--out", str(out), *url],
    )
    assert done.exit_code == 0, done.output
    assert "too SALTY" in out.read_bytes().decode("utf-8-sig")
    bad = runner.invoke(cli_app, ["surveys", "results", "nope", "--program", "bakery", *url])
    assert bad.exit_code == 2 and "survey_not_found" in bad.output
    wrong = runner.invoke(
        cli_app,
        [
            "surveys",
            "export",
            "after-visit",
            "--program",
            "bakery",
            "--out",
            str(tmp_path / "x.pdf"),
            *url,
        ],
    )
    assert wrong.exit_code == 2
