"""A throwaway certificate authority standing in for Apple's WWDR, and a pass certificate it
issued, written to files the way a server's settings would name them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

PASS_TYPE_ID = "pass.org.example.patron"
TEAM_ID = "A1B2C3D4E5"


@dataclass(frozen=True)
class Certificates:
    ca_certificate: x509.Certificate
    pass_certificate: x509.Certificate
    pass_key: rsa.RSAPrivateKey
    ca_file: Path  # the "WWDR" certificate, PEM
    ca_der_file: Path  # the same, DER, as Apple hands it out
    combined_file: Path  # pass certificate and key in one PEM
    cert_file: Path  # pass certificate alone
    key_file: Path  # its key alone, encrypted with KEY_PASSWORD
    other_key_file: Path  # a key that does not match the certificate


KEY_PASSWORD = "s3cret"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, TEAM_ID),
        ]
    )


def _pem_key(key: rsa.RSAPrivateKey, password: str | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    folder = tmp_path_factory.mktemp("wallet-certs")
    now = datetime.now(UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = _name("Test Worldwide Developer Relations CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pass_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"Pass Type ID: {PASS_TYPE_ID}"))
        .issuer_name(ca_name)
        .public_key(pass_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    files = {
        "ca_file": ("wwdr.pem", ca.public_bytes(serialization.Encoding.PEM)),
        "ca_der_file": ("wwdr.cer", ca.public_bytes(serialization.Encoding.DER)),
        "combined_file": ("pass.pem", cert_pem + _pem_key(pass_key)),
        "cert_file": ("pass-cert.pem", cert_pem),
        "key_file": ("pass-key.pem", _pem_key(pass_key, KEY_PASSWORD)),
        "other_key_file": ("other-key.pem", _pem_key(other_key)),
    }
    paths = {}
    for field, (name, data) in files.items():
        paths[field] = folder / name
        paths[field].write_bytes(data)
    return Certificates(ca_certificate=ca, pass_certificate=cert, pass_key=pass_key, **paths)
