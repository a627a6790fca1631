"""A fake Azure for the lab: Entra ID token endpoint and ARM over HTTPS on loopback.

:class:`LabAzure` bundles the state, a fresh lab CA and the server, and writes the endpoints file
that points arcfleet's jump-host side at it (see :mod:`fleet.azure.clouds`).
"""

from __future__ import annotations

import json
from pathlib import Path

from fleet.lab.azure.ca import LabCertificates, make_lab_certificates
from fleet.lab.azure.server import FakeAzureServer
from fleet.lab.azure.state import ROLES, AzureState, Machine

__all__ = ["ROLES", "AzureState", "FakeAzureServer", "LabAzure", "LabCertificates", "Machine"]


class LabAzure:
    """State + CA + HTTPS server, started and stopped together."""

    def __init__(self, folder: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.folder = Path(folder)
        self.state = AzureState()
        self.certificates = make_lab_certificates(self.folder, (host,))
        self.server = FakeAzureServer(self.state, self.certificates, host, port)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def endpoints_file(self) -> Path:
        return self.folder / "azure-endpoints.json"

    def write_endpoints(self) -> Path:
        """The file ``ARCFLEET_AZURE_ENDPOINTS`` names: authority, ARM and the CA to trust."""
        self.endpoints_file.write_text(json.dumps({
            "authority_host": self.url,
            "resource_manager": self.url,
            "ca_bundle": str(self.certificates.ca_file),
        }, indent=2), encoding="utf-8")
        return self.endpoints_file

    def start(self) -> None:
        self.server.start()
        self.write_endpoints()

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> LabAzure:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
