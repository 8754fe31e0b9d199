"""A purchase invites to a survey (through the outbox's dispatch round), the member answers on
the public page, gets the points once, and the results and exports contain the answer."""

from __future__ import annotations

import io

from sqlalchemy import func, select

from patron.surveys.models import SurveyInvitation, SurveyResponse
from tests.surveys.conftest import P, balance, dispatch, invitation_tokens, sale

ANSWER = {
    "overall": "4",
    "bought": ["bread", "coffee"],
    "again": "yes",
    "comment": "Great BREAD, 고마워요",
}


def test_purchase_invitation_answer_points_once_results_and_export(
    db, client, pos, admin, reader, survey, kim
):
    assert client.post(f"{P}/purchases", json=sale("S-1"), headers=pos).status_code == 201
    assert invitation_tokens(db) == []  # the sale itself wrote no invitation
    dispatch(db)
    [token] = invitation_tokens(db)
    with db.unit_of_work(readonly=True) as session:
        row = session.scalars(select(SurveyInvitation)).one()
        assert (row.member_id, row.store, row.order_ref) == (kim["id"], "mapo", "S-1")
        assert row.token_hash != token and token not in row.token_hash  # only the hash is kept

    # A second purchase within the cooldown invites no more.
    assert client.post(f"{P}/purchases", json=sale("S-2"), headers=pos).status_code == 201
    dispatch(db)
    assert len(invitation_tokens(db)) == 1

    page = client.get(f"/s/{token}")
    assert page.status_code == 200
    assert "오늘 방문은 어떠셨나요?" in page.text and 'name="overall"' in page.text
    assert "How was your visit?" in client.get(f"/s/{token}?lang=en").text
    assert "您买了什么？" in client.get(f"/s/{token}?lang=zh").text  # zh where given, else ko

    before = balance(client, admin, kim["id"])
    done = client.post(f"/s/{token}", data=ANSWER)
    assert done.status_code == 200, done.text
    assert 'id="thanks"' in done.text and "100" in done.text
    assert balance(client, admin, kim["id"]) == before + 100

    again = client.post(f"/s/{token}", data=ANSWER)
    assert again.status_code == 409
    assert 'data-code="already_answered"' in again.text
    assert client.get(f"/s/{token}").status_code == 409
    assert balance(client, admin, kim["id"]) == before + 100
    entries = client.get(f"{P}/members/{kim['id']}/entries", headers=admin).json()["items"]
    assert [e["points"] for e in entries if e["kind"] == "adjust"] == [100]

    results = client.get(f"{P}/surveys/after-visit/results", headers=reader)
    assert results.status_code == 200, results.text
    got = results.json()
    assert (got["invitations"], got["responses"], got["points_given"]) == (1, 1, 100)
    assert got["average_rating"] == 4.0
    questions = {q["key"]: q for q in got["questions"]}
    assert [d["count"] for d in questions["overall"]["distribution"]] == [0, 0, 0, 1, 0]
    assert {d["key"]: d["count"] for d in questions["bought"]["distribution"]} == {
        "bread": 1, "cake": 0, "coffee": 1,
    }  # fmt: skip
    assert got["stores"] == [{"store": "mapo", "responses": 1, "average_rating": 4.0}]
    # Another day (Seoul) has nothing.
    other = client.get(
        f"{P}/surveys/after-visit/results?from=2026-03-03&to=2026-03-31", headers=reader
    ).json()
    assert other["responses"] == 0

    for q in ("great bread", "GREAT", "고마워"):
        found = client.get(f"{P}/surveys/after-visit/texts", params={"q": q}, headers=reader)
        assert [t["text"] for t in found.json()["items"]] == [ANSWER["comment"]], q
    assert client.get(f"{P}/surveys/after-visit/texts?q=cake", headers=reader).json()["items"] == []
    assert client.get(f"{P}/surveys/after-visit/texts?q=%25", headers=reader).json()["items"] == []

    csv = client.get(f"{P}/surveys/after-visit/export?format=csv", headers=reader)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    text = csv.content.decode("utf-8-sig")
    assert ANSWER["comment"] in text and "Overall,rating,4,1," in text

    xlsx = client.get(f"{P}/surveys/after-visit/export?format=xlsx&lang=ko", headers=reader)
    assert xlsx.status_code == 200
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(xlsx.content))
    assert book.sheetnames == ["요약", "매장별", "자유 응답"]
    cells = [c for row in book["자유 응답"].iter_rows(values_only=True) for c in row]
    assert ANSWER["comment"] in cells
    summary = [r for r in book["요약"].iter_rows(values_only=True)]
    assert ("전체 만족도", "rating", "4", 1, None) in summary


def test_sales_elsewhere_or_without_consent_are_handled(db, client, pos, admin, survey, kim):
    from tests.api.helpers import enroll

    client.post(f"{P}/stores", json={"code": "hongdae", "name": "Hongdae"}, headers=admin)
    assert (
        client.post(f"{P}/purchases", json=sale("S-1", store="hongdae"), headers=pos).status_code
        == 201
    )
    enroll(client, pos, name="Lee", phone="010-2222-3333", email="lee@example.com")
    assert (
        client.post(
            f"{P}/purchases", json=sale("S-2", phone="010-2222-3333"), headers=pos
        ).status_code
        == 201
    )
    dispatch(db)
    from patron.events.models import Delivery

    with db.unit_of_work(readonly=True) as session:
        # Hongdae is not one of the survey's stores: nothing for Kim. Lee gave no marketing
        # consent: not invited (no link nobody receives), no message.
        assert session.scalars(select(SurveyInvitation.member_id)).all() == []
        messages = select(func.count()).where(Delivery.event_kind == "survey.invitation")
        assert session.scalar(messages) == 0
        assert session.scalar(select(func.count()).select_from(SurveyResponse)) == 0
    # Kim at Mapo is invited.
    assert client.post(f"{P}/purchases", json=sale("S-3"), headers=pos).status_code == 201
    dispatch(db)
    assert len(invitation_tokens(db)) == 1
