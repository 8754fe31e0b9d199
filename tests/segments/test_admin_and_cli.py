"""The segments section of the admin UI (builder with a live count, save, snapshot, who may do
what) and `patron segments list|show|count|snapshot`."""

from __future__ import annotations

import json

import pytest
from tests.admin.helpers import STAFF, sign_in
from typer.testing import CliRunner

from patron.cli import app as cli_app
from patron.segments import builder


def _form(csrf: str, **extra: str) -> dict[str, str]:
    return {
        "csrf_token": csrf,
        "program": "bakery",
        "code": "gold-dormant",
        "name": "Gold, dormant",
        "combinator": "all",
        "r0_type": "tier",
        "r0_list": "gold",
        "r1_type": "dormant",
        "r1_days": "60",
        **extra,
    }


def test_a_marketer_builds_counts_saves_and_snapshots(client, staff, world):
    csrf = sign_in(client, STAFF["marketer"][0])
    home = client.get("/admin/segments", params={"program": "bakery"})
    assert home.status_code == 200 and "/admin/segments/new" in home.text
    assert client.get("/admin/segments/new", params={"program": "bakery"}).status_code == 200
    preview = client.post("/admin/segments/preview", data=_form(csrf))
    assert preview.status_code == 200
    assert 'id="segment-count">1<' in preview.text and "Ada" in preview.text
    bad = client.post("/admin/segments/preview", data=_form(csrf, r1_days="0"))
    assert "alert-error" in bad.text and "days" in bad.text
    saved = client.post("/admin/segments/save", data=_form(csrf), follow_redirects=False)
    assert saved.status_code == 303, saved.text
    again = client.post("/admin/segments/save", data=_form(csrf))
    assert again.status_code == 409
    edit = client.get("/admin/segments/gold-dormant/edit", params={"program": "bakery"})
    assert edit.status_code == 200 and 'value="gold"' in edit.text
    snap = client.post(
        "/admin/segments/gold-dormant/snapshot", data={"csrf_token": csrf, "program": "bakery"}
    )
    assert snap.status_code == 200 and "#1 · 1" in snap.text


@pytest.mark.sqlite_only
def test_a_viewer_sees_but_cannot_change(client, staff, world):
    csrf = sign_in(client, STAFF["viewer"][0])
    page = client.get("/admin/segments", params={"program": "bakery"})
    assert page.status_code == 200 and "/admin/segments/new" not in page.text
    assert client.post("/admin/segments/save", data=_form(csrf)).status_code == 403
    denied = client.post(
        "/admin/segments/x/snapshot", data={"csrf_token": csrf, "program": "bakery"}
    )
    assert denied.status_code == 403
    csrf = sign_in(client, STAFF["support"][0])
    assert client.get("/admin/segments").status_code == 403


@pytest.mark.sqlite_only
def test_the_cli_lists_shows_counts_and_snapshots(db, client, admin, world, frozen):
    seg = {
        "code": "gold",
        "name": "Gold",
        "definition": {"condition": {"type": "tier", "tiers": ["gold"]}},
    }
    assert (
        client.post("/api/v1/programs/bakery/segments", json=seg, headers=admin).status_code == 201
    )
    runner = CliRunner()
    url = ["--database-url", db.url]
    listed = runner.invoke(cli_app, ["segments", "list", "--program", "bakery", *url])
    assert listed.exit_code == 0 and "gold" in listed.output, listed.output
    shown = runner.invoke(cli_app, ["segments", "show", "gold", "--program", "bakery", *url])
    assert json.loads(shown.output)["definition"]["condition"]["tiers"] == ["gold"]
    counted = runner.invoke(
        cli_app, ["segments", "count", "gold", "--program", "bakery", "--sample", "5", *url]
    )
    assert counted.exit_code == 0 and "gold: 2 members" in counted.output, counted.output
    snap = runner.invoke(cli_app, ["segments", "snapshot", "gold", "--program", "bakery", *url])
    assert snap.exit_code == 0 and "2 members" in snap.output, snap.output
    missing = runner.invoke(cli_app, ["segments", "count", "nope", "--program", "bakery", *url])
    assert missing.exit_code == 2 and "segment_not_found" in missing.output


def test_the_builder_form_round_trips():
    doc = {"condition": {"type": "any", "of": [
        {"type": "tier", "tiers": ["gold", "silver"]},
        {"type": "not", "condition": {"type": "dormant", "days": 60, "include_never": True}},
        {"type": "consent", "purpose": "marketing_sms", "granted": False},
        {"type": "redeemed", "reward": "americano", "days": 30, "has": False},
        {"type": "activity", "metric": "visits", "days": 30, "min": 2, "max": 9},
    ]}}  # fmt: skip
    shown = builder.form_of(doc)
    assert shown is not None
    combinator, rows = shown
    form = {"combinator": combinator}
    for i, row in enumerate(rows):
        form.update({f"r{i}_{k}": v for k, v in row.items()})
    back = builder.definition_of(form)
    assert back["condition"]["type"] == "any"
    assert back["condition"]["of"][0] == {"type": "tier", "tiers": ["gold", "silver"]}
    assert back["condition"]["of"][1]["condition"]["include_never"] is True
    assert back["condition"]["of"][2]["granted"] is False
    assert back["condition"]["of"][3] == {"type": "redeemed", "reward": "americano", "days": 30,
                                          "has": False}  # fmt: skip
    assert builder.definition_of({"json": "{bad"}).keys() == {"__json_error__"}
