"""Credentials and ARM clients for one cloud, built on azure-identity and the Azure SDK.

Everything from ``azure.*`` is imported inside functions: the CLI must start without loading the
SDK. The SDK's own HTTP pipeline honours ``HTTPS_PROXY``/``NO_PROXY`` from the environment, and
the endpoints' CA bundle (the lab's CA) is passed as ``connection_verify``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet.azure.clouds import CloudEndpoints

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.hybridcompute import HybridComputeManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient

# A jump host that cannot reach Azure should learn it in seconds, not minutes: one reconnect,
# and a few retries for throttling (the SDK waits for Retry-After between them).
RETRY_SETTINGS: dict[str, Any] = {
    "retry_total": 5,
    "retry_connect": 1,
    "retry_read": 1,
    "retry_backoff_factor": 0.3,
    "retry_backoff_max": 30,
    "connection_timeout": 10,
    "read_timeout": 30,
}


@dataclass(frozen=True)
class Identity:
    """Who signs in: a service principal (secret or certificate) or the operator's own
    credential (DefaultAzureCredential: environment, managed identity, ``az login``)."""

    tenant_id: str | None
    client_id: str | None = None
    secret: str | None = None  # the value; never printed (redacted once registered)
    certificate_file: Path | None = None

    @property
    def kind(self) -> str:
        if self.secret is not None:
            return "secret"
        if self.certificate_file is not None:
            return "certificate"
        return "default"


def _transport_options(endpoints: CloudEndpoints,
                       settings: dict[str, Any] | None = None) -> dict[str, Any]:
    options = dict(RETRY_SETTINGS if settings is None else settings)
    if endpoints.ca_bundle:
        options["connection_verify"] = endpoints.ca_bundle
    return options


def make_credential(identity: Identity, endpoints: CloudEndpoints,
                    settings: dict[str, Any] | None = None) -> TokenCredential:
    """The azure-identity credential for ``identity`` against ``endpoints``' authority."""
    from azure.identity import CertificateCredential, ClientSecretCredential, DefaultAzureCredential

    options = _transport_options(endpoints, settings)
    options["authority"] = endpoints.authority_host
    # Instance discovery asks login.microsoftonline.com whether the authority is known; an
    # overridden (lab) authority is not, and must not make the jump host call the internet.
    if endpoints.overridden:
        options["disable_instance_discovery"] = True
    if identity.kind == "secret":
        assert identity.tenant_id and identity.client_id and identity.secret is not None
        return ClientSecretCredential(
            identity.tenant_id, identity.client_id, identity.secret, **options
        )
    if identity.kind == "certificate":
        assert identity.tenant_id and identity.client_id and identity.certificate_file
        return CertificateCredential(
            identity.tenant_id, identity.client_id, str(identity.certificate_file), **options
        )
    return DefaultAzureCredential(
        exclude_interactive_browser_credential=True,
        # The managed identity endpoint is not on the overridden (lab) network.
        exclude_managed_identity_credential=endpoints.overridden,
        **({"interactive_browser_tenant_id": identity.tenant_id} if identity.tenant_id else {}),
        **options,
    )


class ArmSession:
    """One credential and the management clients of one cloud, per subscription."""

    def __init__(self, identity: Identity, endpoints: CloudEndpoints,
                 settings: dict[str, Any] | None = None) -> None:
        self.identity = identity
        self.endpoints = endpoints
        self.settings = settings  # retry and timeout settings (None: RETRY_SETTINGS)
        self.credential = make_credential(identity, endpoints, settings)
        self._clients: dict[tuple[str, str], Any] = {}

    def token(self) -> str:
        """An ARM access token (raises what azure-identity raises when Entra refuses)."""
        return self.credential.get_token(self.endpoints.arm_scope).token

    def _client_options(self) -> dict[str, Any]:
        return {
            "base_url": self.endpoints.resource_manager,
            "credential_scopes": [self.endpoints.arm_scope],
            **_transport_options(self.endpoints, self.settings),
        }

    def resources(self, subscription_id: str) -> ResourceManagementClient:
        key = ("resources", subscription_id)
        if key not in self._clients:
            from azure.mgmt.resource.resources import ResourceManagementClient

            self._clients[key] = ResourceManagementClient(
                self.credential, subscription_id, **self._client_options()
            )
        client: ResourceManagementClient = self._clients[key]
        return client

    def authorization(self, subscription_id: str) -> AuthorizationManagementClient:
        key = ("authorization", subscription_id)
        if key not in self._clients:
            from azure.mgmt.authorization import AuthorizationManagementClient

            self._clients[key] = AuthorizationManagementClient(
                self.credential, subscription_id, **self._client_options()
            )
        client: AuthorizationManagementClient = self._clients[key]
        return client

    def hybrid_compute(self, subscription_id: str) -> HybridComputeManagementClient:
        key = ("hybridcompute", subscription_id)
        if key not in self._clients:
            from azure.mgmt.hybridcompute import HybridComputeManagementClient

            self._clients[key] = HybridComputeManagementClient(
                self.credential, subscription_id, **self._client_options()
            )
        client: HybridComputeManagementClient = self._clients[key]
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        close = getattr(self.credential, "close", None)
        if close is not None:
            close()
