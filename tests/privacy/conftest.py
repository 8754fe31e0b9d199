"""The API fixtures (admin/pos/reader headers and the bakery) for the privacy tests, and
`@pytest.mark.sqlite_only` for tests whose outcome does not depend on the engine (bad input,
the OpenAPI document): they run once, on SQLite."""

from __future__ import annotations

import pytest

from tests.admin.conftest import _cheap_argon2, seeded, staff
from tests.api.conftest import admin, bakery, pos, reader

__all__ = ["_cheap_argon2", "admin", "bakery", "pos", "reader", "seeded", "staff"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: engine-independent, run on SQLite only")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        engine = callspec.params.get("db") if callspec is not None else None
        if (item.get_closest_marker("sqlite_only") and engine == "postgresql") or (
            item.get_closest_marker("postgresql_only") and engine == "sqlite"
        ):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
