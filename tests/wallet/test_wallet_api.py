"""GET …/members/{id}/wallet.pkpass through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs7

from patron.config import get_settings
from tests.conftest import auth
from tests.factories import BAKERY
from tests.tiers._tier_helpers import club_setup
from tests.wallet.conftest import PASS_TYPE_ID, TEAM_ID, Certificates

WALLET_SETTINGS = ("PASS_TYPE_ID", "TEAM_ID", "CERT_FILE", "KEY_FILE", "WWDR_FILE")


def url(member_id: int, program: str = "bakery") -> str:
    return f"/api/v1/programs/{program}/members/{member_id}/wallet.pkpass"


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in WALLET_SETTINGS:
        monkeypatch.delenv(f"PATRON_WALLET_{name}", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def configured(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates, unconfigured: None
) -> None:
    monkeypatch.setenv("PATRON_WALLET_PASS_TYPE_ID", PASS_TYPE_ID)
    monkeypatch.setenv("PATRON_WALLET_TEAM_ID", TEAM_ID)
    monkeypatch.setenv("PATRON_WALLET_CERT_FILE", str(certificates.combined_file))
    monkeypatch.setenv("PATRON_WALLET_WWDR_FILE", str(certificates.ca_file))
    get_settings.cache_clear()


@pytest.fixture
def admin(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["admin"])


@pytest.fixture
def gold_member(client, admin: dict[str, str]) -> dict[str, Any]:
    """Kim (Korean-speaking) in the bakery, with a lost card, an active one, and Gold."""
    assert client.post("/api/v1/programs", json=BAKERY, headers=admin).status_code == 201
    store = client.post(
        "/api/v1/programs/bakery/stores", json={"code": "mapo", "name": "Mapo"}, headers=admin
    )
    assert store.status_code == 201, store.text
    tiers = client.put("/api/v1/programs/bakery/tiers", json=club_setup(), headers=admin)
    assert tiers.status_code == 200, tiers.text
    member = client.post(
        "/api/v1/members",
        headers=admin,
        json={
            "name": "김민지",
            "program": "bakery",
            "language": "ko",
            "cards": [{"number": "OLD-0001"}, {"number": "CARD-0002"}],
        },
    ).json()
    lost = client.patch(
        "/api/v1/cards/OLD-0001",
        json={"status": "lost"},
        headers=admin,
    )
    assert lost.status_code == 200, lost.text
    sale = client.post(
        "/api/v1/programs/bakery/purchases",
        headers=admin,
        json={"external_id": "S-1", "member": {"id": member["id"]}, "amount": 400000},
    )
    assert sale.status_code == 201, sale.text
    return member


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.mark.usefixtures("configured")
def test_the_pass_shows_the_members_card_balance_tier_and_brand(
    client, keys: dict[str, str], admin: dict[str, str], gold_member: dict[str, Any]
) -> None:
    brand = client.put(
        "/api/v1/programs/bakery/branding",
        headers=admin,
        json={
            "display_name": {"ko": "코너 베이커리"},
            "card_background": "#3b2314",
            "card_text": "#fff8e7",
        },
    )
    assert brand.status_code == 200, brand.text
    member_id = gold_member["id"]
    account = client.get(
        f"/api/v1/programs/bakery/members/{member_id}/account", headers=auth(keys["read"])
    ).json()
    response = client.get(url(member_id), headers=auth(keys["pos"]))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.apple.pkpass"
    assert "bakery-member-" in response.headers["content-disposition"]

    files = unzip(response.content)
    manifest = json.loads(files["manifest.json"])
    for name, digest in manifest.items():
        assert hashlib.sha1(files[name]).hexdigest() == digest
    assert len(pkcs7.load_der_pkcs7_certificates(files["signature"])) == 2

    doc = json.loads(files["pass.json"])
    assert doc["serialNumber"] == "CARD-0002"  # the first *active* card
    assert doc["barcodes"][0]["message"] == "CARD-0002"
    assert doc["organizationName"] == "코너 베이커리"
    balance = doc["storeCard"]["primaryFields"][0]
    assert balance["value"] == account["totals"]["balance"] == 4000
    assert balance["label"] == "포인트"
    assert doc["storeCard"]["secondaryFields"][0]["value"] == "골드"
    assert doc["storeCard"]["auxiliaryFields"][0]["value"] == "김민지"
    assert doc["backgroundColor"] == "rgb(59,35,20)"
    assert doc["foregroundColor"] == "rgb(255,248,231)"


@pytest.mark.usefixtures("configured")
def test_read_scope_may_download_and_a_key_without_scope_may_not(
    client, keys: dict[str, str], gold_member: dict[str, Any]
) -> None:
    assert client.get(url(gold_member["id"]), headers=auth(keys["read"])).status_code == 200
    assert client.get(url(gold_member["id"])).status_code == 401


@pytest.mark.usefixtures("configured")
def test_unknown_members_and_members_of_other_programs_are_404(
    client, keys: dict[str, str], admin: dict[str, str], gold_member: dict[str, Any]
) -> None:
    pos = auth(keys["pos"])
    missing = client.get(url(999), headers=pos)
    assert missing.status_code == 404
    assert missing.json()["error"] == "member_not_found"
    other = client.post("/api/v1/programs", json={**BAKERY, "code": "cafe"}, headers=admin)
    assert other.status_code == 201, other.text
    foreign = client.get(url(gold_member["id"], "cafe"), headers=pos)
    assert foreign.status_code == 404
    assert foreign.json()["error"] == "member_not_found"
    assert client.get(url(1, "nowhere"), headers=pos).json()["error"] == "program_not_found"


@pytest.mark.usefixtures("configured")
def test_a_member_without_an_active_card_gets_409(
    client, keys: dict[str, str], admin: dict[str, str], gold_member: dict[str, Any]
) -> None:
    blocked = client.patch(
        "/api/v1/cards/CARD-0002",
        json={"status": "blocked"},
        headers=admin,
    )
    assert blocked.status_code == 200, blocked.text
    response = client.get(url(gold_member["id"]), headers=auth(keys["pos"]))
    assert response.status_code == 409
    assert response.json()["error"] == "no_active_card"


@pytest.mark.usefixtures("unconfigured")
def test_without_a_certificate_the_download_is_409_wallet_not_configured(
    client, keys: dict[str, str], gold_member: dict[str, Any]
) -> None:
    response = client.get(url(gold_member["id"]), headers=auth(keys["pos"]))
    assert response.status_code == 409
    assert response.json()["error"] == "wallet_not_configured"


@pytest.mark.usefixtures("unconfigured")
def test_the_endpoint_declares_its_errors_and_media_type(client) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/api/v1/programs/{code}/members/{member_id}/wallet.pkpass"]["get"]
    assert "application/vnd.apple.pkpass" in operation["responses"]["200"]["content"]
    assert "404" in operation["responses"]
    assert "wallet_not_configured" in operation["responses"]["409"]["description"]
    assert "no_active_card" in operation["responses"]["409"]["description"]
