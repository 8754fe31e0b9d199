"""The API fixtures (keys per scope, the bakery program) and the admin ones (staff per role,
a cheap password hash) for the fraud tests."""

from tests.admin.conftest import _cheap_argon2, staff  # noqa: F401
from tests.api.conftest import admin, bakery, pos, reader  # noqa: F401
