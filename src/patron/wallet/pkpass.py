"""Build a signed Apple Wallet store card (.pkpass) from plain values.

A .pkpass is a zip of pass.json and its images, a manifest.json with the SHA-1 of every file
(Apple's format still asks for SHA-1 there), and `signature`: a detached PKCS#7 signature of
manifest.json by the Pass Type ID certificate, carrying Apple's WWDR intermediate certificate.
`build_pass` does no I/O; `load_signer` reads the certificate files named in the settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from patron.config import Settings
from patron.errors import Conflict
from patron.wallet.images import RGB, badge_png

log = logging.getLogger("patron.wallet")

MEDIA_TYPE = "application/vnd.apple.pkpass"
# Dark brown card, white text: the default until a program has its own colours.
DEFAULT_BACKGROUND = "#3B2314"
DEFAULT_FOREGROUND = "#FFFFFF"
# Apple's sizes in points (@2x doubles them); a logo is at most 160×50.
IMAGE_SIZES = {
    "icon.png": (29, 29),
    "icon@2x.png": (58, 58),
    "logo.png": (50, 50),
    "logo@2x.png": (100, 100),
}
_HEX = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")
_PRIVATE_KEY = re.compile(
    rb"-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----.+?-----END (?:RSA |EC |ENCRYPTED )?"
    rb"PRIVATE KEY-----",
    re.DOTALL,
)

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class WalletNotConfigured(Conflict):
    code = "wallet_not_configured"


@dataclass(frozen=True, kw_only=True)
class PassSigner:
    """Who signs: the Pass Type ID certificate and key, Apple's WWDR intermediate, and the two
    identifiers the certificate was issued for."""

    certificate: x509.Certificate
    private_key: SigningKey
    wwdr_certificate: x509.Certificate
    pass_type_id: str
    team_id: str


@dataclass(frozen=True, kw_only=True)
class PassCard:
    """What the pass shows. Labels come translated; colours are hex (#RRGGBB or #RGB)."""

    card_number: str
    member_name: str
    organization_name: str
    description: str
    balance: int
    tier_name: str | None = None
    balance_label: str = "Points"
    tier_label: str = "Tier"
    member_label: str = "Member"
    background_color: str = DEFAULT_BACKGROUND
    foreground_color: str = DEFAULT_FOREGROUND
    label_color: str | None = None  # the foreground colour when not given
    # Artwork by file name (icon.png, logo.png, …); missing icons and logos are drawn.
    images: Mapping[str, bytes] = field(default_factory=dict)


def parse_hex(colour: str) -> RGB:
    match = _HEX.match(colour.strip())
    if match is None:
        raise ValueError(f"{colour!r} is not a hex colour such as #3B2314")
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def css_rgb(colour: str) -> str:
    """'#3B2314' -> 'rgb(59,35,20)', the only colour form pass.json accepts."""
    r, g, b = parse_hex(colour)
    return f"rgb({r},{g},{b})"


def pass_json(card: PassCard, signer: PassSigner) -> dict[str, object]:
    store_card: dict[str, list[dict[str, object]]] = {
        "primaryFields": [
            {
                "key": "balance",
                "label": card.balance_label,
                "value": card.balance,
                "numberStyle": "PKNumberStyleDecimal",
            }
        ],
        "secondaryFields": [],
        "auxiliaryFields": [
            {"key": "member", "label": card.member_label, "value": card.member_name}
        ],
        "backFields": [{"key": "card", "label": card.description, "value": card.card_number}],
    }
    if card.tier_name:
        store_card["secondaryFields"].append(
            {"key": "tier", "label": card.tier_label, "value": card.tier_name}
        )
    return {
        "formatVersion": 1,
        "passTypeIdentifier": signer.pass_type_id,
        "teamIdentifier": signer.team_id,
        "serialNumber": card.card_number,
        "organizationName": card.organization_name,
        "description": card.description,
        "logoText": card.organization_name,
        "foregroundColor": css_rgb(card.foreground_color),
        "backgroundColor": css_rgb(card.background_color),
        "labelColor": css_rgb(card.label_color or card.foreground_color),
        "barcodes": [
            {
                "format": "PKBarcodeFormatQR",
                "message": card.card_number,
                "messageEncoding": "iso-8859-1",
                "altText": card.card_number,
            }
        ],
        "storeCard": store_card,
    }


def _images(card: PassCard) -> dict[str, bytes]:
    background, foreground = parse_hex(card.background_color), parse_hex(card.foreground_color)
    drawn = {
        name: badge_png(width, height, background, foreground)
        for name, (width, height) in IMAGE_SIZES.items()
        if name not in card.images
    }
    return {**drawn, **card.images}


def manifest(files: Mapping[str, bytes]) -> bytes:
    digests = {name: hashlib.sha1(data).hexdigest() for name, data in sorted(files.items())}
    return json.dumps(digests, indent=2).encode()


def sign_manifest(manifest_bytes: bytes, signer: PassSigner) -> bytes:
    """A detached DER PKCS#7 signature with the signing time among its signed attributes."""
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(manifest_bytes)
        .add_signer(signer.certificate, signer.private_key, hashes.SHA256())
        .add_certificate(signer.wwdr_certificate)
    )
    # Binary: sign the bytes as they are (no MIME line-ending rewrite, which would change
    # the digest); NoCapabilities: S/MIME capabilities mean nothing to Wallet.
    options = [
        pkcs7.PKCS7Options.DetachedSignature,
        pkcs7.PKCS7Options.Binary,
        pkcs7.PKCS7Options.NoCapabilities,
    ]
    return builder.sign(serialization.Encoding.DER, options)


