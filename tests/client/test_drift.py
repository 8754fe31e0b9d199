"""The CI drift check: the client in clients/python must be generated from the app's OpenAPI.

When an endpoint, parameter or schema changes and `make client` was not run, this fails.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import patron_client
import pytest
from patron_client import OPENAPI_SHA256, OPERATIONS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_client", ROOT / "scripts" / "gen_client.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_client", module)
    spec.loader.exec_module(module)
    return module


def test_the_client_was_generated_from_the_current_openapi(gen):
    schema = gen.live_openapi()
    live_ops = {
        f"{method.upper()} {path}"
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert gen.schema_hash(schema) == OPENAPI_SHA256, (
        "The API's OpenAPI changed since the Python client was generated: run `make client` "
        f"(the app has {len(live_ops)} /api/v1 operations, the client {len(OPERATIONS)})."
    )
    assert len(OPERATIONS) == len(live_ops)


def test_the_generated_files_were_not_edited_by_hand(gen):
    """Regenerating from the stored openapi.json reproduces the files byte for byte."""
    stored = Path(patron_client.__file__).parent / "openapi.json"
    import json

    for path, text in gen.render(json.loads(stored.read_text())).items():
        assert path.read_text() == text, f"{path.name} differs from its generation: run make client"
