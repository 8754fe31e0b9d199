"""The API tests' fixtures (admin, pos, reader headers; the bakery program) for tests/moves."""

from tests.api.conftest import admin, bakery, pos, reader

__all__ = ["admin", "bakery", "pos", "reader"]
