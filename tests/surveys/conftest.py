"""The API fixtures (keys per scope, the bakery program), the admin ones (staff per role) and
a bakery survey for the survey tests."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.admin.conftest import _cheap_argon2, staff  # noqa: F401
from tests.api.conftest import admin, bakery, pos, reader  # noqa: F401
from tests.api.helpers import enroll

P = "/api/v1/programs/bakery"

SURVEY: dict[str, Any] = {
    "code": "after-visit",
    "status": "active",
    "title": {"ko": "오늘 방문은 어떠셨나요?", "en": "How was your visit?"},
    "fallback_language": "ko",
    "questions": [
        {"key": "overall", "kind": "rating", "label": {"ko": "전체 만족도", "en": "Overall"}},
        {
            "key": "bought",
            "kind": "multiple",
            "required": False,
            "label": {"ko": "구매한 빵", "en": "What did you buy?", "zh": "您买了什么？"},
            "choices": [
                {"key": "bread", "label": {"ko": "식빵", "en": "Bread"}},
                {"key": "cake", "label": {"ko": "케이크", "en": "Cake"}},
                {"key": "coffee", "label": {"ko": "커피", "en": "Coffee"}},
            ],
        },
        {
            "key": "again",
            "kind": "single",
            "label": {"ko": "다시 오시겠어요?", "en": "Would you come again?"},
            "choices": [
                {"key": "yes", "label": {"ko": "네", "en": "Yes"}},
                {"key": "no", "label": {"ko": "아니요", "en": "No"}},
            ],
        },
        {
            "key": "comment",
            "kind": "text",
            "required": False,
            "label": {"ko": "한마디", "en": "Anything else?"},
        },
    ],
    "stores": ["mapo"],
    "points": 100,
    "cooldown_days": 7,
    "answer_days": 14,
}


@pytest.fixture
def survey(client, admin, bakery) -> dict[str, Any]:  # noqa: F811
    response = client.post(f"{P}/surveys", json=SURVEY, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def kim(client, pos, bakery, frozen) -> dict[str, Any]:  # noqa: F811
    return enroll(
        client, pos, name="Kim Minji", phone="010-1234-5678", email="minji@example.com",
        language="ko", marketing_consent=True,
    )  # fmt: skip


def sale(external_id: str, *, store: str = "mapo", phone: str = "010-1234-5678") -> dict[str, Any]:
    return {"external_id": external_id, "member": {"phone": phone}, "amount": 25800, "store": store}


def dispatch(db) -> None:
    from patron import clock
    from patron.config import get_settings
    from patron.delivery.dispatch import dispatch_pending

    dispatch_pending(db, now=clock.now(), settings=get_settings())


def invitation_tokens(db) -> list[str]:
    """The survey links' tokens, as the members received them (the deliveries' bodies)."""
    from sqlalchemy import select

    from patron.events.models import Delivery

    with db.unit_of_work(readonly=True) as session:
        bodies = session.scalars(
            select(Delivery.body)
            .where(Delivery.event_kind == "survey.invitation")
            .order_by(Delivery.id)
        ).all()
    return [m.group(1) for b in bodies for m in [re.search(r"/s/([A-Za-z0-9_-]+)", b)] if m]


def balance(client, admin, member_id: int) -> int:  # noqa: F811
    response = client.get(f"{P}/members/{member_id}/account", headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["totals"]["balance"]
