"""The .pkpass builder: a pass signed by the throwaway certificate in conftest, unzipped and
checked the way Wallet checks it (manifest digests, then the signature over the manifest)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from patron.config import Settings
from patron.wallet.images import badge_png
from patron.wallet.pkpass import (
    PassCard,
    PassSigner,
    WalletNotConfigured,
    build_pass,
    css_rgb,
    load_signer,
)
from tests.wallet.conftest import KEY_PASSWORD, PASS_TYPE_ID, TEAM_ID, Certificates

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")

CARD = PassCard(
    card_number="CARD-0001",
    member_name="김민지",
    organization_name="Corner Bakery",
    description="Member card",
    balance=12340,
    tier_name="Gold",
    background_color="#3B2314",
    foreground_color="#fff",
    label_color="#F5DEB3",
)


@pytest.fixture
def signer(certificates: Certificates) -> PassSigner:
    return PassSigner(
        certificate=certificates.pass_certificate,
        private_key=certificates.pass_key,
        wwdr_certificate=certificates.ca_certificate,
        pass_type_id=PASS_TYPE_ID,
        team_id=TEAM_ID,
    )


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_manifest_lists_every_file_with_its_sha1(signer: PassSigner) -> None:
    files = unzip(build_pass(CARD, signer))
    manifest = json.loads(files["manifest.json"])
    assert set(files) == {"pass.json", "manifest.json", "signature", *manifest}
    assert {"pass.json", "icon.png", "icon@2x.png", "logo.png"} <= set(manifest)
    for name, digest in manifest.items():
        assert hashlib.sha1(files[name]).hexdigest() == digest, name


def test_pass_json_carries_the_card_balance_tier_and_colours(signer: PassSigner) -> None:
    doc = json.loads(unzip(build_pass(CARD, signer))["pass.json"])
    assert doc["formatVersion"] == 1
    assert doc["passTypeIdentifier"] == PASS_TYPE_ID
    assert doc["teamIdentifier"] == TEAM_ID
    assert doc["serialNumber"] == "CARD-0001"
    assert doc["organizationName"] == "Corner Bakery"
    assert doc["description"] == "Member card"
    assert doc["barcodes"] == [
        {
            "format": "PKBarcodeFormatQR",
            "message": "CARD-0001",
            "messageEncoding": "iso-8859-1",
            "altText": "CARD-0001",
        }
    ]
    card = doc["storeCard"]
    assert [(f["key"], f["value"]) for f in card["primaryFields"]] == [("balance", 12340)]
    assert [(f["key"], f["value"]) for f in card["secondaryFields"]] == [("tier", "Gold")]
    assert [(f["key"], f["value"]) for f in card["auxiliaryFields"]] == [("member", "김민지")]
    assert doc["backgroundColor"] == "rgb(59,35,20)"
    assert doc["foregroundColor"] == "rgb(255,255,255)"
    assert doc["labelColor"] == "rgb(245,222,179)"


def test_a_member_without_a_tier_gets_no_tier_field(signer: PassSigner) -> None:
    plain = PassCard(
        card_number="CARD-0002",
        member_name="Lee",
        organization_name="Corner Bakery",
        description="Member card",
        balance=0,
    )
    doc = json.loads(unzip(build_pass(plain, signer))["pass.json"])
    assert doc["storeCard"]["secondaryFields"] == []
    assert doc["labelColor"] == doc["foregroundColor"] == "rgb(255,255,255)"


def test_drawn_images_are_pngs_of_apples_sizes(signer: PassSigner) -> None:
    files = unzip(build_pass(CARD, signer))
    assert png_size(files["icon.png"]) == (29, 29)
    assert png_size(files["icon@2x.png"]) == (58, 58)
    assert png_size(files["logo.png"]) == (50, 50)


def test_given_artwork_replaces_the_drawn_one(signer: PassSigner) -> None:
    logo = badge_png(160, 50, (0, 0, 0), (255, 0, 0))
    card = dataclasses.replace(CARD, images={"logo.png": logo})
    files = unzip(build_pass(card, signer))
    assert files["logo.png"] == logo
    assert json.loads(files["manifest.json"])["logo.png"] == hashlib.sha1(logo).hexdigest()


def test_badge_png_decodes_to_its_pixels() -> None:
    data = badge_png(5, 3, (1, 2, 3), (9, 9, 9))
    assert png_size(data) == (5, 3)
    idat_length = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    raw = zlib.decompress(data[41 : 41 + idat_length])
    assert len(raw) == 3 * (1 + 5 * 3)
    assert raw[1:4] == bytes((1, 2, 3))  # a corner is background
    assert raw[16 + 1 + 2 * 3 : 16 + 1 + 3 * 3] == bytes((9, 9, 9))  # the centre is the disc


@pytest.mark.parametrize(
    ("colour", "rgb"),
    [("#3B2314", "rgb(59,35,20)"), ("ffffff", "rgb(255,255,255)"), ("#0f0", "rgb(0,255,0)")],
)
def test_css_rgb(colour: str, rgb: str) -> None:
    assert css_rgb(colour) == rgb


@pytest.mark.parametrize("colour", ["", "#12345", "brown", "#GGGGGG"])
def test_css_rgb_refuses_what_is_not_a_hex_colour(colour: str) -> None:
    with pytest.raises(ValueError, match="hex colour"):
        css_rgb(colour)


def test_the_signature_names_the_pass_certificate_and_carries_the_wwdr_one(
    signer: PassSigner, certificates: Certificates
) -> None:
    files = unzip(build_pass(CARD, signer))
    carried = pkcs7.load_der_pkcs7_certificates(files["signature"])
    assert set(carried) == {certificates.pass_certificate, certificates.ca_certificate}


def _verify(folder: Path, files: dict[str, bytes], ca_file: Path) -> subprocess.CompletedProcess:
    for name in ("manifest.json", "signature"):
        (folder / name).write_bytes(files[name])
    assert OPENSSL is not None
    return subprocess.run(
        [
            OPENSSL, "smime", "-verify", "-binary", "-inform", "DER",
            "-in", str(folder / "signature"), "-content", str(folder / "manifest.json"),
            "-CAfile", str(ca_file), "-purpose", "any", "-out", str(folder / "verified"),
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip


@needs_openssl
def test_openssl_verifies_the_signature_over_the_manifest_up_to_the_ca(
    signer: PassSigner, certificates: Certificates, tmp_path: Path
) -> None:
    files = unzip(build_pass(CARD, signer))
    result = _verify(tmp_path, files, certificates.ca_file)
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr
    assert (tmp_path / "verified").read_bytes() == files["manifest.json"]


@needs_openssl
def test_a_changed_manifest_fails_verification(
    signer: PassSigner, certificates: Certificates, tmp_path: Path
) -> None:
    files = unzip(build_pass(CARD, signer))
    forged = json.loads(files["manifest.json"])
    forged["pass.json"] = hashlib.sha1(b"another pass").hexdigest()
    files["manifest.json"] = json.dumps(forged, indent=2).encode()
    result = _verify(tmp_path, files, certificates.ca_file)
    assert result.returncode != 0


@needs_openssl
def test_the_signature_is_detached_and_carries_the_signing_time(
    signer: PassSigner, tmp_path: Path
) -> None:
    (tmp_path / "signature").write_bytes(unzip(build_pass(CARD, signer))["signature"])
    assert OPENSSL is not None
    printed = subprocess.run(
        [OPENSSL, "cms", "-cmsout", "-print", "-inform", "DER", "-in", str(tmp_path / "signature")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "signingTime" in printed
    assert "eContent: <ABSENT>" in printed


# --- load_signer ------------------------------------------------------------------------------


def settings(certificates: Certificates, **overrides: str) -> Settings:
    values = {
        "wallet_pass_type_id": PASS_TYPE_ID,
        "wallet_team_id": TEAM_ID,
        "wallet_cert_file": str(certificates.combined_file),
        "wallet_wwdr_file": str(certificates.ca_file),
        **overrides,
    }
    return Settings.model_validate(values)


def test_load_signer_reads_a_combined_pem(certificates: Certificates) -> None:
    loaded = load_signer(settings(certificates))
    assert loaded.certificate == certificates.pass_certificate
    assert loaded.wwdr_certificate == certificates.ca_certificate
    assert (loaded.pass_type_id, loaded.team_id) == (PASS_TYPE_ID, TEAM_ID)
    assert loaded.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) == certificates.pass_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_load_signer_reads_a_separate_encrypted_key_and_a_der_wwdr(
    certificates: Certificates,
) -> None:
    loaded = load_signer(
        settings(
            certificates,
            wallet_cert_file=str(certificates.cert_file),
            wallet_key_file=str(certificates.key_file),
            wallet_key_password=KEY_PASSWORD,
            wallet_wwdr_file=str(certificates.ca_der_file),
        )
    )
    assert loaded.certificate == certificates.pass_certificate
    assert loaded.wwdr_certificate == certificates.ca_certificate


@pytest.mark.parametrize(
    "missing", ["wallet_pass_type_id", "wallet_team_id", "wallet_cert_file", "wallet_wwdr_file"]
)
def test_any_missing_setting_leaves_the_wallet_off(
    certificates: Certificates, missing: str
) -> None:
    incomplete = settings(certificates, **{missing: ""})
    assert not incomplete.wallet_enabled
    with pytest.raises(WalletNotConfigured, match="not set up"):
        load_signer(incomplete)
    assert settings(certificates).wallet_enabled


@pytest.mark.parametrize(
    "overrides",
    [
        {"wallet_cert_file": "/nonexistent/pass.pem"},
        {"wallet_wwdr_file": "/nonexistent/wwdr.cer"},
        {"wallet_key_file": "/nonexistent/key.pem"},
        {"wallet_cert_file": "__cert_only__"},  # no key in it, and no key file
        {"wallet_key_file": "__key__", "wallet_key_password": "wrong"},
        {"wallet_key_file": "__other_key__"},  # a key that is not the certificate's
    ],
)
def test_unreadable_or_mismatched_files_are_refused_without_naming_them(
    certificates: Certificates, overrides: dict[str, str]
) -> None:
    named = {
        "__cert_only__": str(certificates.cert_file),
        "__key__": str(certificates.key_file),
        "__other_key__": str(certificates.other_key_file),
    }
    values = {k: named.get(v, v) for k, v in overrides.items()}
    with pytest.raises(WalletNotConfigured) as caught:
        load_signer(settings(certificates, **values))
    assert "/" not in caught.value.detail.replace("docs/wallet.md", "")
