"""The OpenAPI document, made exact: what every `/api/v1` operation can answer is declared.

Endpoints declare their own errors with `errors.responses(...)`. The errors that come from the
shared machinery, not from the endpoint, are added here, once, so no operation can forget them
(decision 0030):

- 400 `invalid_json` on every operation that takes a body (the app's JSON handler);
- 401 `missing_api_key`/`invalid_api_key`/`revoked_api_key` and 403 `missing_scope`/`program_not_allowed`/`key_not_allowed` on every
  operation behind an API key (`http.caller`, `http.require`);
- 409 `idempotency_conflict` on every operation that reads an Idempotency-Key (`http.write`),
  409 `conflict` on every write (a unique constraint the service did not foresee);
- 422 `validation_error` on every operation (parameters, body, and text with NUL or a lone
  surrogate, refused by `patron.text.TextGuard` before any route), `invalid_value` where input
  reaches the database;
- 503 `database_unavailable` on every operation that reads the database.

FastAPI's own 422 schema (a list of pydantic errors) is replaced by the one error shape,
`ErrorBody`, which is what the app answers.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_REF = "#/components/schemas/ErrorBody"
WRITES = frozenset({"post", "put", "patch", "delete"})

# (status, code) the shared machinery answers with
INVALID_JSON = (400, "invalid_json")
VALIDATION = (422, "validation_error")
INVALID_VALUE = (422, "invalid_value")
UNAUTHORIZED = (401, "missing_api_key"), (401, "invalid_api_key"), (401, "revoked_api_key")
FORBIDDEN = ((403, "missing_scope"), (403, "program_not_allowed"), (403, "key_not_allowed"))
IDEMPOTENCY = (409, "idempotency_conflict")
CONFLICT = (409, "conflict")
UNAVAILABLE = (503, "database_unavailable")


def codes_of(description: str) -> list[str]:
    """The error codes a response's description lists (`errors.responses` writes them as
    `code, code, ...`)."""
    return [c for c in description.split(", ") if c and " " not in c]


def _declare(responses: dict[str, Any], status: int, code: str) -> None:
    entry = responses.setdefault(str(status), {"description": ""})
    codes = codes_of(entry.get("description", ""))
    if code not in codes:
        codes.append(code)
    entry["description"] = ", ".join(codes)
    entry["content"] = {"application/json": {"schema": {"$ref": ERROR_REF}}}


def _takes_input(operation: dict[str, Any]) -> bool:
    return bool(operation.get("parameters")) or "requestBody" in operation


def exact(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with the machinery's errors declared on every `/api/v1` operation."""
    for path, item in document.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in item.items():
            if method not in WRITES | {"get", "head"}:
                continue
            responses = operation.setdefault("responses", {})
            declared: list[tuple[int, str]] = [VALIDATION, UNAVAILABLE]
            if "requestBody" in operation:
                declared.append(INVALID_JSON)
            if _takes_input(operation):
                declared.append(INVALID_VALUE)
            if operation.get("security"):
                declared += [*UNAUTHORIZED, *FORBIDDEN]
            headers = {
                p.get("name", "").lower()
                for p in operation.get("parameters", ())
                if p.get("in") == "header"
            }
            if "idempotency-key" in headers:
                declared.append(IDEMPOTENCY)
            if method in WRITES:
                declared.append(CONFLICT)
            for status, code in declared:
                _declare(responses, status, code)
            # FastAPI's 422 body is a list of pydantic errors; the app answers ErrorBody.
            for status, entry in responses.items():
                if status.startswith(("4", "5")):
                    entry["content"] = {"application/json": {"schema": {"$ref": ERROR_REF}}}
            operation["responses"] = dict(sorted(responses.items()))
    schemas = document.get("components", {}).get("schemas", {})
    schemas.setdefault(
        "ErrorBody",
        {
            "title": "ErrorBody",
            "type": "object",
            "required": ["error", "detail"],
            "properties": {
                "error": {"title": "Error", "type": "string"},
                "detail": {"title": "Detail", "type": "string"},
            },
        },
    )
    schemas["ErrorBody"]["description"] = (
        'Every error: `{"error": code, "detail": message}`. `error` is a stable machine code '
        "(each response lists the codes it may carry); `detail` is for people and may change."
    )
    _local_times(document)
    text = repr(document.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}'" not in text:
            schemas.pop(unused, None)
    return document


# A time of day as pydantic reads and writes it: "21:00", "21:00:00", "21:00:00.5", with an
# offset only if one was given. JSON Schema's `format: time` demands the offset, so the times
# the API answers (quiet hours, rule hours) would not match their own schema.
LOCAL_TIME = (
    r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?$"
)


def _local_times(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("format") == "time" and node.get("type") == "string":
            del node["format"]
            node["pattern"] = LOCAL_TIME
        for value in node.values():
            _local_times(value)
    elif isinstance(node, list):
        for value in node:
            _local_times(value)


def install(app: FastAPI) -> None:
    """Make `app.openapi()` answer the exact document (built once, as FastAPI does)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = exact(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    openapi_version=app.openapi_version,
                    summary=app.summary,
                    description=app.description,
                    routes=app.routes,
                    tags=app.openapi_tags,
                    servers=app.servers,
                )
            )
        return app.openapi_schema

    setattr(app, "openapi", openapi)  # noqa: B010 - FastAPI's documented override
