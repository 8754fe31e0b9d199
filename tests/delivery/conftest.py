"""Delivery tests: a program with a webhook endpoint at a real loopback receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from patron.config import Settings, get_settings
from tests.api import conftest as api_fixtures
from tests.support.http_receiver import Receiver, http_receiver  # noqa: F401

admin = api_fixtures.admin
pos = api_fixtures.pos
reader = api_fixtures.reader
bakery = api_fixtures.bakery


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The loopback receiver is a private address: allowed here, as the setting allows."""
    monkeypatch.setenv("PATRON_WEBHOOK_ALLOW_PRIVATE", "true")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        webhook_allow_private=True,
        delivery_backoff_seconds=10,
        delivery_backoff_max_seconds=600,
        delivery_max_attempts=4,
        delivery_lease_seconds=60,
        email_channel="log",
        sms_channel="log",
        message_log=str(tmp_path / "messages.log"),
        webhook_timeout_seconds=3,
    )


@pytest.fixture
def endpoint(
    client,
    admin,
    bakery,
    allow_private,
    http_receiver: Receiver,  # noqa: F811
) -> dict[str, Any]:
    r = client.post(
        "/api/v1/programs/bakery/webhooks",
        json={"url": http_receiver.url + "/hooks", "event_types": ["*"], "description": "CRM"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return r.json()
