"""Property-based API fuzzing: every operation, generated input, never a 5xx.

STYLE.md habit 6: 422 for a malformed payload, 409 for a conflict, never a 500 for bad input.
Seed data (the bakery program, member 1 with a card and points) lets generated paths hit real
rows. Each operation gets schema-valid (positive) and schema-violating (negative) cases.

Schemathesis' lazy pytest loader (`schemathesis.pytest.from_fixture`) does not work with
pytest 9, so the schema's Hypothesis strategies are driven directly, one engine per test.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.conftest import auth
from tests.factories import BAKERY

# Small enough that one engine takes well under a minute; PATRON_FUZZ_EXAMPLES=200 hunts harder.
MAX_EXAMPLES = int(os.environ.get("PATRON_FUZZ_EXAMPLES", "15"))


@pytest.fixture
def seeded(client, keys) -> dict[str, Any]:
    admin = auth(keys["admin"])
    assert client.post("/api/v1/programs", json=BAKERY, headers=admin).status_code == 201
    assert (
        client.post(
            "/api/v1/programs/bakery/stores", json={"code": "mapo", "name": "Mapo"}, headers=admin
        ).status_code
        == 201
    )
    member = client.post(
        "/api/v1/members",
        headers=admin,
        json={
            "name": "Kim",
            "phone": "010-1234-5678",
            "email": "kim@example.com",
            "program": "bakery",
            "cards": [{"number": "CARD-0001"}],
        },
    )
    assert member.status_code == 201 and member.json()["id"] == 1
    sale = client.post(
        "/api/v1/programs/bakery/purchases",
        headers=admin,
        json={"external_id": "A-1", "member": {"id": 1}, "amount": 25800},
    )
    assert sale.status_code == 201
    spare = client.post(
        "/api/v1/api-keys", json={"name": "spare", "scopes": ["read"]}, headers=admin
    )
    ids = {k["name"]: k["id"] for k in client.get("/api/v1/api-keys", headers=admin).json()}
    # Both spellings: otherwise a generated X-API-Key header would win over the bearer token.
    headers = {**admin, "X-API-Key": keys["admin"]}
    return {"admin": headers, "admin_id": ids["admin key"], "spare_id": spare.json()["id"]}


# Real rows for path parameters, so generated bodies and queries get past the 404s.
REAL_PATH = {"code": "bakery", "member_id": 1, "external_id": "A-1", "number": "CARD-0001"}


def _fuzz(
    operation, mode: GenerationMode, seeded: dict[str, Any], app, *, pin: bool, examples: int
) -> list[str]:
    """Run one operation's strategy; return a line per distinct server error."""
    failures: dict[str, str] = {}
    names = set(re.findall(r"{(\w+)}", operation.path))
    real = {**REAL_PATH, "key_id": seeded["spare_id"]}
    fixed = {name: real[name] for name in names if name in real} if pin else None

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    def run(case) -> None:
        params = case.path_parameters or {}
        if params.get("key_id") == seeded["admin_id"]:
            # Revoking the key that drives the run would turn every later case into a 401.
            params["key_id"] = seeded["spare_id"]
        try:
            case.call_and_validate(
                headers=dict(seeded["admin"]), checks=[not_a_server_error], app=app
            )
        except Exception as exc:  # collect every operation's failure, report them together
            key = f"{operation.label} [{mode.value}{', real rows' if pin else ''}]"
            failures.setdefault(key, f"{key}: {type(exc).__name__}: {str(exc)[:800]}")

    try:
        run()
    except Unsatisfiable:
        # No input breaks the schema of, e.g., GET /health (negative mode has nothing to vary).
        assert mode is GenerationMode.NEGATIVE, operation.label
    return list(failures.values())


def test_no_operation_answers_with_a_server_error(app, seeded):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    failures: list[str] = []
    for operation in operations:
        for mode, pin, examples in (
            (GenerationMode.POSITIVE, True, MAX_EXAMPLES),
            (GenerationMode.NEGATIVE, True, MAX_EXAMPLES),
            (GenerationMode.POSITIVE, False, max(MAX_EXAMPLES // 3, 1)),
        ):
            failures += _fuzz(operation, mode, seeded, app, pin=pin, examples=examples)
    assert failures == [], "\n\n".join(failures)
