"""The resolved host: what every later stage reads.

Loaders (``fleet.inventory.loader``) turn arcfleet YAML and Ansible inventories into a list of
:class:`ResolvedHost`, after inheritance (defaults -> groups -> host) and validation. Secrets are
never held here: only references to where they live (:class:`SecretRef`), resolved at the moment a
host needs them.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from fleet.errors import SecretUnavailable


class Transport(StrEnum):
    SSH = "ssh"
    WINRM = "winrm"


class OsFamily(StrEnum):
    LINUX = "linux"
    WINDOWS = "windows"


class Cloud(StrEnum):
    AZURE = "AzureCloud"
    US_GOVERNMENT = "AzureUSGovernment"
    CHINA = "AzureChinaCloud"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SecretRef(_Frozen):
    """Where a secret lives: an environment variable or a file, never the value itself.

    The one exception: a password an Ansible vault held (``vault`` names the variable), decrypted
    by ``ansible-vault`` when the inventory was read. Its value lives only in this process: it is
    left out of every dump, repr and report.
    """

    env: str | None = None
    file: Path | None = None
    vault: str | None = None
    # An Azure Key Vault secret URL, read by the run with the operator's own Azure credential
    # (fleet/azure/keyvault.py via fleet.engine.secrets.SecretBook), once per run.
    keyvault: str | None = None
    value: SecretStr | None = Field(default=None, exclude=True, repr=False)

    def describe(self) -> str:
        if self.vault:
            return f"vault:{self.vault}"
        if self.keyvault:
            return f"keyvault:{self.keyvault}"
        return f"env:{self.env}" if self.env else f"file:{self.file}"

    def resolve(self) -> str:
        """Read the secret now. Raises :class:`SecretUnavailable` naming the reference only."""
        if self.vault:
            if self.value is None or not self.value.get_secret_value():
                raise SecretUnavailable(self.describe(), "vault value is empty or was not read")
            return self.value.get_secret_value()
        if self.env:
            value = os.environ.get(self.env)
            if not value:
                raise SecretUnavailable(self.describe(), "environment variable is not set")
            return value
        if self.file:
            try:
                value = self.file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SecretUnavailable(self.describe(), exc.strerror or "cannot read") from None
            except UnicodeDecodeError:
                raise SecretUnavailable(self.describe(), "file is not UTF-8 text") from None
            if not value:
                raise SecretUnavailable(self.describe(), "file is empty")
            return value
        if self.keyvault:
            raise SecretUnavailable(self.describe(), "a Key Vault secret is read by the run "
                                    "(with the operator's Azure credential), not here")
        raise SecretUnavailable("<none>", "no env or file given")


class ServicePrincipal(_Frozen):
    """Client id plus exactly one credential: a secret (env or file) or a certificate file."""

    client_id: str
    secret: SecretRef | None = None
    certificate_file: Path | None = None


class SshSettings(_Frozen):
    user: str | None = None
    key_file: Path | None = None
    known_hosts: Path | None = None
    # Each hop is "[user@]host[:port]", outermost first, as OpenSSH's ProxyJump.
    jump_hosts: tuple[str, ...] = ()
    become: bool = False
    connect_timeout_s: float = 15.0
    # zlib is a compression bomb from a hostile server: off unless the inventory opts in.
    compression: bool = False


class WinrmSettings(_Frozen):
    user: str | None = None
    password: SecretRef | None = None
    auth: Literal["ntlm", "kerberos", "credssp", "basic"] = "ntlm"
    scheme: Literal["http", "https"] = "https"
    cert_validation: bool = True
    # Basic auth over plain HTTP sends the password readable on the wire; only when asked.
    allow_basic_over_http: bool = False
    # CA bundle (file or directory) that validates the endpoint's certificate; None: the
    # REQUESTS_CA_BUNDLE file if set, else the system trust store.
    ca_file: Path | None = None
    # Basic auth over HTTPS without validation sends the password to whoever answers: refused
    # unless this separate, explicit per-host opt-in is set.
    allow_unverified_tls: bool = False


class AzureTarget(_Frozen):
    tenant_id: str | None = None
    subscription_id: str | None = None
    resource_group: str | None = None
    location: str | None = None
    cloud: Cloud = Cloud.AZURE
    resource_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    correlation_id: str | None = None
    private_link_scope: str | None = None
    gateway_id: str | None = None
    proxy_url: str | None = None
    # azcmagent's proxy.bypass list (AAD, ARM, AMA, Arc, ArcData): these go around the proxy.
    proxy_bypass: tuple[str, ...] = ()
    service_principal: ServicePrincipal | None = None
    # How the agent signs in: with the service principal's secret or certificate, or with an
    # ARM access token the jump host mints for it (the secret then stays on the jump host).
    auth: Literal["service_principal", "token"] = "service_principal"
    # onboard creates the resource group (in ``location``) when the Azure preflight finds none.
    create_resource_group: bool = False
    # The jump host's own Azure endpoints (authority, ARM, CA bundle) instead of the cloud's:
    # the lab's fake Azure. Only the Azure preflight reads it; hosts use ``cloud``.
    endpoints_file: Path | None = None

    def expected_resource_id(self, host_name: str) -> str | None:
        """The ARM id azcmagent reports after a connect to this target, if it can be known."""
        if not (self.subscription_id and self.resource_group):
            return None
        name = self.resource_name or host_name
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.HybridCompute/machines/{name}"
        )


class ResolvedHost(_Frozen):
    """One host after inheritance and validation; the unit the engine works on."""

    name: str
    address: str
    port: int
    transport: Transport
    os: OsFamily
    groups: tuple[str, ...] = ()
    ssh: SshSettings = Field(default_factory=SshSettings)
    winrm: WinrmSettings = Field(default_factory=WinrmSettings)
    azure: AzureTarget = Field(default_factory=AzureTarget)
    # The inventory file this host came from, for error messages.
    source: str = ""

    @property
    def resource_name(self) -> str:
        return self.azure.resource_name or self.name
