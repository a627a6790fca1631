"""Secrets from Azure Key Vault: ``secret: {keyvault: https://VAULT.vault.azure.net/secrets/NAME}``.

Read once per run (the :class:`fleet.engine.secrets.SecretBook` keeps the value) with
azure-keyvault-secrets and the operator's own credential: ``DefaultAzureCredential``
(environment ``AZURE_*``, workload or managed identity of the jump host, ``az login``,
PowerShell). The value is registered for redaction by the SecretBook like every other secret. A
failure becomes :class:`SecretUnavailable` naming the reference and the reason, never the value.
The identity needs the secret's ``get`` right: the *Key Vault Secrets User* role on the vault (RBAC
vaults) or a *get* access policy.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from fleet.azure.clouds import endpoints_for
from fleet.azure.session import RETRY_SETTINGS, Identity, make_credential
from fleet.errors import SecretUnavailable
from fleet.inventory.model import AzureTarget, Cloud


def _parts(url: str) -> tuple[str, str, str | None]:
    """(vault URL, secret name, version or None) of a validated Key Vault secret URL."""
    split = urlsplit(url)
    segments = [s for s in split.path.split("/") if s]
    version = segments[2] if len(segments) > 2 else None
    return f"{split.scheme}://{split.netloc}", segments[1], version


def read_keyvault_secret(url: str, azure: AzureTarget | None) -> str:
    """The current (or the named version's) value of the secret at ``url``."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.identity import CredentialUnavailableError
    from azure.keyvault.secrets import SecretClient

    where = f"keyvault:{url}"
    vault_url, name, version = _parts(url)
    endpoints = endpoints_for(azure.cloud if azure else Cloud.AZURE,
                              azure.endpoints_file if azure else None)
    host = (urlsplit(vault_url).hostname or "").lower()
    # The lab's fake vault on loopback answers its challenge with the public vault resource.
    loopback = host in ("127.0.0.1", "localhost")
    options = dict(RETRY_SETTINGS)
    if endpoints.ca_bundle:
        options["connection_verify"] = endpoints.ca_bundle
    credential = make_credential(Identity(tenant_id=None), endpoints)
    client = SecretClient(vault_url, credential, verify_challenge_resource=not loopback,
                          **options)
    quiet = logging.getLogger("azure")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # DefaultAzureCredential logs every credential it tries
    try:
        secret = client.get_secret(name, version)
    except CredentialUnavailableError:
        raise SecretUnavailable(where, "no Azure credential of the operator is available "
                                "(az login, the jump host's managed identity, or AZURE_* "
                                "environment variables)") from None
    except ClientAuthenticationError as exc:
        raise SecretUnavailable(where, "the operator's Azure credential could not sign in: "
                                + _first_line(str(exc))) from None
    except ResourceNotFoundError:
        raise SecretUnavailable(where, f"the vault has no secret {name}"
                                + (f" with version {version}" if version else "")) from None
    except HttpResponseError as exc:
        if exc.status_code == 403:
            raise SecretUnavailable(where, "Key Vault refused the read (403): the operator's "
                                    "identity needs the Key Vault Secrets User role on the "
                                    "vault, or a get access policy") from None
        raise SecretUnavailable(where, f"Key Vault answered {exc.status_code}: "
                                + _first_line(str(exc.message))) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise SecretUnavailable(where, "Key Vault could not be reached: "
                                + _first_line(str(exc))) from None
    finally:
        quiet.setLevel(level)
        client.close()
        close = getattr(credential, "close", None)
        if close is not None:
            close()
    if not secret.value:
        raise SecretUnavailable(where, "the secret is empty")
    return secret.value


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return text[:300]
