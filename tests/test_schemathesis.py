"""Property-based API fuzzing: every operation, generated input, never a 5xx, nothing undeclared.

STYLE.md habit 6: 422 for a malformed payload, 409 for a conflict, never a 500 for bad input.
Every answer's status must be declared for its operation (status_code_conformance) and its body
must match the declared schema (response_schema_conformance): the OpenAPI is exact
(docs/decisions/0030-exact-openapi.md).
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
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

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


CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]

# Real rows for path parameters, so generated bodies and queries get past the 404s.
REAL_PATH = {"code": "bakery", "member_id": 1, "external_id": "A-1", "number": "CARD-0001"}


def _fuzz(
    operation, mode: GenerationMode, seeded: dict[str, Any], app, *, pin: bool, examples: int
) -> list[str]:
    """Run one operation's strategy; return a line per distinct finding (server error,
    undeclared status, answer off its schema)."""
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
            case.call_and_validate(headers=dict(seeded["admin"]), checks=CHECKS, app=app)
        except (
            Exception,
            BaseExceptionGroup,
        ) as exc:  # collect every operation's failure, report them together
            key = f"{operation.label} [{mode.value}{', real rows' if pin else ''}]"
            failures.setdefault(key, f"{key}: {type(exc).__name__}: {str(exc)[:800]}")

    try:
        run()
    except Unsatisfiable:
        # No input breaks the schema of, e.g., GET /health (negative mode has nothing to vary).
        assert mode is GenerationMode.NEGATIVE, operation.label
    return list(failures.values())


def test_every_answer_is_declared_and_never_a_server_error(app, seeded):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # An Err (an operation schemathesis cannot read) has no .ok(): the test fails on it.
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
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


def test_the_shared_errors_are_declared_on_every_operation(tmp_path):
    """What the fuzzing above may not reach on a given run, checked on the document itself:
    every body can be invalid JSON, every Idempotency-Key can conflict, every error is the
    one shape (engine-independent: runs once)."""
    from patron.app import create_app

    document = create_app(f"sqlite:///{tmp_path / 'schema.db'}").openapi()
    missing = []
    for path, item in document["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in item.items():
            label, responses = f"{method.upper()} {path}", operation["responses"]

            def codes(status: str, r: dict[str, Any] = responses) -> list[str]:
                return r.get(status, {}).get("description", "").split(", ")

            headers = {p["name"] for p in operation.get("parameters", ()) if p["in"] == "header"}
            if "requestBody" in operation and "invalid_json" not in codes("400"):
                missing.append(f"{label}: 400 invalid_json")
            if "Idempotency-Key" in headers and "idempotency_conflict" not in codes("409"):
                missing.append(f"{label}: 409 idempotency_conflict")
            if "validation_error" not in codes("422"):
                missing.append(f"{label}: 422 validation_error")
            for status, entry in responses.items():
                schema = entry.get("content", {}).get("application/json", {}).get("schema")
                if status[0] in "45" and schema != {"$ref": "#/components/schemas/ErrorBody"}:
                    missing.append(f"{label}: {status} is not ErrorBody")
    assert missing == []
    assert "HTTPValidationError" not in document["components"]["schemas"]
