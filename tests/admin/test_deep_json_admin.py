"""The rule editor's hand-parsed JSON (the JSON editor's document, the candidate a preview page
carries to publish) nested deeper than json.loads goes: the 422 page any malformed document
gets, never a RecursionError and a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.admin.helpers import STAFF, sign_in

SEEDED_VERSION = 2
# 1,000 and 100,000 levels; the object chain stops at 20,000 levels: at 100,000 it is past
# Starlette's 1 MB form-field cap (URL-encoded), which answers a 400 page before any parsing.
DEEP = [pytest.param("[" * n, id=f"open-{n}") for n in (1_000, 100_000)] + [
    pytest.param('{"rules":' * n + "1" + "}" * n, id=f"objects-{n}") for n in (1_000, 20_000)
]


@pytest.fixture
def web(app, staff, seeded):
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize("document", DEEP)
def test_a_deep_document_is_a_422_page_everywhere_the_editor_parses_json(web, document):
    token = sign_in(web, STAFF["marketer"][0])
    form = {"csrf_token": token, "program": "bakery", "base_version": str(SEEDED_VERSION)}
    editor = web.post("/admin/rules/preview", data={**form, "action": "json", "document": document})
    assert editor.status_code == 422, editor.text[:300]
    assert "Not valid JSON" in editor.text
    carried = web.post(
        "/admin/rules/preview", data={**form, "action": "candidate", "candidate": document}
    )
    assert carried.status_code == 422, carried.text[:300]
    published = web.post("/admin/rules/publish", data={**form, "candidate": document})
    assert published.status_code == 422, published.text[:300]
    # And the editor still works.
    assert web.get("/admin/rules").status_code == 200
