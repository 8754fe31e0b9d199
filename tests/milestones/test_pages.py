"""The member page (badges, progress bars, open survey invitations and their "answer" button,
survey.answered in the outbox), the admin pages (/admin/milestones: list with achievers, editor,
evaluate now; who may do what) and `patron milestones list|run`. Engine-independent: SQLite only
(the evaluation on both engines is in test_goals.py)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from patron import clock
from patron.cli import app as cli_app
from patron.events.models import DomainEvent
from patron.portal import service as portal_service
from tests.admin.helpers import STAFF, sign_in
from tests.milestones.conftest import P, buy, goal, run, seoul
from tests.surveys.conftest import SURVEY

pytestmark = pytest.mark.parametrize("db", ["sqlite"], indirect=True)
BASE = "/m/bakery"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _member_sign_in(client, monkeypatch, contact: str) -> None:
    sent: list[portal_service.CodeMessage] = []
    monkeypatch.setattr("patron.portal.views.send_code", sent.append)
    page = client.get(f"{BASE}/sign-in")
    r = client.post(f"{BASE}/sign-in", data={"contact": contact, "csrf_token": _csrf(page.text)})
    code = re.search(r"\b(\d{6})\b", sent[-1].body)
    assert code, sent[-1].body
    r = client.post(f"{BASE}/sign-in/code", follow_redirects=False,
                    data={"contact": contact, "code": code.group(1), "csrf_token": _csrf(r.text)})  # fmt: skip
    assert r.status_code == 303, r.text


def _invite(client, admin, member_id: int) -> tuple[int, str]:
    made = client.post(f"{P}/surveys/after-visit/invitations", json={"member": {"id": member_id}},
                       headers=admin)  # fmt: skip
    assert made.status_code == 201, made.text
    return made.json()["id"], made.json()["token"]


def test_member_page_badges_progress_and_survey_invitations(
    db, client, admin, pos, kim, lee, monkeypatch
):
    clock.freeze(seoul(2026, 3, 10, 12, 0))
    goal(client, admin, code="first-visit", kind="visits", target=1,
         names={"ko": "첫 방문", "zh": "首次光临", "en": "First visit"})  # fmt: skip
    goal(client, admin, code="ten-visits", kind="visits", target=10, window="month", repeat=True,
         names={"ko": "단골손님", "zh": "常客", "en": "Regular"}, points=500,
         descriptions={"ko": "한 달에 10번 방문", "en": "10 visits in a month"})  # fmt: skip
    buy(client, pos, "010-1234-5678", "K1", seoul(2026, 3, 9, 12, 0))
    buy(client, pos, "010-1234-5678", "K2", seoul(2026, 3, 9, 18, 0))
    run(client, admin)
    assert client.post(f"{P}/surveys", json=SURVEY, headers=admin).status_code == 201
    kim_invitation, old_token = _invite(client, admin, kim["id"])
    lee_invitation, _ = _invite(client, admin, lee["id"])

    _member_sign_in(client, monkeypatch, "minji@example.com")
    home = client.get(f"{BASE}/")
    assert home.status_code == 200
    text = home.text
    assert 'id="badge-first-visit"' in text and "첫 방문" in text  # Kim reads Korean
    assert 'id="goal-ten-visits"' in text and "단골손님" in text and "한 달에 10번 방문" in text
    assert '<progress max="10" value="2"' in text and "이번 달" in text
    assert 'id="goal-first-visit"' not in text  # achieved: a badge, not a bar
    assert "오늘 방문은 어떠셨나요?" in text and f'id="answer-{kim_invitation}"' in text
    assert f'id="answer-{lee_invitation}"' not in text  # only her own invitations

    csrf = _csrf(text)
    # Another member's invitation: not found, as any unknown id.
    other = client.post(f"{BASE}/surveys/{lee_invitation}", data={"csrf_token": csrf})
    assert other.status_code == 404
    assert client.post(f"{BASE}/surveys/{kim_invitation}", data={}).status_code == 403  # CSRF
    opened = client.post(f"{BASE}/surveys/{kim_invitation}", data={"csrf_token": csrf},
                         follow_redirects=False)  # fmt: skip
    assert opened.status_code == 303
    location = opened.headers["location"]
    assert re.fullmatch(r"/s/[A-Za-z0-9_-]{20,64}\?lang=ko", location), location
    assert client.get(f"/s/{old_token}").status_code == 404  # the message's link is replaced
    page = client.get(location)
    assert page.status_code == 200 and "오늘 방문은 어떠셨나요?" in page.text
    done = client.post(location, data={"overall": "5", "again": "yes"})
    assert done.status_code == 200 and 'id="thanks"' in done.text
    assert "오늘 방문은 어떠셨나요?" not in client.get(f"{BASE}/").text  # answered: gone

    with db.unit_of_work(readonly=True) as session:
        [event] = session.scalars(
            select(DomainEvent).where(DomainEvent.kind == "survey.answered")
        ).all()
        assert event.member_id == kim["id"]
        assert {k: event.payload[k] for k in ("survey", "invitation_id", "points", "answers")} == {
            "survey": "after-visit", "invitation_id": kim_invitation, "points": 100,
            "answers": {"overall": 5, "again": "yes"},
        }  # fmt: skip


def test_admin_pages_and_cli(db, client, admin, pos, staff, kim):
    clock.freeze(seoul(2026, 3, 10, 12, 0))
    goal(client, admin, code="first-visit", kind="visits", target=1)
    buy(client, pos, "010-1234-5678", "K1", seoul(2026, 3, 9, 12, 0))

    csrf = sign_in(client, STAFF["marketer"][0])
    assert 'href="/admin/milestones"' in client.get("/admin/").text  # the nav item
    listed = client.get("/admin/milestones", params={"program": "bakery"})
    assert listed.status_code == 200 and 'id="milestone-first-visit"' in listed.text
    assert re.search(r'class="num achievers">0<', listed.text)
    ran = client.post("/admin/milestones/run", data={"csrf_token": csrf, "program": "bakery"},
                      follow_redirects=False)  # fmt: skip
    assert ran.status_code == 303 and "n=1" in ran.headers["location"]
    listed = client.get(ran.headers["location"])
    assert 'id="notice"' in listed.text and re.search(r'class="num achievers">1<', listed.text)

    assert "ten-visits" in client.get("/admin/milestones/new?program=bakery").text  # the example
    bad = client.post("/admin/milestones/save",
                      data={"csrf_token": csrf, "program": "bakery", "document": "{"})  # fmt: skip
    assert bad.status_code == 422 and 'id="error"' in bad.text
    invalid = (
        '{"code": "x", "kind": "streak", "target": 3, "window": "month", "names": {"en": "X"}}'
    )
    refused = client.post("/admin/milestones/save",
                          data={"csrf_token": csrf, "program": "bakery", "document": invalid})  # fmt: skip
    assert refused.status_code == 422 and "window" in refused.text
    good = '{"code": "streak", "kind": "streak", "target": 3, "names": {"ko": "3개월 연속"}}'
    saved = client.post("/admin/milestones/save", follow_redirects=False,
                        data={"csrf_token": csrf, "program": "bakery", "document": good})  # fmt: skip
    assert saved.status_code == 303
    edit = client.get("/admin/milestones/streak/edit?program=bakery")
    assert edit.status_code == 200 and "3개월 연속" in edit.text

    # A viewer sees the list without the buttons; support has no access to the section.
    client.cookies.clear()
    sign_in(client, STAFF["viewer"][0])
    seen = client.get("/admin/milestones?program=bakery")
    assert seen.status_code == 200 and 'id="run-now"' not in seen.text
    assert client.get("/admin/milestones/new").status_code == 403
    client.cookies.clear()
    sign_in(client, STAFF["support"][0])
    assert client.get("/admin/milestones").status_code == 403

    url = str(db.engine.url.render_as_string(hide_password=False))
    runner = CliRunner()
    listed_cli = runner.invoke(cli_app, ["milestones", "list", "--program", "bakery", "--json",
                                         "--database-url", url])  # fmt: skip
    assert listed_cli.exit_code == 0, listed_cli.output
    assert '"achievers": 1' in listed_cli.output
    ran_cli = runner.invoke(cli_app, ["milestones", "run", "--program", "bakery",
                                      "--database-url", url])  # fmt: skip
    assert ran_cli.exit_code == 0, ran_cli.output
    assert "first-visit [ever]: 0 achieved" in ran_cli.output
    nowhere = runner.invoke(cli_app, ["milestones", "run", "--program", "nope",
                                      "--database-url", url])  # fmt: skip
    assert nowhere.exit_code == 2 and "program_not_found" in nowhere.output