def build_pass(card: PassCard, signer: PassSigner) -> bytes:
    """The .pkpass file's bytes."""
    files = {"pass.json": json.dumps(pass_json(card, signer), ensure_ascii=False).encode()}
    files.update(_images(card))
    manifest_bytes = manifest(files)
    files["manifest.json"] = manifest_bytes
    files["signature"] = sign_manifest(manifest_bytes, signer)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def _load_certificate(data: bytes) -> x509.Certificate:
    # Apple hands out the WWDR certificate as DER (.cer); PEM works too.
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)[0]
    return x509.load_der_x509_certificate(data)


def _load_key(data: bytes, password: str) -> SigningKey:
    block = _PRIVATE_KEY.search(data)
    if block is None:
        raise ValueError("no PEM private key found")
    key = serialization.load_pem_private_key(block.group(0), password.encode() or None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("the private key must be RSA or EC")
    return key


def load_signer(settings: Settings) -> PassSigner:
    """The signer the settings name; WalletNotConfigured when a setting is missing or a file
    cannot be read."""
    if not settings.wallet_enabled:
        raise WalletNotConfigured(
            "Apple Wallet passes are not set up on this server (docs/wallet.md)"
        )
    try:
        cert_data = Path(settings.wallet_cert_file).read_bytes()
        key_data = (
            Path(settings.wallet_key_file).read_bytes() if settings.wallet_key_file else cert_data
        )
        certificate = _load_certificate(cert_data)
        private_key = _load_key(key_data, settings.wallet_key_password)
        wwdr = _load_certificate(Path(settings.wallet_wwdr_file).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        # The reason names server paths: it goes to the log, not to the caller.
        log.error("Apple Wallet certificate files cannot be read: %s", exc)
        raise WalletNotConfigured(
            "the Apple Wallet certificate on this server cannot be read (see the server log)"
        ) from exc
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private_key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        log.error("the Apple Wallet private key does not match the certificate")
        raise WalletNotConfigured("the Apple Wallet private key does not match its certificate")
    return PassSigner(
        certificate=certificate,
        private_key=private_key,
        wwdr_certificate=wwdr,
        pass_type_id=settings.wallet_pass_type_id,
        team_id=settings.wallet_team_id,
    )
