"""The lab service principal's certificate: a fresh RSA key and self-signed certificate.

:func:`make_sp_certificate` writes it as azcmagent takes it (a PEM file with the private key and
the certificate, or a PFX without a password) and returns its SHA-1 thumbprint, which the lab's
Entra ID and the agent simulator use as the certificate registered on the app.
:func:`thumbprint_of` reads either format back (``None`` when the file is neither or has no key).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class SpCertificateFile:
    path: Path
    certificate_pem: bytes
    thumbprint: str  # SHA-1 of the DER certificate, upper-case hex, as Azure shows it
    key_der: bytes  # the private key (PKCS#8 DER): what a sentinel test looks for


def make_sp_certificate(folder: Path, *, pfx: bool = False) -> SpCertificateFile:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arcfleet lab onboarding")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .sign(key, hashes.SHA256())
    )
    key_der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    if pfx:
        data = pkcs12.serialize_key_and_certificates(
            b"arcfleet-lab", key, cert, None, serialization.NoEncryption())
        path = folder / "sp-cert.pfx"
    else:
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        data = key_pem + cert_pem
        path = folder / "sp-cert.pem"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return SpCertificateFile(path, cert_pem, _thumbprint(cert), key_der)


def thumbprint_of(data: bytes) -> str | None:
    """The thumbprint of the certificate in a PEM-with-key or PFX file, or None."""
    if b"-----BEGIN" in data:
        if b"PRIVATE KEY-----" not in data:
            return None
        try:
            return _thumbprint(x509.load_pem_x509_certificate(data))
        except ValueError:
            return None
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(data, None)
    except ValueError:
        return None
    return _thumbprint(cert) if key is not None and cert is not None else None


def _thumbprint(cert: x509.Certificate) -> str:
    # SHA-1 because that is what Azure calls a certificate's thumbprint.
    return cert.fingerprint(hashes.SHA1()).hex().upper()
