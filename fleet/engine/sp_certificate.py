"""The service principal's certificate: read once on the jump host, checked, sent like the secret.

azcmagent takes ``service-principal-cert`` as a PEM file holding the certificate and its private
key, or a PFX file; "password-protected PFX files and encrypted PEM files are not supported"
(reference 5.2). So arcfleet reads the file the inventory names, refuses what the agent would
refuse (no key, an encrypted key, a PFX that needs a password) before any host is contacted, and
registers the key material for redaction (its PEM base64 lines and its whole base64 encoding), as
it does with the secret. The bytes then travel to each host the way the secret does (the host
script's stdin, or an upload into the private 0600 directory) and are removed with it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fleet.errors import SecretUnavailable
from fleet.redact import register_secret

_PEM_KEY_BEGIN = b"-----BEGIN "
_PEM_KEY_MARK = b"PRIVATE KEY-----"


@dataclass(frozen=True)
class SpCertificate:
    """The certificate file's bytes and its format (which decides the host-side file name)."""

    data: bytes
    kind: Literal["pem", "pfx"]

    @property
    def file_name(self) -> str:
        return f"sp-cert.{self.kind}"

    def __repr__(self) -> str:  # never the key material
        return f"SpCertificate({self.kind}, {len(self.data)} bytes)"


def read_certificate(path: Path) -> SpCertificate:
    """Read and check ``path``; raises :class:`SecretUnavailable` with the reason."""
    where = f"file:{path}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SecretUnavailable(where, exc.strerror or "cannot read") from None
    if not data.strip():
        raise SecretUnavailable(where, "file is empty")
    if _PEM_KEY_BEGIN in data:
        cert = SpCertificate(data, "pem")
        _check_pem(where, data)
    else:
        cert = SpCertificate(data, "pfx")
        _check_pfx(where, data)
    register_key_material(data)
    return cert


def register_key_material(data: bytes) -> None:
    """Redact the key wherever it could be printed: each base64 line of a PEM private key
    block, and the whole file as base64 (how a PFX or an upload would be written out)."""
    inside = False
    for raw in data.splitlines():
        line = raw.strip()
        if line.startswith(b"-----BEGIN") and line.endswith(_PEM_KEY_MARK):
            inside = True
            continue
        if line.startswith(b"-----END"):
            inside = False
            continue
        if inside and len(line) >= 16 and b":" not in line:
            register_secret(line.decode("ascii", errors="replace"))
    register_secret(base64.b64encode(data).decode("ascii"))


def _check_pem(where: str, data: bytes) -> None:
    if _PEM_KEY_MARK not in data:
        raise SecretUnavailable(where, "the PEM file holds no private key; azcmagent needs the "
                                "certificate and its private key in one file")
    if b"ENCRYPTED" in data:
        raise SecretUnavailable(where, "the private key is encrypted, and azcmagent does not "
                                "support encrypted PEM files; export it without a password")
    from cryptography import x509  # lazily: the CLI starts without it

    try:
        x509.load_pem_x509_certificate(data)
    except ValueError:
        raise SecretUnavailable(where, "the PEM file holds no readable certificate") from None


def _check_pfx(where: str, data: bytes) -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        key, cert, _extra = pkcs12.load_key_and_certificates(data, None)
    except ValueError:
        raise SecretUnavailable(where, "not a PEM file with a private key nor a PFX file "
                                "readable without a password (azcmagent supports neither "
                                "password-protected PFX nor encrypted PEM files)") from None
    if key is None or cert is None:
        raise SecretUnavailable(where, "the PFX file must hold the certificate and its key")
