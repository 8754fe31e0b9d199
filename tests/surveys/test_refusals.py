"""Bad links and bad answers are refused with clear errors and write nothing; two submits of
one link at once credit the points once; the API declares and returns its errors."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import func, select

from patron import clock
from patron.surveys.models import SurveyAnswer, SurveyResponse
from tests.surveys.conftest import SURVEY, P, balance, dispatch, invitation_tokens, sale

GOOD = {"overall": "5", "again": "no"}
S = "/api/v1/programs/{code}/surveys"


def _token(db, client, pos) -> str:
    assert client.post(f"{P}/purchases", json=sale("S-1"), headers=pos).status_code == 201
    dispatch(db)
    [token] = invitation_tokens(db)
    return token


def _responses(db) -> tuple[int, int]:
    with db.unit_of_work(readonly=True) as session:
        return (
            session.scalar(select(func.count()).select_from(SurveyResponse)) or 0,
            session.scalar(select(func.count()).select_from(SurveyAnswer)) or 0,
        )


def test_bad_tokens_and_answers_are_refused_clearly(db, client, pos, admin, survey, kim):
    token = _token(db, client, pos)
    for bad in ("nope", "x" * 32, token[:-1] + ("A" if token[-1] != "A" else "B")):
        got = client.get(f"/s/{bad}")
        assert got.status_code == 404 and 'data-code="invalid_token"' in got.text
        posted = client.post(f"/s/{bad}", data=GOOD)
        assert posted.status_code == 404 and "유효하지 않은" not in posted.text  # no member: en
        assert "This survey link is not valid" in posted.text
    cases = [
        ({"again": "no"}, "answer_missing"),  # the required rating left out
        ({"overall": "7", "again": "no"}, "invalid_answer"),
        ({"overall": "4", "again": "maybe"}, "invalid_answer"),
        ({"overall": "4", "again": ["yes", "no"]}, "invalid_answer"),
        ({"overall": "4", "again": "no", "bought": ["bread", "pizza"]}, "invalid_answer"),
        ({"overall": "4", "again": "no", "comment": "x" * 2001}, "invalid_answer"),
        ({"overall": "4", "again": "no", "sneaky": "1"}, "invalid_answer"),
    ]
    for data, code in cases:
        got = client.post(f"/s/{token}", data=data)
        assert got.status_code == 422, (data, got.status_code)
        assert f'data-code="{code}"' in got.text, data
        assert 'name="overall"' in got.text  # the form again, to correct
    assert _responses(db) == (0, 0)
    before = balance(client, admin, kim["id"])

    clock.freeze(clock.now() + timedelta(days=SURVEY["answer_days"], seconds=1))
    expired = client.post(f"/s/{token}", data=GOOD)
    assert expired.status_code == 409 and 'data-code="invitation_expired"' in expired.text
    assert _responses(db) == (0, 0) and balance(client, admin, kim["id"]) == before


def test_an_archived_survey_takes_no_answers(db, client, pos, admin, survey, kim):
    token = _token(db, client, pos)
    assert client.delete(f"{P}/surveys/after-visit", headers=admin).json()["status"] == "archived"
    got = client.post(f"/s/{token}", data=GOOD)
    assert got.status_code == 409 and 'data-code="survey_closed"' in got.text
    assert _responses(db) == (0, 0)


def test_two_submits_at_once_credit_the_points_once(db, client, pos, admin, survey, kim):
    token = _token(db, client, pos)
    before = balance(client, admin, kim["id"])
    barrier = threading.Barrier(4)
    codes: list[int] = []

    def answer() -> None:
        barrier.wait()
        codes.append(client.post(f"/s/{token}", data=GOOD).status_code)

    threads = [threading.Thread(target=answer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 409, 409, 409]
    assert balance(client, admin, kim["id"]) == before + SURVEY["points"]
    assert _responses(db) == (1, 2)


def test_api_errors_are_declared_and_returned(client, admin, reader, survey):
    no_fallback = {**SURVEY, "code": "other", "title": {"en": "Only English"}}
    got = client.post(f"{P}/surveys", json=no_fallback, headers=admin)
    assert got.status_code == 422 and "fallback" in got.text
    assert (
        client.post(f"{P}/surveys", json=SURVEY, headers=admin).json()["error"] == "survey_exists"
    )
    assert (
        client.post(f"{P}/surveys", json={**SURVEY, "code": "x"}, headers=reader).status_code == 403
    )
    unknown_store = client.post(
        f"{P}/surveys", json={**SURVEY, "code": "y", "stores": ["nowhere"]}, headers=admin
    )
    assert unknown_store.json()["error"] == "unknown_store"
    missing = client.get(f"{P}/surveys/nothing/results", headers=reader)
    assert missing.status_code == 404 and missing.json()["error"] == "survey_not_found"
    period = client.get(
        f"{P}/surveys/after-visit/results?from=2026-03-05&to=2026-03-01", headers=reader
    )
    assert period.json()["error"] == "invalid_period"
    # Answers exist? No: the questions may change freely; a removed question is fine now.
    fewer = {**SURVEY, "questions": SURVEY["questions"][:2]}
    assert client.put(f"{P}/surveys/after-visit", json=fewer, headers=admin).json()["version"] == 2
    # Declared in the OpenAPI (read from the router: building the whole schema is slow).
    from patron.surveys.api import router

    declared = {(r.path, m): set(r.responses) for r in router.routes for m in r.methods}  # type: ignore[attr-defined]
    assert {409, 404, 422, 403} <= declared[(f"{S}/{{survey}}/invitations", "POST")]
    assert {404, 422} <= declared[(f"{S}/{{survey}}/results", "GET")]


def test_manual_invitation_returns_the_link_once_and_keeps_the_cooldown(
    db, client, admin, reader, survey, kim
):
    made = client.post(
        f"{P}/surveys/after-visit/invitations", json={"member": {"id": kim["id"]}}, headers=admin
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["url"].endswith(f"/s/{body['token']}")
    assert client.get(f"/s/{body['token']}").status_code == 200
    listed = client.get(f"{P}/surveys/after-visit/invitations", headers=reader).json()["items"]
    assert [i["token"] for i in listed] == [None]
    again = client.post(
        f"{P}/surveys/after-visit/invitations", json={"member": {"id": kim["id"]}}, headers=admin
    )
    assert again.status_code == 409 and again.json()["error"] == "recently_invited"
    clock.freeze(clock.now() + timedelta(days=SURVEY["cooldown_days"]))
    later = client.post(
        f"{P}/surveys/after-visit/invitations", json={"member": {"id": kim["id"]}}, headers=admin
    )
    assert later.status_code == 201
