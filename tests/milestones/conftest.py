"""API fixtures (keys per scope, the bakery program in Asia/Seoul), staff for the admin pages,
and helpers to buy at a given instant and to define goals."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.admin.browser.conftest import browser, live_server  # noqa: F401
from tests.admin.conftest import _cheap_argon2, staff  # noqa: F401
from tests.api.conftest import admin, bakery, pos, reader  # noqa: F401
from tests.api.helpers import enroll

P = "/api/v1/programs/bakery"
SEOUL = ZoneInfo("Asia/Seoul")


def seoul(*args: int) -> datetime:
    return datetime(*args, tzinfo=SEOUL)  # type: ignore[misc]


def buy(client, pos, phone: str, ref: str, at: datetime, *, store: str = "mapo",  # noqa: F811
        amount: int = 25800) -> dict[str, Any]:  # fmt: skip
    body = {"external_id": ref, "member": {"phone": phone}, "amount": amount, "store": store,
            "occurred_at": at.isoformat()}  # fmt: skip
    response = client.post(f"{P}/purchases", json=body, headers=pos)
    assert response.status_code == 201, response.text
    return response.json()


def goal(client, admin, **fields: Any) -> dict[str, Any]:  # noqa: F811
    body = {"names": {"ko": fields["code"], "en": fields["code"]}, **fields}
    response = client.post(f"{P}/milestones", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def run(client, admin, **params: str) -> dict[str, dict[str, int]]:  # noqa: F811
    """{milestone: {period: achieved}} of one evaluation through the API."""
    response = client.post(f"{P}/milestones/run", params=params, headers=admin)
    assert response.status_code == 200, response.text
    out: dict[str, dict[str, int]] = {}
    for item in response.json()["items"]:
        out.setdefault(item["milestone"], {})[item["period"]] = item["achieved"]
    return out


@pytest.fixture
def kim(client, pos, bakery) -> dict[str, Any]:  # noqa: F811
    return enroll(
        client, pos, name="Kim Minji", phone="010-1234-5678", email="minji@example.com",
        language="ko", marketing_consent=True,
    )  # fmt: skip


@pytest.fixture
def lee(client, pos, bakery) -> dict[str, Any]:  # noqa: F811
    return enroll(client, pos, name="Lee Jun", phone="010-2222-3333", language="zh")
