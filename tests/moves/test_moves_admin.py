"""The moves card in the admin UI: support merges a duplicate and gives points; owners set a
program's transfer limits; a viewer sees no forms. Engine-independent: SQLite only."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from patron.ledger.models import Account, Entry
from patron.members.models import Member
from tests.admin.conftest import _cheap_argon2, seeded, staff
from tests.admin.helpers import STAFF, sign_in

__all__ = ["_cheap_argon2", "seeded", "staff"]


@pytest.fixture
def web(db, app, staff, seeded):
    if db.dialect != "sqlite":
        pytest.skip("pages do not depend on the engine")
    with TestClient(app) as client:
        yield client


def test_support_merges_and_transfers_on_the_member_page(db, web, seeded):
    token = sign_in(web, STAFF["support"][0])
    card = web.get(f"/admin/members/{seeded.other_id}/moves?fragment=1")
    assert card.status_code == 200 and "merge-into" in card.text
    assert "transfer-to" not in card.text  # the program has not opted in
    refused = web.post(
        f"/admin/members/{seeded.other_id}/merge",
        data={"csrf_token": token, "into": str(seeded.other_id), "reason": "x"},
    )
    assert refused.status_code == 422 and "merged into herself" in refused.text
    owner = TestClient(web.app)
    owner_token = sign_in(owner, STAFF["owner"][0])
    saved = owner.post(
        "/admin/program/transfers",
        data={"csrf_token": owner_token, "program": "bakery", "enabled": "1", "max_per_day": "500"},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    assert "transfers-enabled" in owner.get("/admin/program/transfers?program=bakery").text
    # Without ?program= the page shows the user's first program instead of refusing.
    default = owner.get("/admin/program/transfers")
    assert default.status_code == 200 and "transfers-enabled" in default.text
    with db.unit_of_work(readonly=True) as s:
        before = s.scalars(select(Account).where(Account.member_id == seeded.member_id)).one()
        balance = before.available
    gave = web.post(
        f"/admin/members/{seeded.member_id}/transfers",
        data={
            "csrf_token": token,
            "program": "bakery",
            "to": str(seeded.other_id),
            "points": "300",
            "note": "birthday",
            "key": "adm-1",
        },
        follow_redirects=False,
    )
    assert gave.status_code == 303, gave.text
    over = web.post(
        f"/admin/members/{seeded.member_id}/transfers",
        data={
            "csrf_token": token,
            "program": "bakery",
            "to": str(seeded.other_id),
            "points": "300",
            "key": "adm-2",
        },
    )
    assert over.status_code == 409 and "more than the member may give today" in over.text
    page = web.get(f"/admin/members/{seeded.other_id}/moves?program=bakery")
    assert "received 300 points" in page.text
    merged = web.post(
        f"/admin/members/{seeded.other_id}/merge",
        data={
            "csrf_token": token,
            "program": "bakery",
            "into": str(seeded.member_id),
            "reason": "same person",
        },
        follow_redirects=False,
    )
    assert merged.status_code == 303, merged.text
    with db.unit_of_work(readonly=True) as s:
        assert s.get(Member, seeded.other_id).status == "merged"  # type: ignore[union-attr]
        after = s.scalars(select(Account).where(Account.member_id == seeded.member_id)).one()
        assert after.available == balance
        assert s.scalar(select(Entry.id).where(Entry.kind == "merge_in")) is not None
    history = web.get(f"/admin/members/{seeded.member_id}?program=bakery")
    assert history.status_code == 200 and "Merged in" in history.text


def test_a_viewer_sees_no_forms(web, seeded):
    sign_in(web, STAFF["viewer"][0])
    card = web.get(f"/admin/members/{seeded.member_id}/moves?fragment=1")
    assert card.status_code == 200 and "merge-into" not in card.text
