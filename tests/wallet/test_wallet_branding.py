"""The wallet pass in the program's branding: the card's colours, the display name in the
member's language, and the same card number QR a till reads from the card page."""

from __future__ import annotations

import io
import json
import zipfile

from patron import clock
from patron.audit.service import CLI
from patron.programs import branding
from patron.programs.service import get_program
from tests.portal.conftest import portal  # noqa: F401 - the signed-in member's program
from tests.portal.test_pages import BASE, outbox, sign_in  # noqa: F401
from tests.wallet.test_wallet_api import configured, unconfigured  # noqa: F401


def pass_json(client) -> dict:
    r = client.get(f"{BASE}/card/wallet.pkpass")
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        return json.loads(z.read("pass.json"))


def test_the_pass_follows_the_programs_branding(
    client,
    db,
    portal,  # noqa: F811 - the fixtures imported above
    outbox,  # noqa: F811
    configured,  # noqa: F811
):
    sign_in(client, outbox)
    default = pass_json(client)
    assert default["backgroundColor"] == "rgb(31,41,55)"  # Branding's default #1f2937
    with db.unit_of_work() as s:
        branding.save(
            s,
            get_program(s, "bakery"),
            branding.Branding(
                display_name=branding.DisplayNames(ko="동네 빵집", en="Corner Bakery"),
                card_background="#102030",
                card_text="#fafafa",
                primary_color="#7a1f5c",
            ),
            actor=CLI,
            now=clock.now(),
        )
    document = pass_json(client)
    assert document["backgroundColor"] == "rgb(16,32,48)"
    assert document["foregroundColor"] == document["labelColor"] == "rgb(250,250,250)"
    assert document["organizationName"] == document["logoText"] == "동네 빵집"  # she reads ko
    assert document["barcodes"][0]["message"] == "BKR100000"
