"""How the simulated agent authenticates: the service principal's tenant, client id, and its
secret or certificate, checked against the lab's target, with Entra ID's own error texts."""

from __future__ import annotations

import time
import uuid

from fleet.lab.agent.console import AgentFailure
from fleet.lab.host import LabHost
from fleet.lab.sp_certificate import thumbprint_of


def flag_text(flags: dict[str, str | bool], name: str) -> str:
    value = flags.get(name)
    return value if isinstance(value, str) else ""


def check_credentials(host: LabHost, flags: dict[str, str | bool]) -> None:
    target = host.target
    tenant = flag_text(flags, "tenant-id")
    client = flag_text(flags, "service-principal-id")
    stage = "Failed to acquire authorization token from SPN"
    if flag_text(flags, "access-token"):
        return
    if tenant != target.tenant_id:
        raise AgentFailure("AZCM0041", aad_unknown_tenant(tenant), stage)
    if client != target.client_id:
        raise AgentFailure("AZCM0041", aad_unknown_app(client, tenant), stage)
    cert = flag_text(flags, "service-principal-cert")
    if cert:
        local = host.local_path(cert)
        if not local.is_file():
            raise AgentFailure("AZCM0023", f"open {cert}: no such file or directory")
        thumbprint = thumbprint_of(local.read_bytes())
        if thumbprint is None:
            raise AgentFailure("AZCM0023", f"unable to read the certificate and private key in "
                               f"{cert}: the file must be PEM with a key or PFX without password")
        if thumbprint != target.certificate_thumbprint:
            raise AgentFailure("AZCM0041", aad_unknown_certificate(client, thumbprint), stage)
        return
    if target.secret and flag_text(flags, "service-principal-secret") != target.secret:
        raise AgentFailure("AZCM0041", aad_wrong_secret(client), stage)


def aad_unknown_certificate(client: str, thumbprint: str) -> str:
    return ("AADSTS700027: The certificate with identifier used to sign the client assertion is "
            "not registered on application. [Reason - The key was not found., Thumbprint of key "
            f"used by client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or "
            f"directly use MS Graph to see configured keys for app Id '{client}'.]"
            + aad_trace())


def aad_trace() -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    return f" Trace ID: {uuid.uuid4()} Correlation ID: {uuid.uuid4()} Timestamp: {stamp}"


def aad_wrong_secret(client: str) -> str:
    return ("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
            "request is the client secret value, not the client secret ID, for a secret added "
            f"to app '{client}'." + aad_trace())


def aad_unknown_app(client: str, tenant: str) -> str:
    return (f"AADSTS700016: Application with identifier '{client}' was not found in the "
            f"directory '{tenant}'. This can happen if the application has not been installed "
            "by the administrator of the tenant or consented to by any user in the tenant. You "
            "may have sent your authentication request to the wrong tenant." + aad_trace())


def aad_unknown_tenant(tenant: str) -> str:
    return (f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct "
            "tenant ID and are signing into the correct cloud. Check with your subscription "
            "administrator, this may happen if there are no active subscriptions for the "
            "tenant." + aad_trace())
