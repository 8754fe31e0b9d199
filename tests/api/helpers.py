"""Small helpers for the API tests."""

from __future__ import annotations

from typing import Any


def enroll(client, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    """POST /members in the bakery program; returns the member."""
    body = {"name": "Kim Minji", "program": "bakery", **fields}
    response = client.post("/api/v1/members", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()
