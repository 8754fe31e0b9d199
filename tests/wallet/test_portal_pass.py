"""The member's own page offers her card as a wallet pass once the instance can sign one."""

from __future__ import annotations

import io
import json
import zipfile

from tests.portal.conftest import portal  # noqa: F401 - the signed-in member's program
from tests.portal.test_pages import BASE, outbox, sign_in  # noqa: F401
from tests.wallet.test_wallet_api import configured, unconfigured  # noqa: F401


def test_the_card_page_offers_the_pass_only_when_configured(
    client,
    portal,  # noqa: F811 - the fixtures imported above
    outbox,  # noqa: F811
    unconfigured,  # noqa: F811
):
    sign_in(client, outbox)
    assert "Apple" not in client.get(f"{BASE}/card").text
    assert client.get(f"{BASE}/card/wallet.pkpass").status_code == 404


def test_she_downloads_her_own_pass(client, portal, outbox, configured):  # noqa: F811
    sign_in(client, outbox)
    card = client.get(f"{BASE}/card").text
    assert "Apple 지갑에 추가" in card
    r = client.get(f"{BASE}/card/wallet.pkpass")
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apple.pkpass"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        document = json.loads(z.read("pass.json"))
        assert {"manifest.json", "signature"} <= set(z.namelist())
    assert document["barcodes"][0]["message"] == "BKR100000"
