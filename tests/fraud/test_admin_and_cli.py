"""The review queue in the admin UI (renders, confirms, reverses, refuses a second decision,
validates the controls form, who may do what) and the `patron fraud` CLI. Engine-independent:
SQLite only (the decisions on both engines are in test_controls.py)."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from patron.admin import i18n
from patron.cli import app as cli_app
from tests.admin.helpers import STAFF, sign_in
from tests.api.helpers import enroll

P = "/api/v1/programs/bakery"


@pytest.fixture(autouse=True)
def _sqlite_only(db) -> None:
    if db.url.startswith("postgresql"):
        pytest.skip("the pages and the CLI do not depend on the engine")


@pytest.fixture
def held(client, admin, pos, bakery, frozen) -> list[str]:
    """Two sales of Kim held for review (points above 100)."""
    enroll(client, pos, name="Kim", phone="010-1234-5678", cards=[{"number": "CARD-1"}])
    doc = {"hold_points_above": 100, "member": {"sales_per_day": 50}}
    assert client.put(f"{P}/fraud/settings", json=doc, headers=admin).status_code == 200
    for order in ("K-1", "K-2"):
        body = {"external_id": order, "member": {"card": "CARD-1"}, "amount": 50000}
        response = client.post(f"{P}/purchases", json=body, headers=pos)
        assert response.json()["review"]["code"] == "points_above_threshold"
    return [i["id"] for i in client.get(f"{P}/fraud/reviews", headers=admin).json()["items"]]


def test_the_queue_page_renders_and_staff_confirm_or_reverse(client, admin, staff, held):
    csrf = sign_in(client, STAFF["support"][0])
    page = client.get("/admin/fraud", params={"program": "bakery"})
    assert page.status_code == 200, page.text
    assert "K-1" in page.text and "K-2" in page.text
    assert i18n.translate("fraud.code.points_above_threshold", "en") in page.text
    assert 'href="/admin/fraud"' in client.get("/admin/").text  # the nav link
    second, first = held
    short = client.post(
        f"/admin/fraud/reviews/{first}/confirm",
        data={"csrf_token": csrf, "program": "bakery", "reason": "x"},
        follow_redirects=False,
    )
    assert short.status_code == 303 and "done=reason" in short.headers["location"]
    ok = client.post(
        f"/admin/fraud/reviews/{first}/confirm",
        data={"csrf_token": csrf, "program": "bakery", "reason": "regular customer"},
    )
    assert ok.status_code == 200 and i18n.translate("fraud.done.confirmed", "en") in ok.text
    again = client.post(
        f"/admin/fraud/reviews/{first}/reverse",
        data={"csrf_token": csrf, "program": "bakery", "reason": "too late"},
    )
    assert i18n.translate("fraud.done.decided", "en") in again.text
    gone = client.post(
        f"/admin/fraud/reviews/{second}/reverse",
        data={"csrf_token": csrf, "program": "bakery", "reason": "test card"},
    )
    assert i18n.translate("fraud.done.reversed", "en") in gone.text
    items = client.get(f"{P}/fraud/reviews", params={"status": "all"}, headers=admin).json()
    assert {i["id"]: i["status"] for i in items["items"]} == {
        first: "confirmed",
        second: "reversed",
    }
    account = client.get(f"{P}/members/{items['items'][0]['member_id']}/account", headers=admin)
    assert account.json()["totals"]["balance"] == 500
    assert client.get("/api/v1/check", headers=admin).json()["ok"] is True


def test_the_controls_form_saves_and_refuses_bad_values(client, admin, staff, held):
    csrf = sign_in(client, STAFF["owner"][0])
    form = {"csrf_token": csrf, "program": "bakery", "member.sales_per_day": "0"}
    bad = client.post("/admin/fraud/settings", data=form)
    assert bad.status_code == 422
    assert client.get(f"{P}/fraud/settings", headers=admin).json()["member"]["sales_per_day"] == 50
    form = {
        "csrf_token": csrf,
        "program": "bakery",
        "store.sales_per_minute": "30",
        "duplicate_window_minutes": "5",
        "verified_contact_for_redemption": "1",
    }
    saved = client.post("/admin/fraud/settings", data=form)
    assert saved.status_code == 200 and i18n.translate("fraud.done.saved", "en") in saved.text
    got = client.get(f"{P}/fraud/settings", headers=admin).json()
    assert got["store"]["sales_per_minute"] == 30 and got["member"]["sales_per_day"] is None
    assert got["duplicate_window_minutes"] == 5 and got["verified_contact_for_redemption"]
    assert got["hold_points_above"] is None and got["updated_by"].startswith("user:")


def test_who_may_do_what(client, staff, held):
    csrf = sign_in(client, STAFF["viewer"][0])
    page = client.get("/admin/fraud", params={"program": "bakery"})
    assert page.status_code == 200 and "fraud/reviews" not in page.text  # no decision forms
    data = {"csrf_token": csrf, "program": "bakery", "reason": "looks fine"}
    assert client.post(f"/admin/fraud/reviews/{held[0]}/confirm", data=data).status_code == 403
    assert client.post("/admin/fraud/settings", data=data).status_code == 403


def test_the_cli_shows_sets_lists_and_decides(db, client, admin, held):
    runner = CliRunner()
    url = ["--database-url", db.url]
    shown = runner.invoke(cli_app, ["fraud", "show", "--program", "bakery", "--json", *url])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["hold_points_above"] == 100
    set_ = runner.invoke(
        cli_app,
        ["fraud", "set", "--program", "bakery", "--limit", "key.sales_per_minute=60",
         "--limit", "member.sales_per_day=off", "--hold-points-above", "off", *url],
    )  # fmt: skip
    assert set_.exit_code == 0, set_.output
    got = client.get(f"{P}/fraud/settings", headers=admin).json()
    assert got["key"]["sales_per_minute"] == 60 and got["hold_points_above"] is None
    assert got["member"]["sales_per_day"] is None
    bad = runner.invoke(
        cli_app, ["fraud", "set", "--program", "bakery", "--limit", "key.sales_per_minute=0", *url]
    )
    assert bad.exit_code == 2 and "invalid_fraud_settings" in bad.output
    listed = runner.invoke(cli_app, ["fraud", "queue", "--program", "bakery", *url])
    assert listed.exit_code == 0 and "K-1" in listed.output
    decided = runner.invoke(
        cli_app,
        ["fraud", "decide", "--program", "bakery", str(held[0]), "confirm", "--reason", "ok", *url],
    )
    assert decided.exit_code == 2 and "invalid_reason" in decided.output
    decided = runner.invoke(
        cli_app,
        ["fraud", "decide", "--program", "bakery", str(held[0]), "confirm", "--reason", "fine",
         *url],
    )  # fmt: skip
    assert decided.exit_code == 0, decided.output
    assert re.search(r"confirmed \(released 500", decided.output)


def test_the_demo_turns_on_modest_controls_and_leaves_one_sale_in_the_queue(db, frozen):
    from patron import demo
    from patron.check import run_check
    from patron.fraud import settings
    from patron.programs.service import get_program
    from patron.review import queue

    demo.load(db, now=frozen, members_count=6, days=20)
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, "bakery")
        rows, _more = queue.list_reviews(session, program)
        assert [(r.external_id, r.code) for r in rows] == [
            ("MAPO-REVIEW-0001", "points_above_threshold")
        ]
        assert settings.get(session, program).hold_points_above == 5000
        assert run_check(session).ok
