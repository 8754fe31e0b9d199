from tests.conftest import auth
from tests.factories import BAKERY


def test_bakery_sale_earns_250_points(client, keys):
    assert (
        client.post("/api/v1/programs", json=BAKERY, headers=auth(keys["admin"])).status_code == 201
    )
    member = client.post(
        "/api/v1/members",
        json={"name": "Kim", "phone": "010-1234-5678", "program": "bakery"},
        headers=auth(keys["pos"]),
    )
    assert member.status_code == 201, member.text
    sale = client.post(
        "/api/v1/programs/bakery/purchases",
        headers=auth(keys["pos"]),
        json={"external_id": "A-1", "member": {"phone": "01012345678"}, "amount": 25800},
    )
    assert sale.status_code == 201, sale.text
    assert sale.json()["points_earned"] == 250
    assert sale.json()["totals"]["balance"] == 250
