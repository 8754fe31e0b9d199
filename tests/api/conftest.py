"""Shared HTTP fixtures for the API tests: headers per scope and a bakery program."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import auth
from tests.factories import BAKERY


@pytest.fixture
def admin(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["admin"])


@pytest.fixture
def pos(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["pos"])


@pytest.fixture
def reader(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["read"])


@pytest.fixture
def bakery(client, admin) -> dict[str, Any]:
    """The bakery program (KRW, Asia/Seoul) with one store, 'mapo'."""
    response = client.post("/api/v1/programs", json=BAKERY, headers=admin)
    assert response.status_code == 201, response.text
    store = client.post(
        "/api/v1/programs/bakery/stores", json={"code": "mapo", "name": "Mapo"}, headers=admin
    )
    assert store.status_code == 201, store.text
    return response.json()
