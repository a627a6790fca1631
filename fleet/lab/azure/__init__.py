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

    def seed(self, *, tenant_id: str, subscription_id: str, client_id: str, secret: str,
             resource_group: str, location: str = "westeurope") -> None:
        """The lab's ordinary Azure: the app with its secret, the subscription with the Arc
        providers registered, the resource group, and the onboarding role on it."""
        self.state.add_app(tenant_id, client_id, secret)
        self.state.add_subscription(subscription_id, tenant_id)
        self.state.add_resource_group(subscription_id, resource_group, location)
        self.state.assign_role(client_id,
                               f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}",
                               "Azure Connected Machine Onboarding")

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
