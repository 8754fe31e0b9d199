"""A store switched off in the admin UI takes no sales: the till gets 409 store_closed, on the
direct route, the FastAPI route, with points spent and in batches; switched on, it sells again."""

from __future__ import annotations

from typing import Any

import pytest

from patron import clock
from patron.admin import setup_service
from patron.audit.service import CLI
from patron.programs.service import get_program, get_store
from patron.sales import batch
from patron.sales.schemas import PurchaseRequest
from tests.api.helpers import enroll

P = "/api/v1/programs/bakery"


@pytest.fixture
def kim(client, pos, bakery, frozen) -> dict[str, Any]:
    return enroll(client, pos, name="Kim Minji", phone="010-1234-5678")


def switch(db, code: str, *, active: bool) -> None:
    with db.unit_of_work() as session:
        program = get_program(session, "bakery")
        store = get_store(session, program, code)
        setup_service.set_store_active(
            session, program, store, active=active, actor=CLI, now=clock.now()
        )


def sale(external_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "member": {"phone": "010-1234-5678"},
        "amount": 25800,
        "store": "mapo",
        **extra,
    }


CLOSED = {"error": "store_closed", "detail": "store 'mapo' is switched off and takes no sales"}


@pytest.mark.parametrize("extra", [{}, {"points_to_spend": 1000}], ids=["earn", "spend"])
def test_a_switched_off_store_takes_no_sales_until_switched_on(
    db, client, pos, admin, reader, kim, extra
):
    client.post(
        f"{P}/adjustments",
        json={"member": {"phone": "010-1234-5678"}, "points": 5000, "reason": "opening"},
        headers=admin,
    )
    assert client.post(f"{P}/purchases", json=sale("S-1", **extra), headers=pos).status_code == 201

    switch(db, "mapo", active=False)
    refused = client.post(f"{P}/purchases", json=sale("S-2", **extra), headers=pos)
    assert (refused.status_code, refused.json()) == (409, CLOSED)
    quote = client.post(
        f"{P}/quote", json={k: v for k, v in sale("Q").items() if k != "external_id"}, headers=pos
    )
    assert (quote.status_code, quote.json()) == (409, CLOSED)
    assert client.get(f"{P}/purchases/S-2", headers=reader).status_code == 404
    # A sale recorded before the store closed still replays its first answer.
    assert client.post(f"{P}/purchases", json=sale("S-1", **extra), headers=pos).status_code == 201
    # Sales without a store, or at another store, go on.
    assert (
        client.post(f"{P}/purchases", json={**sale("S-3"), "store": None}, headers=pos).status_code
        == 201
    )

    switch(db, "mapo", active=True)
    assert client.post(f"{P}/purchases", json=sale("S-2", **extra), headers=pos).status_code == 201


def test_batches_report_the_closed_store_per_item(db, client, pos, kim):
    switch(db, "mapo", active=False)
    report = batch.ingest(
        db,
        "bakery",
        [
            PurchaseRequest.model_validate(sale("B-1")),
            PurchaseRequest.model_validate(sale("B-2", store=None)),
        ],
        actor=CLI,
        now=clock.now(),
    )
    assert [(item.status, item.error) for item in report.items] == [
        ("error", "store_closed"),
        ("created", None),
    ]
