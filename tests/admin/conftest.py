"""Admin UI fixtures: a cheaper argon2 for speed, seeded data, and signed-in clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher

from patron.admin import service
from patron.admin.settings import get_admin_settings
from patron.db.engine import Database
from tests.admin.helpers import Seeded, create_staff, seed_bakery
from tests.conftest import T0

# What production uses, kept before the fixture below swaps it for a cheaper one.
PRODUCTION_HASHER = service.hasher


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """argon2id still, with minimal cost: a sign-in per test should not take 0.2 s of CPU."""
    monkeypatch.setattr(
        service, "hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    monkeypatch.setattr(service, "_dummy", [])
    get_admin_settings.cache_clear()
    yield
    get_admin_settings.cache_clear()


@pytest.fixture
def staff(db: Database, frozen) -> dict[str, int]:
    """One staff user per role (tests.admin.helpers.STAFF), password helpers.PASSWORD."""
    return create_staff(db, now=T0)


@pytest.fixture
def seeded(db: Database, frozen) -> Seeded:
    return seed_bakery(db)
